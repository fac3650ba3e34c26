"""Prediction metrics of METHOD.md section 9: out-of-sample R2, MSE, Spearman IC with its error.

Targets on a 100 ms grid with 1-5 s horizons overlap, so consecutive samples are not independent;
the IC's standard error uses an effective sample size of non-overlapping windows,
``n_eff = n * grid / horizon``, which is the honest (wider) error bar.
"""

from __future__ import annotations

import math

import numpy as np

from training.ridge import r2_score


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho requires."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    boundaries = np.concatenate([[0], np.flatnonzero(np.diff(sorted_values)) + 1, [len(values)]])
    for lo, hi in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[lo:hi]] = 0.5 * (lo + hi - 1)
    return ranks


def spearman_ic(y: np.ndarray, pred: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(y) < 3:
        return math.nan
    ry, rp = _ranks(y), _ranks(pred)
    sy, sp = ry.std(), rp.std()
    if sy == 0 or sp == 0:
        return math.nan
    return float(((ry - ry.mean()) * (rp - rp.mean())).mean() / (sy * sp))


def ic_standard_error(ic: float, n: int, overlap: float = 1.0) -> float:
    """Large-sample error of a correlation, with ``n`` shrunk by the window overlap factor."""
    n_eff = max(n * overlap, 4.0)
    if not math.isfinite(ic):
        return math.nan
    return math.sqrt(max(1.0 - ic * ic, 0.0) / (n_eff - 2.0))


def prediction_metrics(y: np.ndarray, pred: np.ndarray, train_mean: float, overlap: float = 1.0) -> dict[str, float]:
    """R2 against the training-mean forecast, MSE, IC and its standard error, for one target."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    ic = spearman_ic(y, pred)
    return {
        "r2": float(r2_score(y[:, None], pred[:, None], np.array([train_mean]))[0]),
        "mse": float(((y - pred) ** 2).mean()),
        "ic": ic,
        "ic_se": ic_standard_error(ic, len(y), overlap),
        "n": int(len(y)),
    }
