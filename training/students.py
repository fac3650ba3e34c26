"""Students (METHOD.md section 4): small MLPs, each owning one (layer group, task, regime) slice.

Student k maps the numeric ``x`` (never text) to a representation ``z_k`` (dim r) and a prediction
``y^_k`` of its task's targets. Loss on its slice, per sample, weighted up for samples of its regime:

    L_k = ||W_k z_k - P_r(mean_{l in G_k} h_l)||^2 / r + a ||y^_k - y^teacher||^2 + b ||y^_k - y||^2

with ``P_r`` the top-r PCA projection (whitened) of the layer-group mean fitted on the training
split. Targets are standardized with training statistics. The feature and output distillation
terms apply only to samples the teacher has read (a mask); the ground-truth term to all samples.
The same trainer, with a or the feature weight set to 0, gives the distillation baselines.

Owns the torch side of students; the numpy runtime is ``cmm_strategy.bundle``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class StudentConfig:
    """Architecture and training settings shared by every student (and the MLP baselines)."""

    hidden: tuple[int, ...] = (48, 32)
    rep_dim: int = 16
    pca_dim: int = 16
    feature_weight: float = 1.0  # the FitNets-style term
    output_weight: float = 0.5  # a: output distillation to the teacher's prediction
    truth_weight: float = 1.0  # b: ground truth
    regime_weight_out: float = 0.3  # weight of samples outside the student's regime (inside: 1)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 300
    patience: int = 25


class StudentNet(nn.Module):
    """x -> z (ReLU MLP, linear last layer) -> y^ ; plus the feature-distillation head W_k."""

    def __init__(self, in_dim: int, out_dim: int, config: StudentConfig, hint_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, config.rep_dim))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(config.rep_dim, out_dim)
        self.hint = nn.Linear(config.rep_dim, max(hint_dim, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.body(x)
        return z, self.head(z)


@dataclass
class Standardizer:
    """Training-split mean and scale; stored in the bundle so the runtime normalizes identically."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        mean = values.mean(axis=0)
        scale = values.std(axis=0)
        return cls(mean, np.where(scale > 1e-12, scale, 1.0))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.scale

    def invert(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale + self.mean


@dataclass
class PCAProjection:
    """Top-r principal directions of a teacher layer-group mean, whitened (unit variance each)."""

    mean: np.ndarray
    components: np.ndarray  # [r, hidden]
    scale: np.ndarray  # [r]

    @classmethod
    def fit(cls, h: np.ndarray, r: int) -> PCAProjection:
        mean = h.mean(axis=0)
        _, s, vt = np.linalg.svd(h - mean, full_matrices=False)
        r = min(r, len(s))
        scale = s[:r] / np.sqrt(max(len(h) - 1, 1))
        return cls(mean, vt[:r], np.where(scale > 1e-12, scale, 1.0))

    def apply(self, h: np.ndarray) -> np.ndarray:
        return ((h - self.mean) @ self.components.T) / self.scale


@dataclass
class SliceData:
    """Everything one student (or baseline) trains on, already standardized."""

    x: np.ndarray  # [n, features]
    y: np.ndarray  # [n, outputs] standardized targets
    y_teacher: np.ndarray  # [n, outputs] standardized teacher predictions (NaN where unread)
    hint: np.ndarray  # [n, r] PCA-projected teacher features (NaN where unread)
    weight: np.ndarray  # [n] regime weighting
    train: np.ndarray  # bool masks
    val: np.ndarray


@dataclass
class TrainedStudent:
    net: StudentNet
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0


def _loss(net: StudentNet, batch: dict[str, torch.Tensor], config: StudentConfig) -> torch.Tensor:
    z, y_hat = net(batch["x"])
    w = batch["w"]
    total = config.truth_weight * (w * ((y_hat - batch["y"]) ** 2).mean(dim=1)).sum() / w.sum()
    read = batch["read"]
    if read.any():
        wr = w[read]
        if config.output_weight > 0:
            kd = ((y_hat[read] - batch["yt"][read]) ** 2).mean(dim=1)
            total = total + config.output_weight * (wr * kd).sum() / wr.sum()
        if config.feature_weight > 0:
            hint = ((net.hint(z[read]) - batch["hint"][read]) ** 2).mean(dim=1)
            total = total + config.feature_weight * (wr * hint).sum() / wr.sum()
    return total


def _tensors(data: SliceData, mask: np.ndarray) -> dict[str, torch.Tensor]:
    read = np.isfinite(data.hint[mask]).all(axis=1) & np.isfinite(data.y_teacher[mask]).all(axis=1)
    return {
        "x": torch.tensor(data.x[mask], dtype=torch.float32),
        "y": torch.tensor(data.y[mask], dtype=torch.float32),
        "yt": torch.tensor(np.nan_to_num(data.y_teacher[mask]), dtype=torch.float32),
        "hint": torch.tensor(np.nan_to_num(data.hint[mask]), dtype=torch.float32),
        "w": torch.tensor(data.weight[mask], dtype=torch.float32),
        "read": torch.tensor(read),
    }


def train_student(data: SliceData, config: StudentConfig, seed: int) -> TrainedStudent:
    """Adam with early stopping on the validation loss; deterministic for a seed."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = StudentNet(data.x.shape[1], data.y.shape[1], config, data.hint.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train, val = _tensors(data, data.train), _tensors(data, data.val)
    n = len(train["x"])
    best_state, best_loss, best_epoch, waited = copy.deepcopy(net.state_dict()), float("inf"), 0, 0
    history: dict[str, list[float]] = {"train": [], "val": []}
    for epoch in range(config.max_epochs):
        net.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = _loss(net, {k: v[idx] for k, v in train.items()}, config)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            train_loss = float(_loss(net, train, config))
            val_loss = float(_loss(net, val, config))
        history["train"].append(train_loss)
        history["val"].append(val_loss)
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if waited >= config.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return TrainedStudent(net, history, best_epoch)


def student_outputs(net: StudentNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, y^) for standardized inputs, as float64 numpy."""
    with torch.no_grad():
        z, y = net(torch.tensor(x, dtype=torch.float32))
    return z.double().numpy(), y.double().numpy()
