"""Ridge regression with the penalty chosen on a validation set (numpy, closed form via SVD).

Used for the teacher heads (hidden state -> task) and the numeric baseline (x_t -> task). One SVD
per design matrix serves every penalty and every target, which is what makes a full layer x task
sweep cheap on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ALPHAS = tuple(10.0**k for k in range(-2, 6))


def r2_score(y: np.ndarray, pred: np.ndarray, reference_mean: np.ndarray | float | None = None) -> np.ndarray:
    """Out-of-sample R2 per column, against ``reference_mean`` (the training mean) when given."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    mean = y.mean(axis=0) if reference_mean is None else reference_mean
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - mean) ** 2).sum(axis=0)
    return 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)


@dataclass
class RidgeModel:
    """Standardize-then-ridge; one penalty per target."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    coef: np.ndarray  # [n_features, n_targets] on standardized inputs
    alphas: np.ndarray  # chosen penalty per target
    val_r2: np.ndarray  # validation R2 (against the training mean) per target

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) / self.x_scale) @ self.coef + self.y_mean


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
) -> RidgeModel:
    """Fit on train; per target pick the penalty with the best validation R2."""
    x_train = np.asarray(x_train, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(x_train), -1)
    y_val = np.asarray(y_val, dtype=np.float64).reshape(len(x_val), -1)
    x_mean = x_train.mean(axis=0)
    x_scale = x_train.std(axis=0)
    x_scale = np.where(x_scale > 1e-12, x_scale, 1.0)
    xs = (x_train - x_mean) / x_scale
    xv = (np.asarray(x_val, dtype=np.float64) - x_mean) / x_scale
    y_mean = y_train.mean(axis=0)
    yc = y_train - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ yc  # [k, targets]
    xv_v = xv @ vt.T  # [n_val, k]
    n = len(xs)
    best_r2 = np.full(y_train.shape[1], -np.inf)
    best_alpha = np.zeros(y_train.shape[1])
    best_coef = np.zeros((xs.shape[1], y_train.shape[1]))
    for alpha in alphas:
        shrink = s / (s**2 + alpha * n)
        z = shrink[:, None] * uty
        r2 = r2_score(y_val, xv_v @ z + y_mean, y_mean)
        r2 = np.where(np.isnan(r2), -np.inf, r2)
        better = r2 > best_r2
        if better.any():
            coef = vt.T @ z
            best_coef[:, better] = coef[:, better]
            best_r2[better] = r2[better]
            best_alpha[better] = alpha
    return RidgeModel(x_mean, x_scale, y_mean, best_coef, best_alpha, best_r2)
