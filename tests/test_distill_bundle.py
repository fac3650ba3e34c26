"""Students + Hájek-MoE + baselines end to end on a small market, and the bundle's contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from backtests.cli import main as cmm
from cmm_strategy.bundle import BundleError, load_bundle, sha256_file
from tests.quick_bundle import QUICK_MOE, QUICK_STUDENTS, build_quick_bundle
from training.distill_job import pool_features, run_distill

@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill")
    bundle = build_quick_bundle(folder)
    return folder, json.loads((bundle / "eval.json").read_text())


def test_eval_covers_cmm_every_baseline_and_every_target(distilled):
    _, evaluation = distilled
    expected = {
        "cmm_hajek_moe", "hajek_uniform_gate", "plain_average", "softmax_gate_raw_outputs", "linear_stacking",
        "teacher_best_layer", "direct_student_ground_truth", "student_output_kd", "student_fitnets_feature_kd", "ridge_on_x",
    }
    assert set(evaluation["models"]) == expected
    for model in expected:
        for target in evaluation["targets"]:
            row = evaluation["models"][model][target]
            assert {"r2", "mse", "ic", "ic_se", "teacher_r2", "teacher_ic"} <= set(row)
    assert evaluation["inference_time_per_decision"]["cmm_hajek_moe"]["us_p50"] > 0
    moe = evaluation["moe"][evaluation["targets"][0]]
    assert set(moe) == set(evaluation["plan_students"])
    assert sum(v["mean_gate"] for v in moe.values()) == pytest.approx(1.0, abs=1e-6)
    assert sum(v["variance_share"] for v in moe.values()) == pytest.approx(1.0, abs=1e-6)


def test_numpy_bundle_equals_the_torch_models(distilled):
    """The numpy runtime vs the same float32 weights run in float64 torch: equal to 1e-5."""
    folder, _ = distilled
    bundle = load_bundle(folder / "bundle")
    pooled = pool_features([folder / "features"])
    x = pooled.x[:64]
    # Rebuild the torch forward from the exported tensors in float64.
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in load_file(str(folder / "bundle" / "weights.safetensors")).items()}
    xs = (torch.tensor(x, dtype=torch.float64) - t["norm.x_mean"]) / t["norm.x_scale"]
    zs = []
    for k, student in enumerate(bundle.manifest["students"]):
        h = xs
        depth = len(student["hidden"]) + 1
        for i in range(depth):
            h = h @ t[f"students.{k}.w{i}"] + t[f"students.{k}.b{i}"]
            if i < depth - 1:
                h = torch.relu(h)
        zs.append(h)
    u = torch.stack([np.sqrt(2.0 / t["moe.omega"].shape[1]) * torch.cos(z @ t[f"moe.a.{k}"] @ t["moe.omega"] + t["moe.phase"]) for k, z in enumerate(zs)], 1)
    terms = torch.einsum("nkd,kdt->nkt", u - t["moe.u_mean"], t["moe.beta"])
    gate = torch.softmax(torch.einsum("nd,tdk->nkt", u.mean(1), t["moe.gate_v"]) + t["moe.gate_c"].T[None], dim=1)
    torch_y = (t["moe.y_mean"] + (len(zs) * gate * terms).sum(1)) * t["norm.y_scale"] + t["norm.y_mean"]
    np.testing.assert_allclose(bundle.predict(x), torch_y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bundle.predict(x), bundle.predict_reference(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bundle.predict(x[0]), bundle.predict(x)[0], rtol=1e-12)


def test_manifest_records_what_the_runtime_needs(distilled):
    folder, _ = distilled
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text())
    for key in ("format_version", "feature_spec", "feature_names", "targets", "tasks", "horizons_s", "plan", "teacher", "training_data", "weights_sha256", "tensors"):
        assert key in manifest, key
    assert manifest["training_data"]["instruments"] == ["BTCUSDT-PERP.BINANCE"]
    assert manifest["weights_sha256"] == sha256_file(folder / "bundle" / "weights.safetensors")


def _copy(folder, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(folder / "bundle", target)
    return target


def test_a_bundle_with_a_wrong_version_is_refused(distilled, tmp_path):
    bundle = _copy(distilled[0], tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 99"):
        load_bundle(bundle)


def test_a_bundle_with_a_bad_checksum_is_refused(distilled, tmp_path):
    bundle = _copy(distilled[0], tmp_path)
    data = bytearray((bundle / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bundle / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle)


@pytest.mark.parametrize("damage", ["missing", "shape"])
def test_a_bundle_with_a_missing_or_misshapen_tensor_is_refused(distilled, tmp_path, damage):
    bundle = _copy(distilled[0], tmp_path)
    tensors = load_file(str(bundle / "weights.safetensors"))
    if damage == "missing":
        del tensors["moe.beta"]
    else:
        tensors["moe.beta"] = tensors["moe.beta"][:, :-1]
    save_file(tensors, str(bundle / "weights.safetensors"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(bundle / "weights.safetensors")  # a consistent but wrong bundle
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="missing tensor 'moe.beta'" if damage == "missing" else "'moe.beta' has shape"):
        load_bundle(bundle)


def test_distill_is_deterministic_for_a_seed(distilled, tmp_path):
    folder, evaluation = distilled
    again = run_distill([folder / "features"], tmp_path / "again", seed=3, student_config=QUICK_STUDENTS, moe_config=QUICK_MOE, progress=False)
    a = load_bundle(folder / "bundle").predict(pool_features([folder / "features"]).x[:32])
    b = load_bundle(tmp_path / "again").predict(pool_features([folder / "features"]).x[:32])
    np.testing.assert_array_equal(a, b)
    # NaN-aware: the staircase market has constant targets, whose R2 and IC are NaN.
    assert json.dumps(again["models"]["cmm_hajek_moe"], sort_keys=True) == json.dumps(evaluation["models"]["cmm_hajek_moe"], sort_keys=True)


def test_eval_table_command_writes_markdown_and_a_chart(distilled, tmp_path, capsys):
    folder, _ = distilled
    assert cmm(["eval-table", str(folder / "bundle"), "--out", str(tmp_path / "t.md"), "--png", str(tmp_path / "t.png")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "| cmm_hajek_moe |" in text and "| teacher_best_layer |" in text
    assert (tmp_path / "t.png").stat().st_size > 10_000
    capsys.readouterr()
