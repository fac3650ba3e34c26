"""The normalized fluorescent probe (METHOD.md section 3): which layers carry which feature.

Task fluorescence ``F_task[l, t]``: validation R2 of a ridge head ``h_l -> y_t`` (clipped at 0),
divided by its maximum over layers; per regime ``F_task[l, t, d]``: the same heads (fitted on all
training samples) scored on the validation samples of regime d, normalized per (t, d).
Data fluorescence ``F_data[l, c]``: ``r_l(c) = E||h_l(x~_c) - h_l(x)|| / E||h_l(x) - h_l(x')||``
where ``x~_c`` has component c swapped in from a random other sample x', normalized over c.

Owns the maps and the teacher heads; must not run the teacher (features come from the cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.ridge import RidgeModel, fit_ridge, r2_score

# A regime with fewer validation samples than this has no map (NaN), rather than a noisy one.
MIN_REGIME_SAMPLES = 10


def normalize_rows_by_max(r2: np.ndarray) -> np.ndarray:
    """Clip negatives to 0 and divide by the maximum over layers (axis 0); all-zero stays zero."""
    clipped = np.clip(np.nan_to_num(r2, nan=0.0), 0.0, None)
    peak = clipped.max(axis=0, keepdims=True)
    return np.divide(clipped, peak, out=np.zeros_like(clipped), where=peak > 0)


@dataclass
class TaskProbe:
    """Per-layer ridge heads and the task fluorescence maps."""

    r2_val: np.ndarray  # [layers, targets]
    r2_val_regime: np.ndarray  # [layers, targets, regimes]
    heads: list[RidgeModel]  # one per layer, all targets
    best_layer: np.ndarray  # [targets]
    regime_counts: np.ndarray  # validation samples per regime; maps of regimes below MIN_REGIME_SAMPLES are NaN

    @property
    def f_task(self) -> np.ndarray:
        return normalize_rows_by_max(self.r2_val)

    @property
    def f_task_regime(self) -> np.ndarray:
        maps = []
        for d in range(self.r2_val_regime.shape[2]):
            f = normalize_rows_by_max(self.r2_val_regime[:, :, d])
            maps.append(f if self.regime_counts[d] >= MIN_REGIME_SAMPLES else np.full_like(f, np.nan))
        return np.stack(maps, axis=2)

    def teacher_predictions(self, hidden: np.ndarray) -> np.ndarray:
        """The teacher's prediction per target: the head of its best validation layer."""
        out = np.empty((hidden.shape[0], len(self.best_layer)))
        for t, layer in enumerate(self.best_layer):
            out[:, t] = self.heads[layer].predict(hidden[:, layer, :])[:, t]
        return out


def probe_tasks(
    hidden: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    regime: np.ndarray,
    n_regimes: int = 3,
) -> TaskProbe:
    """Fit a ridge head per layer on ``train`` and score it on ``val`` (overall and per regime)."""
    n_layers = hidden.shape[1]
    r2 = np.zeros((n_layers, y.shape[1]))
    r2_regime = np.zeros((n_layers, y.shape[1], n_regimes))
    heads: list[RidgeModel] = []
    for layer in range(n_layers):
        h = hidden[:, layer, :].astype(np.float64)
        model = fit_ridge(h[train], y[train], h[val], y[val])
        heads.append(model)
        r2[layer] = model.val_r2
        pred = model.predict(h[val])
        for d in range(n_regimes):
            in_regime = regime[val] == d
            if in_regime.sum() >= MIN_REGIME_SAMPLES:
                r2_regime[layer, :, d] = r2_score(y[val][in_regime], pred[in_regime], model.y_mean)
    counts = np.array([int((regime[val] == d).sum()) for d in range(n_regimes)])
    return TaskProbe(r2, r2_regime, heads, np.argmax(np.nan_to_num(r2, nan=-np.inf), axis=0), counts)


def data_fluorescence(hidden: np.ndarray, stained: dict[str, np.ndarray], donors: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``F_data`` [layers, components] and the raw ratios ``r_l(c)``.

    ``hidden``: [m, layers, d] for the probed samples x; ``stained[c]``: [m, layers, d] for x~_c;
    ``donors``: [m, layers, d] for the donor samples x' (the same x' used to stain).
    """
    components = list(stained)
    baseline = np.linalg.norm(hidden - donors, axis=2).mean(axis=0)  # [layers]
    ratios = np.stack([np.linalg.norm(stained[c] - hidden, axis=2).mean(axis=0) for c in components], axis=1)
    ratios = np.divide(ratios, baseline[:, None], out=np.zeros_like(ratios), where=baseline[:, None] > 0)
    total = ratios.sum(axis=1, keepdims=True)
    f_data = np.divide(ratios, total, out=np.zeros_like(ratios), where=total > 0)
    return f_data, ratios, components
