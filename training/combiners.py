"""Ways to combine students other than the Hájek-MoE (ablations of METHOD.md section 5).

Every student gets a raw output for every target: its own head for its task's targets, and for
the other targets a ridge readout from its representation ``z_k`` (fitted on the training split,
penalty on validation). The combiners then work on those raw outputs [n, K, T]:
plain average, a softmax gate on the raw outputs (gate from standardized ``x``), and linear
stacking (ridge on the K raw outputs). All in standardized target units.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from training.ridge import RidgeModel, fit_ridge


def raw_outputs(
    z: list[np.ndarray],
    own: list[np.ndarray],
    own_cols: list[list[int]],
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
) -> tuple[np.ndarray, list[RidgeModel]]:
    """[n, K, T] raw outputs and the readouts used for off-task targets."""
    n, n_t = y.shape
    out = np.empty((n, len(z), n_t))
    readouts = []
    for k, (zk, pred, cols) in enumerate(zip(z, own, own_cols)):
        readout = fit_ridge(zk[train], y[train], zk[val], y[val])
        readouts.append(readout)
        out[:, k, :] = readout.predict(zk)
        out[:, k, cols] = pred
    return out, readouts


def plain_average(raw: np.ndarray) -> np.ndarray:
    return raw.mean(axis=1)


def fit_stacking(raw: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> list[RidgeModel]:
    return [fit_ridge(raw[train, :, t], y[train, t], raw[val, :, t], y[val, t]) for t in range(y.shape[1])]


def predict_stacking(models: list[RidgeModel], raw: np.ndarray) -> np.ndarray:
    return np.column_stack([m.predict(raw[:, :, t])[:, 0] for t, m in enumerate(models)])


class SoftmaxGate(torch.nn.Module):
    """g_T(x) = softmax(W_T x + c_T) over students; y_T = sum_k g_kT raw_kT."""

    def __init__(self, in_dim: int, k: int, n_targets: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n_targets, in_dim, k))
        self.c = torch.nn.Parameter(torch.zeros(n_targets, k))

    def forward(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        gate = torch.softmax(torch.einsum("nd,tdk->ntk", x, self.w) + self.c, dim=2)
        return torch.einsum("ntk,nkt->nt", gate, raw)


def fit_softmax_gate(x: np.ndarray, raw: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int, epochs: int = 600, patience: int = 40) -> SoftmaxGate:
    """Full-batch Adam on training MSE, early stopping on validation MSE."""
    torch.manual_seed(seed)
    model = SoftmaxGate(x.shape[1], raw.shape[1], y.shape[1])
    t = {name: torch.tensor(a[m], dtype=torch.float32) for name, a, m in (("xt", x, train), ("rt", raw, train), ("yt", y, train), ("xv", x, val), ("rv", raw, val), ("yv", y, val))}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    best, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = ((model(t["xt"], t["rt"]) - t["yt"]) ** 2).mean()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            v = float(((model(t["xv"], t["rv"]) - t["yv"]) ** 2).mean())
        if v < best - 1e-7:
            best, best_state, waited = v, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


def predict_softmax_gate(model: SoftmaxGate, x: np.ndarray, raw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32), torch.tensor(raw, dtype=torch.float32)).double().numpy()
