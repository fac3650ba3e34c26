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


@dataclass
class _Decomposition:
    """Standardization of x and centring of y on the training rows, and the SVD of the result."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    uty: np.ndarray  # U^T (y - y_mean)

    @classmethod
    def of(cls, x_train: np.ndarray, y_train: np.ndarray) -> _Decomposition:
        x_train = np.asarray(x_train, dtype=np.float64)
        y_train = np.asarray(y_train, dtype=np.float64).reshape(len(x_train), -1)
        x_mean = x_train.mean(axis=0)
        x_scale = x_train.std(axis=0)
        x_scale = np.where(x_scale > 1e-12, x_scale, 1.0)
        y_mean = y_train.mean(axis=0)
        u, s, vt = np.linalg.svd((x_train - x_mean) / x_scale, full_matrices=False)
        return cls(x_mean, x_scale, y_mean, s, vt, u.T @ (y_train - y_mean))

    def rotate(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` standardized and expressed in the right singular basis."""
        return ((np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_scale) @ self.vt.T

    def shrink(self, alpha: float, n: int) -> np.ndarray:
        return self.s / (self.s**2 + alpha * n)


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
) -> RidgeModel:
    """Fit on train; per target pick the penalty with the best validation R2."""
    dec = _Decomposition.of(x_train, y_train)
    y_val = np.asarray(y_val, dtype=np.float64).reshape(len(x_val), -1)
    xv_v = dec.rotate(x_val)
    n = len(np.asarray(x_train))
    n_targets = dec.uty.shape[1]
    best_r2 = np.full(n_targets, -np.inf)
    best_alpha = np.full(n_targets, float(max(alphas)))  # kept when no penalty scores (constant target)
    best_coef = np.zeros((dec.vt.shape[1], n_targets))
    for alpha in alphas:
        z = dec.shrink(alpha, n)[:, None] * dec.uty
        r2 = r2_score(y_val, xv_v @ z + dec.y_mean, dec.y_mean)
        r2 = np.where(np.isnan(r2), -np.inf, r2)
        better = r2 > best_r2
        if better.any():
            coef = dec.vt.T @ z
            best_coef[:, better] = coef[:, better]
            best_r2[better] = r2[better]
            best_alpha[better] = alpha
    return RidgeModel(dec.x_mean, dec.x_scale, dec.y_mean, best_coef, best_alpha, best_r2)


def ridge_fixed_alpha(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions on ``x_test`` of ridge fits with a given penalty per target (no selection)."""
    dec = _Decomposition.of(x_train, y_train)
    xt_v = dec.rotate(x_test)
    n = len(np.asarray(x_train))
    out = np.empty((len(xt_v), dec.uty.shape[1]))
    for t, alpha in enumerate(alphas):
        out[:, t] = xt_v @ (dec.shrink(alpha, n) * dec.uty[:, t]) + dec.y_mean[t]
    return out
