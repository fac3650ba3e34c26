"""The model bundle at run time: load, verify, and run all students + the Hájek-MoE in numpy.

A bundle is a folder with ``weights.safetensors`` and ``manifest.json`` (format version, feature
spec and normalization, plan, tasks, horizons, training data range, teacher id, tensor shapes and
the weights' sha256). Loading refuses, with a message naming the problem, a wrong format version, a
checksum mismatch, a missing tensor or a tensor of the wrong shape: a strategy must never quote
from a half-copied or mismatched model.

At load time the students are fused into block-diagonal matrices so that one decision is a handful
of small matmuls (``predict``); ``predict_reference`` runs the same math student by student and is
kept to test the fusion. Owns the numpy forward pass; must not import torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from cmm_strategy.features import FeatureSpec

BUNDLE_FORMAT = "cmm-bundle"
BUNDLE_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"


class BundleError(ValueError):
    """A bundle that must not be used; the message says what is wrong and where."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols), dtype=np.float64)
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    return out


def _augment(w: np.ndarray, b: np.ndarray, carry: bool) -> np.ndarray:
    """[[W, 0], [b, 1]] (``carry``) or [[W], [b]]: ``[v, 1] @ result`` is ``[v @ W + b, 1]`` or ``v @ W + b``."""
    rows, cols = w.shape
    out = np.zeros((rows + 1, cols + (1 if carry else 0)), dtype=np.float64)
    out[:rows, :cols] = w
    out[rows, :cols] = b
    if carry:
        out[rows, cols] = 1.0
    return out


@dataclass
class StudentWeights:
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W [in, out], b [out]); ReLU between, none after last
    head: tuple[np.ndarray, np.ndarray]


class CMMBundle:
    """All students and the Hájek-MoE of one bundle, ready to predict from raw ``x_t``."""

    def __init__(self, manifest: dict, tensors: dict[str, np.ndarray], path: Path | None = None) -> None:
        self.manifest = manifest
        self.path = path
        self.spec = FeatureSpec.from_dict(manifest["feature_spec"])
        self.target_names: list[str] = list(manifest["targets"])
        self.student_names = [s["name"] for s in manifest["students"]]
        t = {k: v.astype(np.float64) for k, v in tensors.items()}
        self.x_mean, self.x_scale = t["norm.x_mean"], t["norm.x_scale"]
        self.y_mean, self.y_scale = t["norm.y_mean"], t["norm.y_scale"]
        self.students: list[StudentWeights] = []
        for k, student in enumerate(manifest["students"]):
            depth = len(student["hidden"]) + 1
            layers = [(t[f"students.{k}.w{i}"], t[f"students.{k}.b{i}"]) for i in range(depth)]
            self.students.append(StudentWeights(layers, (t[f"students.{k}.head_w"], t[f"students.{k}.head_b"])))
        self.k = len(self.students)
        self.a = [t[f"moe.a.{k}"] for k in range(self.k)]
        self.omega, self.phase = t["moe.omega"], t["moe.phase"]
        self.beta, self.u_mean = t["moe.beta"], t["moe.u_mean"]  # [K, D, T], [K, D]
        self.gate_v, self.gate_c = t["moe.gate_v"], t["moe.gate_c"]  # [T, D, K], [T, K]
        self.moe_y_mean = t["moe.y_mean"]
        self.rff_scale = float(np.sqrt(2.0 / self.omega.shape[1]))
        self._fuse()

    # -- fusion ------------------------------------------------------------------------------

    def _fuse(self) -> None:
        depth = len(self.students[0].layers)
        if any(len(s.layers) != depth for s in self.students):
            raise BundleError("students of different depth cannot be fused")
        # Fold the input normalization into the first layer: (x - m) / s @ W = x @ (W / s) - (m / s) @ W.
        w0 = np.concatenate([s.layers[0][0] for s in self.students], axis=1)
        b0 = np.concatenate([s.layers[0][1] for s in self.students])
        self._w = [w0 / self.x_scale[:, None]]
        self._b = [b0 - (self.x_mean / self.x_scale) @ w0]
        for i in range(1, depth):
            self._w.append(_block_diag([s.layers[i][0] for s in self.students]))
            self._b.append(np.concatenate([s.layers[i][1] for s in self.students]))
        d = self.omega.shape[1]
        k, n_t = self.k, self.beta.shape[2]
        z_to_phase = _block_diag([a @ self.omega for a in self.a])  # [K*r, K*D]
        # The last student layer is linear: fold it into the phase map.
        w_last, b_last = self._w.pop(), self._b.pop()
        self._phase_w = w_last @ z_to_phase
        self._phase_b = b_last @ z_to_phase + np.tile(self.phase, k)
        # u = s cos(.) never materializes: fold s, the centring, K and the target scale into the
        # projection terms, and s and the 1/K of mean_k u_k into the gate logits.
        s = self.rff_scale
        beta = _block_diag([self.beta[j] for j in range(k)])  # [K*D, K*T], column j*T + t
        target_scale = np.tile(self.y_scale, k) * k
        terms_w = s * beta * target_scale
        terms_b = -(self.u_mean.reshape(-1) @ beta) * target_scale
        # Reorder the term columns to t*K + j, the layout of the gate logits, so both reshape to [T, K].
        order = np.array([j * n_t + t for t in range(n_t) for j in range(k)])
        terms_w, terms_b = terms_w[:, order], terms_b[order]
        v = np.transpose(self.gate_v, (1, 0, 2)).reshape(d, n_t * k)  # [D, T*K], column t*K + j
        gate_w = np.tile(v, (k, 1)) * (s / k)
        self._out_w = np.concatenate([terms_w, gate_w], axis=1)
        self._out_b = np.concatenate([terms_b, self.gate_c.reshape(-1)])
        self._split = k * n_t
        self._base = self.moe_y_mean * self.y_scale + self.y_mean
        self._n_targets = n_t
        # The single-decision path folds every bias into its matmul: each vector carries a constant
        # 1 as its last entry, the weight matrix gets the bias as an extra row and (to pass the 1 on)
        # an extra column e_last; the phase gets a last column of zeros, so cos() turns it into the
        # 1 the output matmul needs. Four fewer numpy calls per decision; the views alias ``_out_buf``.
        self._w1 = [_augment(w, b, carry=True) for w, b in zip(self._w, self._b)]
        self._phase_w1 = _augment(self._phase_w, self._phase_b, carry=True)
        self._phase_w1[:, -1] = 0.0
        self._out_w1 = _augment(self._out_w, self._out_b, carry=False)
        self._x_buf = np.ones(self._w1[0].shape[0])
        self._buffers = [np.empty(w.shape[1]) for w in self._w1]
        self._phase_buf = np.empty(self._phase_w1.shape[1])
        self._out_buf = np.empty(self._out_w1.shape[1])
        self._terms_view = self._out_buf[: self._split].reshape(n_t, k)
        self._logits_view = self._out_buf[self._split :].reshape(n_t, k)
        self._weighted_buf = np.empty((2, n_t, k))

    # -- forward -----------------------------------------------------------------------------

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw ``x_t`` [dim] or [n, dim] -> predictions in target units [T] or [n, T]."""
        if x.ndim == 1:
            return self._predict_one(x)
        h = x @ self._w[0] + self._b[0]
        for w, b in zip(self._w[1:], self._b[1:]):
            np.maximum(h, 0.0, out=h)
            h = h @ w + b
        np.maximum(h, 0.0, out=h)
        o = np.cos(h @ self._phase_w + self._phase_b) @ self._out_w + self._out_b
        terms = o[:, : self._split].reshape(-1, self._n_targets, self.k)
        logits = o[:, self._split :].reshape(-1, self._n_targets, self.k)
        gate = np.exp(logits - logits.max(axis=(-2, -1), keepdims=True))
        return self._base + (gate * terms).sum(axis=-1) / gate.sum(axis=-1)

    def _predict_one(self, x: np.ndarray) -> np.ndarray:
        """The hot path: one decision, written into preallocated buffers (no allocation but the result).

        Biases ride in the matmuls (see ``_fuse``); ``np.dot`` with ``out`` rather than ``np.matmul``
        (same BLAS call, less dispatch overhead at these sizes); the gate and the weighted terms share
        one buffer so that a single ``sum`` yields the numerator and denominator of the Hajek weights."""
        dot, maximum = np.dot, np.maximum
        h = self._x_buf
        h[:-1] = x
        for w, buf in zip(self._w1, self._buffers):
            h = dot(h, w, out=buf)
            maximum(h, 0.0, out=h)
        phase = dot(h, self._phase_w1, out=self._phase_buf)
        np.cos(phase, out=phase)
        dot(phase, self._out_w1, out=self._out_buf)
        logits = self._logits_view
        logits -= logits.max()
        gate_terms = self._weighted_buf  # [2, T, K]: gate * terms, gate
        gate = np.exp(logits, out=gate_terms[1])
        np.multiply(gate, self._terms_view, out=gate_terms[0])
        sums = gate_terms.sum(axis=2)
        result = np.divide(sums[0], sums[1])
        result += self._base
        return result

    def student_representations(self, x: np.ndarray) -> list[np.ndarray]:
        xs = (np.atleast_2d(x) - self.x_mean) / self.x_scale
        out = []
        for s in self.students:
            h = xs
            for i, (w, b) in enumerate(s.layers):
                h = h @ w + b
                if i < len(s.layers) - 1:
                    h = np.maximum(h, 0.0)
            out.append(h)
        return out

    def student_predictions(self, x: np.ndarray) -> list[np.ndarray]:
        """Each student's own head, in target units of its targets."""
        preds = []
        for s, z, meta in zip(self.students, self.student_representations(x), self.manifest["students"]):
            cols = [self.target_names.index(t) for t in meta["targets"]]
            preds.append((z @ s.head[0] + s.head[1]) * self.y_scale[cols] + self.y_mean[cols])
        return preds

    def predict_reference(self, x: np.ndarray) -> np.ndarray:
        """The same math as ``predict``, student by student, without fusion (for tests)."""
        zs = self.student_representations(x)
        u = np.stack([self.rff_scale * np.cos(z @ a @ self.omega + self.phase) for z, a in zip(zs, self.a)], axis=1)
        terms = np.einsum("nkd,kdt->nkt", u - self.u_mean, self.beta)
        logits = np.einsum("nd,tdk->nkt", u.mean(axis=1), self.gate_v) + self.gate_c.T[None]
        logits -= logits.max(axis=1, keepdims=True)
        gate = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = self.moe_y_mean + (self.k * gate * terms).sum(axis=1)
        return y * self.y_scale + self.y_mean


def expected_shapes(manifest: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor a bundle must hold, with its shape, derived from the manifest alone."""
    dim = len(manifest["feature_names"])
    n_t = len(manifest["targets"])
    moe = manifest["moe"]
    d, big_d = int(moe["common_dim"]), int(moe["rff_dim"])
    students = manifest["students"]
    k = len(students)
    shapes: dict[str, tuple[int, ...]] = {
        "norm.x_mean": (dim,),
        "norm.x_scale": (dim,),
        "norm.y_mean": (n_t,),
        "norm.y_scale": (n_t,),
        "moe.omega": (d, big_d),
        "moe.phase": (big_d,),
        "moe.beta": (k, big_d, n_t),
        "moe.u_mean": (k, big_d),
        "moe.gate_v": (n_t, big_d, k),
        "moe.gate_c": (n_t, k),
        "moe.y_mean": (n_t,),
    }
    for j, s in enumerate(students):
        widths = [dim, *s["hidden"], int(s["rep_dim"])]
        for i in range(len(widths) - 1):
            shapes[f"students.{j}.w{i}"] = (widths[i], widths[i + 1])
            shapes[f"students.{j}.b{i}"] = (widths[i + 1],)
        shapes[f"students.{j}.head_w"] = (int(s["rep_dim"]), len(s["targets"]))
        shapes[f"students.{j}.head_b"] = (len(s["targets"]),)
        shapes[f"moe.a.{j}"] = (int(s["rep_dim"]), d)
    return shapes


def load_bundle(path: str | Path) -> CMMBundle:
    """Load and verify a bundle folder; raise ``BundleError`` on anything suspicious."""
    folder = Path(path)
    manifest_path, weights_path = folder / MANIFEST_FILE, folder / WEIGHTS_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST_FILE}; is this a bundle made by `cmm distill`?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{manifest_path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this runtime reads {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}: re-export the bundle",
        )
    if not weights_path.is_file():
        raise BundleError(f"{folder}: no {WEIGHTS_FILE}")
    actual = sha256_file(weights_path)
    if actual != manifest.get("weights_sha256"):
        raise BundleError(f"{weights_path}: sha256 {actual[:12]}... does not match the manifest's {str(manifest.get('weights_sha256'))[:12]}...: the weights were changed or damaged")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise BundleError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    for name, shape in expected_shapes(manifest).items():
        if name not in tensors:
            raise BundleError(f"{weights_path}: missing tensor {name!r}")
        if tuple(tensors[name].shape) != shape:
            raise BundleError(f"{weights_path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}")
    return CMMBundle(manifest, tensors, folder)
