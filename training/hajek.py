"""Hájek-MoE (METHOD.md section 5): mixing students in a kernel-generated common feature space.

- Common space: ``u_k = phi(A_k z_k)`` with ``A_k`` a learned linear map (r -> d) per student and
  ``phi(v) = sqrt(2/D) cos(v Omega + c)`` random Fourier features of an RBF kernel shared by all
  students (``Omega ~ N(0, 1/sigma^2)``, bandwidth ``sigma`` by the median heuristic on the pooled
  ``A_k z_k`` at initialization, then fixed).
- Hájek projection of each target T: ``E[T | u_k] - E[T] = beta_kT . (u_k - mean_train(u_k))``,
  fitted jointly for all k; with ``E[T]`` the training mean (0 for standardized targets).
- Gate in the common space: ``g_T(x) = softmax(V_T . mean_k u_k(x) + c_T)``, and
  ``y^_T(x) = E[T] + sum_k K g_kT(x) (E[T | u_k] - E[T])``. With ``V = 0`` the gate is uniform and
  this is exactly the Hájek projection (the "uniform gate" ablation is that model).

Training: the common-space maps ``A_k`` keep their random initialization (the RFF map after them
is random by construction); the projection terms are fitted jointly in closed form (ridge on the
concatenated centred ``u_k``, penalty chosen on validation); then the gate is trained with early
stopping on validation MSE. *Deviation:* METHOD.md says ``A_k`` is learned; learning it jointly
with ``beta`` by gradient descent overfit the heavy-tailed real targets (test R2 -0.27 on BTCUSDT
mid_1s), so it is fixed, which keeps the projection exact and its fit convex. Owns the torch model and its training; the numpy twin is ``cmm_strategy.bundle``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class HajekConfig:
    common_dim: int = 16  # d
    rff_dim: int = 32  # D (32 features keep one decision under 20 µs on 2 cores; see BENCHMARKS.md)
    lr: float = 1e-2
    weight_decay: float = 1e-4
    max_epochs: int = 600
    patience: int = 40


class HajekMoE(nn.Module):
    """Forward on lists of student representations ``z_k`` -> predictions [n, targets]."""

    def __init__(self, rep_dims: list[int], n_targets: int, config: HajekConfig, sigma: float, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.k = len(rep_dims)
        self.a = nn.ParameterList(
            [nn.Parameter(torch.randn(r, config.common_dim, generator=generator) / math.sqrt(r)) for r in rep_dims],
        )
        self.register_buffer("omega", torch.randn(config.common_dim, config.rff_dim, generator=generator) / sigma)
        self.register_buffer("phase", torch.rand(config.rff_dim, generator=generator) * 2 * math.pi)
        self.beta = nn.Parameter(torch.zeros(self.k, config.rff_dim, n_targets))
        self.gate_v = nn.Parameter(torch.zeros(n_targets, config.rff_dim, self.k))
        self.gate_c = nn.Parameter(torch.zeros(n_targets, self.k))
        self.register_buffer("u_mean", torch.zeros(self.k, config.rff_dim))
        self.register_buffer("y_mean", torch.zeros(n_targets))
        self.rff_scale = math.sqrt(2.0 / config.rff_dim)

    def common_space(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """u [n, K, D]."""
        return torch.stack([self.rff_scale * torch.cos(z @ a @ self.omega + self.phase) for z, a in zip(zs, self.a)], dim=1)

    def terms_and_gate(self, zs: list[torch.Tensor], u_mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Projection terms [n, K, T] and gates [n, K, T]."""
        u = self.common_space(zs)
        centre = self.u_mean if u_mean is None else u_mean
        terms = torch.einsum("nkd,kdt->nkt", u - centre, self.beta)
        logits = torch.einsum("nd,tdk->nkt", u.mean(dim=1), self.gate_v) + self.gate_c.T[None]
        return terms, torch.softmax(logits, dim=1)

    def forward(self, zs: list[torch.Tensor], u_mean: torch.Tensor | None = None) -> torch.Tensor:
        terms, gate = self.terms_and_gate(zs, u_mean)
        return self.y_mean + (self.k * gate * terms).sum(dim=1)


def median_bandwidth(zs: list[np.ndarray], a: list[np.ndarray], max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise distance of the pooled ``A_k z_k`` (the RBF median heuristic)."""
    pooled = np.concatenate([z @ ak for z, ak in zip(zs, a)], axis=0)
    rng = np.random.default_rng(seed)
    if len(pooled) > max_points:
        pooled = pooled[rng.choice(len(pooled), max_points, replace=False)]
    d = np.sqrt(((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1))
    med = float(np.median(d[np.triu_indices(len(pooled), 1)]))
    return med if med > 1e-9 else 1.0


@dataclass
class FittedMoE:
    model: HajekMoE  # gate trained
    uniform: HajekMoE  # the same after stage 1 only (uniform gate): the Hájek projection


def _fit_stage(model: HajekMoE, zs_train, y_train, zs_val, y_val, params, config: HajekConfig, refresh_mean: bool = True) -> None:
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
    for _ in range(config.max_epochs):
        model.train()
        optimizer.zero_grad()
        u_mean = model.common_space(zs_train).mean(dim=0) if refresh_mean else None
        loss = ((model(zs_train, u_mean) - y_train) ** 2).mean()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            if refresh_mean:
                model.u_mean.copy_(model.common_space(zs_train).mean(dim=0))
            val = float(((model(zs_val) - y_val) ** 2).mean())
        if val < best - 1e-7:
            best, best_state, waited = val, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)


def fit_hajek_moe(
    z_train: list[np.ndarray],
    y_train: np.ndarray,
    z_val: list[np.ndarray],
    y_val: np.ndarray,
    config: HajekConfig,
    seed: int,
) -> FittedMoE:
    """Stage 1: the Hájek projection, fitted jointly in closed form. Stage 2: the gate.

    With the common-space maps ``A_k`` and the random features fixed, ``E[T | u_k] - E[T] =
    beta_k . (u_k - mean(u_k))`` for all k jointly is a ridge regression of T on the concatenated,
    centred ``u_k`` (penalty chosen on validation): exact, deterministic, and far less prone to
    overfitting heavy-tailed targets than gradient descent on the same parameters. The gate
    (``V``, ``c``) is then trained by full-batch Adam with early stopping on validation MSE.
    """
    from training.ridge import fit_ridge

    torch.manual_seed(seed)
    rep_dims = [z.shape[1] for z in z_train]
    generator = np.random.default_rng(seed)
    init_a = [generator.normal(size=(r, config.common_dim)) / math.sqrt(r) for r in rep_dims]
    sigma = median_bandwidth(z_train, init_a, seed=seed)
    model = HajekMoE(rep_dims, y_train.shape[1], config, sigma, seed)
    zt = [torch.tensor(z, dtype=torch.float32) for z in z_train]
    zv = [torch.tensor(z, dtype=torch.float32) for z in z_val]
    with torch.no_grad():
        for a, value in zip(model.a, init_a):
            a.copy_(torch.tensor(value, dtype=torch.float32))
        u_train = model.common_space(zt).double().numpy()  # [n, K, D]
        u_val = model.common_space(zv).double().numpy()
    k, d = u_train.shape[1], u_train.shape[2]
    u_mean = u_train.mean(axis=0)
    ridge = fit_ridge((u_train - u_mean).reshape(len(u_train), -1), y_train, (u_val - u_mean).reshape(len(u_val), -1), y_val)
    # Undo the ridge's own standardization: y = y_mean + sum_j coef_j (v_j - m_j) / s_j, and v has mean 0 on train.
    beta = (ridge.coef / ridge.x_scale[:, None]).reshape(k, d, -1)
    with torch.no_grad():
        model.u_mean.copy_(torch.tensor(u_mean, dtype=torch.float32))
        model.beta.copy_(torch.tensor(beta, dtype=torch.float32))
        model.y_mean.copy_(torch.tensor(ridge.y_mean, dtype=torch.float32))
    uniform = copy.deepcopy(model)
    yt = torch.tensor(y_train, dtype=torch.float32)
    yv = torch.tensor(y_val, dtype=torch.float32)
    _fit_stage(model, zt, yt, zv, yv, [model.gate_v, model.gate_c], config, refresh_mean=False)
    return FittedMoE(model.eval(), uniform.eval())


def moe_report(model: HajekMoE, zs: list[np.ndarray], target_names: list[str], student_names: list[str]) -> dict[str, object]:
    """Each student's mean gate and the variance share of its projection term, per target."""
    with torch.no_grad():
        terms, gate = model.terms_and_gate([torch.tensor(z, dtype=torch.float32) for z in zs])
    terms, gate = terms.double().numpy(), gate.double().numpy()
    var = terms.var(axis=0)  # [K, T]
    share = var / np.where(var.sum(axis=0, keepdims=True) > 0, var.sum(axis=0, keepdims=True), 1.0)
    return {
        target: {
            student: {"mean_gate": float(gate[:, k, t].mean()), "variance_share": float(share[k, t])}
            for k, student in enumerate(student_names)
        }
        for t, target in enumerate(target_names)
    }
