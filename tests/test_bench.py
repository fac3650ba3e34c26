"""``cmm bench`` smoke test: the JSON shape on the first deltas of the real capture (no timing assertions:
benchmarks are not timed tests)."""

from __future__ import annotations

import json

import pytest

from backtests.bench import BenchSizes, render_markdown, run_bench
from catalog.realdata import missing_reason

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

TINY = BenchSizes(ingest_repeats=1, decision_repeats=1, decision_min_states=100, teacher_states=2, backtest_repeats=1, max_events=20_000)

KEYS = {
    "decision_us_p50": float, "decision_us_p99": float, "teacher_ms_per_decision": float, "speedup": int,
    "backtest_events_per_s_cmm": int, "backtest_events_per_s_noop": int, "throughput_ratio": float,
    "ingest_deltas_per_s": int,
}


def test_bench_reports_every_figure_as_json(quick_bundle, tmp_path):
    from tests.tiny_models import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", max_positions=512)
    figures = run_bench(False, quick_bundle, sizes=TINY, teacher_model=str(model), command="cmm bench (test)")
    figures = json.loads(json.dumps(figures))  # what --json prints
    for key, kind in KEYS.items():
        assert isinstance(figures[key], kind), (key, figures.get(key))
        assert figures[key] > 0, key
    assert figures["decision_states"] >= 100
    assert figures["backtest_events"] == figures["backtest_deltas"] + figures["backtest_trades"] <= 20_000 + figures["backtest_trades"]
    assert {"cores", "cpu", "python", "versions"} <= set(figures["machine"])
    assert {"nautilus_trader", "numpy", "torch"} <= set(figures["machine"]["versions"])
    md = render_markdown(figures)
    assert "`decision_us_p99`" in md and md.count("`cmm bench (test)`") >= len(KEYS)
