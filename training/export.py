"""Export trained students and the Hájek-MoE as a bundle (safetensors + manifest.json).

The tensor names and shapes are the contract with ``cmm_strategy.bundle`` (``expected_shapes``);
the loader refuses anything else. Writing goes to a temporary folder that is renamed into place,
so a crash never leaves a half-written bundle where a strategy could load it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from cmm_strategy.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_FILE, WEIGHTS_FILE, expected_shapes, sha256_file
from training.hajek import HajekConfig, HajekMoE
from training.students import StudentConfig, StudentNet, Standardizer


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def student_tensors(k: int, net: StudentNet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    linears = [m for m in net.body if hasattr(m, "weight")]
    for i, layer in enumerate(linears):
        out[f"students.{k}.w{i}"] = _np(layer.weight).T.copy()
        out[f"students.{k}.b{i}"] = _np(layer.bias)
    out[f"students.{k}.head_w"] = _np(net.head.weight).T.copy()
    out[f"students.{k}.head_b"] = _np(net.head.bias)
    return out


def moe_tensors(moe: HajekMoE) -> dict[str, np.ndarray]:
    out = {f"moe.a.{k}": _np(a) for k, a in enumerate(moe.a)}
    out.update(
        {
            "moe.omega": _np(moe.omega),
            "moe.phase": _np(moe.phase),
            "moe.beta": _np(moe.beta),
            "moe.u_mean": _np(moe.u_mean),
            "moe.gate_v": _np(moe.gate_v),
            "moe.gate_c": _np(moe.gate_c),
            "moe.y_mean": _np(moe.y_mean),
        },
    )
    return out


def write_bundle(
    out: str | Path,
    *,
    students: list[tuple[dict, StudentNet]],
    moe: HajekMoE,
    x_norm: Standardizer,
    y_norm: Standardizer,
    student_config: StudentConfig,
    moe_config: HajekConfig,
    info: dict[str, object],
) -> Path:
    """Write ``out/`` atomically; ``students`` pairs each plan slice (dict) with its net."""
    out = Path(out)
    tensors: dict[str, np.ndarray] = {
        "norm.x_mean": x_norm.mean.astype(np.float32),
        "norm.x_scale": x_norm.scale.astype(np.float32),
        "norm.y_mean": y_norm.mean.astype(np.float32),
        "norm.y_scale": y_norm.scale.astype(np.float32),
    }
    for k, (_, net) in enumerate(students):
        tensors.update(student_tensors(k, net))
    tensors.update(moe_tensors(moe))
    manifest: dict[str, object] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        **info,
        "students": [
            {**slice_, "hidden": list(student_config.hidden), "rep_dim": student_config.rep_dim} for slice_, _ in students
        ],
        "moe": {"common_dim": moe_config.common_dim, "rff_dim": moe_config.rff_dim},
        "weights_file": WEIGHTS_FILE,
    }
    shapes = expected_shapes(manifest)
    missing = set(shapes) ^ set(tensors)
    if missing:
        raise ValueError(f"bundle tensors do not match the manifest: {sorted(missing)}")
    manifest["tensors"] = {name: list(shape) for name, shape in shapes.items()}
    staging = out.parent / f".{out.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(tensors, str(staging / WEIGHTS_FILE))
    manifest["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
