"""The normalized fluorescent probe (METHOD.md section 3): which layers carry which feature.

Task fluorescence ``F_task[l, t]``: validation R2 of a ridge head ``h_l -> y_t`` (clipped at 0),
divided by its maximum over layers; per regime ``F_task[l, t, d]``: R2 within regime d of
out-of-fold predictions over train+val (5 contiguous blocks, the head's penalty), normalized per
(t, d).
Data fluorescence ``F_data[l, c]``: ``r_l(c) = E||h_l(x~_c) - h_l(x)|| / E||h_l(x) - h_l(x')||``
where ``x~_c`` has component c swapped in from a random other sample x', normalized over c.

Owns the maps and the teacher heads; must not run the teacher (features come from the cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.ridge import RidgeModel, fit_ridge, r2_score, ridge_fixed_alpha

# A regime with fewer scored samples than this has no map (NaN), rather than a noisy one.
MIN_REGIME_SAMPLES = 10
# Regime maps are scored out of fold over train+val in this many contiguous blocks: on captures of a
# few minutes volatility drifts, so the validation split alone often holds one regime only.
REGIME_FOLDS = 5
# A regime map whose best layer explains less than this share of variance is noise that the
# normalization would blow up to 1: it is left out (NaN) instead.
MIN_SIGNAL_R2 = 0.01


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
    regime_counts: np.ndarray  # scored samples per regime (train+val); maps below MIN_REGIME_SAMPLES are NaN

    @property
    def f_task(self) -> np.ndarray:
        return normalize_rows_by_max(self.r2_val)

    @property
    def f_task_regime(self) -> np.ndarray:
        maps = []
        for d in range(self.r2_val_regime.shape[2]):
            f = normalize_rows_by_max(self.r2_val_regime[:, :, d])
            if self.regime_counts[d] < MIN_REGIME_SAMPLES:
                f[:] = np.nan
            f[:, np.nan_to_num(self.r2_val_regime[:, :, d], nan=-np.inf).max(axis=0) < MIN_SIGNAL_R2] = np.nan
            maps.append(f)
        return np.stack(maps, axis=2)

    def teacher_predictions(self, hidden: np.ndarray) -> np.ndarray:
        """The teacher's prediction per target: the head of its best validation layer."""
        out = np.empty((hidden.shape[0], len(self.best_layer)))
        for t, layer in enumerate(self.best_layer):
            out[:, t] = self.heads[layer].predict(hidden[:, layer, :])[:, t]
        return out


def _blocked_oof(h: np.ndarray, y: np.ndarray, rows: np.ndarray, alphas: np.ndarray, folds: int) -> np.ndarray:
    """Out-of-fold predictions over ``rows`` in contiguous blocks (time order kept)."""
    pred = np.empty((len(rows), y.shape[1]))
    blocks = np.array_split(np.arange(len(rows)), folds)
    for block in blocks:
        rest = np.setdiff1d(np.arange(len(rows)), block)
        pred[block] = ridge_fixed_alpha(h[rows[rest]], y[rows[rest]], h[rows[block]], alphas)
    return pred


def probe_tasks(
    hidden: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    regime: np.ndarray,
    n_regimes: int = 3,
    folds: int = REGIME_FOLDS,
) -> TaskProbe:
    """Per layer: a ridge head fitted on ``train`` and scored on ``val`` (``F_task``), and, for the
    regime maps, the same penalty scored out of fold over train+val per regime (``F_task[.,.,d]``)."""
    n_layers = hidden.shape[1]
    r2 = np.zeros((n_layers, y.shape[1]))
    r2_regime = np.zeros((n_layers, y.shape[1], n_regimes))
    heads: list[RidgeModel] = []
    pool = np.flatnonzero(train | val)
    pooled_regime = regime[pool]
    for layer in range(n_layers):
        h = hidden[:, layer, :].astype(np.float64)
        model = fit_ridge(h[train], y[train], h[val], y[val])
        heads.append(model)
        r2[layer] = model.val_r2
        oof = _blocked_oof(h, y, pool, model.alphas, folds)
        for d in range(n_regimes):
            in_regime = pooled_regime == d
            if in_regime.sum() >= MIN_REGIME_SAMPLES:
                r2_regime[layer, :, d] = r2_score(y[pool][in_regime], oof[in_regime], y[pool].mean(axis=0))
    counts = np.array([int((pooled_regime == d).sum()) for d in range(n_regimes)])
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
