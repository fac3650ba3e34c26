"""`cmm teacher extract` then `cmm probe`: samples -> prompts -> hidden states -> maps -> plan."""

from __future__ import annotations

import json

import pytest

from backtests.cli import main as cmm
from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.ingest import write_result
from catalog.realdata import capture_paths, missing_reason
from tests.test_samples import _staircase_capture
from tests.tiny_models import build_tiny_model
from training.plan import load_plan
from training.prompt import render_prompt
from training.samples import SampleConfig, build_samples


@pytest.fixture(scope="module")
def stairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    result = read_binance_ws([_staircase_capture(folder / "stairs.gz", seconds=120)], IngestOptions())
    write_result(result, folder / "catalog")
    return folder


def _extract(catalog, out, model, *extra):
    return cmm(
        ["teacher", "extract", "--catalog", str(catalog), "--instrument-id", "BTCUSDT-PERP.BINANCE", "--out", str(out), "--model", str(model), "--json", *extra],
    )


def test_extract_then_probe_writes_maps_plan_and_table(stairs, capsys):
    model = build_tiny_model(stairs / "tiny", max_positions=512)
    features = stairs / "features"
    assert _extract(stairs / "catalog", features, model, "--max-samples", "120", "--stain-samples", "8", "--batch-size", "16") == 0
    record = json.loads((features / "extract.json").read_text())
    assert record["samples_extracted"] == 120 and record["num_states"] == 3
    assert record["latency"]["ms_per_decision_batch1"] > 0
    # Re-running finds everything cached: the resumed run extracts nothing new.
    assert _extract(stairs / "catalog", features, model, "--max-samples", "120", "--stain-samples", "8") == 0
    probe_out = stairs / "probe"
    assert cmm(["probe", "--features", str(features), "--out", str(probe_out), "--json"]) == 0
    for name in ("f_task.png", "f_data.png", "f_task.json", "f_data.json", "plan.json", "teacher_vs_numeric.md", "teacher_predictions.parquet"):
        assert (probe_out / name).stat().st_size > 0, name
    plan = load_plan(probe_out / "plan.json")
    assert {s.task for s in plan.students} == {"mid", "spread", "volume"}
    f_data = json.loads((probe_out / "f_data.json").read_text())
    assert len(f_data["F_data"]) == 3 and len(f_data["components"]) == 7
    capsys.readouterr()


def test_prompt_longer_than_the_context_is_a_clear_error(stairs, capsys):
    model = build_tiny_model(stairs / "tiny-short", max_positions=16)
    code = _extract(stairs / "catalog", stairs / "features-short", model, "--max-samples", "4", "--stain-samples", "2")
    assert code == 2
    err = capsys.readouterr().err
    assert "tokens" in err and "16" in err


def test_missing_model_path_is_a_clear_error(stairs, capsys):
    code = _extract(stairs / "catalog", stairs / "features-missing", stairs / "no-such-model", "--max-samples", "4")
    assert code == 2
    assert "no-such-model" in capsys.readouterr().err


def test_prompt_is_short_fixed_text_that_carries_the_numbers(stairs):
    samples = build_samples(stairs / "catalog", "BTCUSDT-PERP.BINANCE", SampleConfig(warmup_s=2.0), progress=False)
    first = render_prompt(samples.x[0], samples.feature_names, "BTCUSDT-PERP")
    later = render_prompt(samples.x[-1], samples.feature_names, "BTCUSDT-PERP")
    assert first.startswith("BTCUSDT-PERP L2") and first.endswith("Next mid:")
    assert first.splitlines()[0] == later.splitlines()[0] and len(first.splitlines()) == len(later.splitlines()) == 6
    assert "Spread 1 " in first  # the staircase market keeps a one-tick spread
    assert len(first) < 300


@pytest.mark.slow
@pytest.mark.real_data
def test_default_teacher_on_the_real_btcusdt_capture(tmp_path, capsys):
    """The real default SmolLM2 through the same path, on real data (64 samples to stay quick)."""
    if missing_reason():
        pytest.skip(missing_reason())
    result = read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions())
    write_result(result, tmp_path / "catalog")
    code = cmm(
        ["teacher", "extract", "--catalog", str(tmp_path / "catalog"), "--instrument-id", "BTCUSDT-PERP.BINANCE", "--out", str(tmp_path / "f"), "--max-samples", "64", "--stain-samples", "4", "--json"],
    )
    assert code == 0
    record = json.loads((tmp_path / "f" / "extract.json").read_text())
    assert record["model_id"] == "SmolLM2-135M-Instruct" and record["num_states"] == 31 and record["hidden_size"] == 576
    assert record["latency"]["mean_prompt_tokens"] < 170
    assert cmm(["probe", "--features", str(tmp_path / "f"), "--out", str(tmp_path / "p"), "--json"]) == 0
    assert load_plan(tmp_path / "p" / "plan.json").num_layers == 31
    capsys.readouterr()
