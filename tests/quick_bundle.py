"""A small but real bundle for strategy tests: staircase market, tiny random Llama teacher, quick training."""

from __future__ import annotations

from pathlib import Path

from backtests.cli import main as cmm
from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.ingest import write_result
from tests.test_samples import _staircase_capture
from tests.tiny_models import build_tiny_model
from training.distill_job import run_distill
from training.hajek import HajekConfig
from training.students import StudentConfig


QUICK_STUDENTS = StudentConfig(max_epochs=15, patience=5)
QUICK_MOE = HajekConfig(max_epochs=40, patience=10)


def build_quick_bundle(folder: Path) -> Path:
    """Ingest a made-up market, extract with a tiny model, distill quickly; returns the bundle dir.

    The features are in ``folder / "features"`` and ``eval.json`` in the bundle."""
    result = read_binance_ws([_staircase_capture(folder / "stairs.gz", seconds=150)], IngestOptions())
    write_result(result, folder / "catalog")
    model = build_tiny_model(folder / "tiny", max_positions=512)
    code = cmm(
        ["teacher", "extract", "--catalog", str(folder / "catalog"), "--instrument-id", "BTCUSDT-PERP.BINANCE", "--out", str(folder / "features"),
         "--model", str(model), "--max-samples", "400", "--stain-samples", "8", "--json"],
    )
    assert code == 0
    run_distill([folder / "features"], folder / "bundle", seed=3, student_config=QUICK_STUDENTS, moe_config=QUICK_MOE, progress=False)
    return folder / "bundle"
