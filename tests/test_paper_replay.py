"""``cmm paper --replay`` end to end on the real BTCUSDT-PERP capture, as a user runs it.

One session (a subprocess, 20x real time, one feed cut) is started, stopped with SIGINT once the
health lines show fills after a minute of market time, and then examined: exit code, log, report,
health lines (stale-feed guard), and the catalog it recorded (re-stamped timestamps).
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from catalog.realdata import REPO_ROOT, capture_paths, missing_reason

pytestmark = [pytest.mark.real_data, pytest.mark.slow]
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

SPEED = 20.0
STALE_MS = 1000
CUT_AT_S, CUT_FOR_S = 30.0, 3.0
MARKET_S = 65.0  # SIGINT once this much market time has been replayed (and fills happened)
SLACK_MS = 300  # live loop jitter on a shared 2-core machine


def _wait_for_health(path: Path, proc: subprocess.Popen, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"cmm paper exited early with {proc.returncode}")
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if rows and rows[-1].get("market_s", 0) >= MARKET_S and rows[-1]["fills"] > 0:
            return rows
        time.sleep(0.25)
    raise AssertionError(f"no health line with {MARKET_S} market s and fills within {timeout_s} s")


def _paper(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "backtests.cli", "paper", str(config), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory):
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions
    from catalog.ingest import write_result

    catalog = tmp_path_factory.mktemp("real") / "catalog"
    write_result(read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions()), catalog)
    return catalog


@pytest.fixture(scope="module")
def session(tmp_path_factory, real_catalog):
    from tests.quick_bundle import build_quick_bundle

    root = tmp_path_factory.mktemp("paper")
    bundle = build_quick_bundle(root)
    catalog = real_catalog
    config = root / "paper.yaml"
    config.write_text(yaml.safe_dump({
        "catalog": str(catalog),
        "instrument_id": "BTCUSDT-PERP.BINANCE",
        "bundle": str(bundle),
        "venue": {"starting_balances": ["100000 USDT"]},
        # max_rejects_per_s: keep the reject backoff out of the way of the stale-feed checks
        "strategy": {"name": "cmm", "params": {"stale_book_ms": STALE_MS, "max_rejects_per_s": 1000}},
        "paper": {"health_interval_s": 0.2, "cuts": [{"at_s": CUT_AT_S, "for_s": CUT_FOR_S}]},
    }))
    out, record, log_path = root / "out", root / "recorded", root / "stdout.log"
    command = [sys.executable, "-m", "backtests.cli", "paper", str(config), "--replay", str(catalog),
               "--speed", str(SPEED), "--out", str(out), "--record", str(record)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_health(out / "health.jsonl", proc, timeout_s=120)
            proc.send_signal(signal.SIGINT)
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    report_path = out / "report.json"
    return SimpleNamespace(
        returncode=returncode,
        log=log_path.read_text(),
        report=json.loads(report_path.read_text()) if report_path.exists() else None,
        health=[json.loads(line) for line in (out / "health.jsonl").read_text().splitlines()],
        catalog=catalog,
        record=record,
    )


def test_sigint_stops_cleanly_with_a_report_and_no_logged_exception(session):
    assert session.returncode == 0
    assert "Received SIGINT, shutting down" in session.log
    assert session.report is not None and session.report["stop_reason"] == "signal"
    assert "Traceback" not in session.log
    assert [line for line in session.log.splitlines() if "[ERROR]" in line] == []


def test_a_minute_of_market_time_is_quoted_and_filled(session):
    report = session.report
    assert report["mode"] == "replay" and report["replay"]["speed"] == SPEED
    assert report["replay"]["market_s"] >= MARKET_S
    assert report["quote_updates"] > 10
    assert report["fills"] > 0 and report["maker_fills"] > 0
    assert report["position_final"] == 0  # on_stop flattened
    assert math.isfinite(report["pnl_mid"])
    assert report["pnl_mid"] == pytest.approx(report["account_pnl"], abs=1e-4)  # flat: the sandbox account agrees
    assert report["map_1s"] > 0
    assert report["decision_latency"]["n"] == report["decisions"] > 0
    assert 0 < report["decision_latency"]["p50_us"] <= report["decision_latency"]["p99_us"]


def test_health_lines_track_the_session(session):
    rows = session.health
    assert len(rows) > 20
    assert all(a["ts_ns"] < b["ts_ns"] for a, b in itertools.pairwise(rows))
    assert all(a["fills"] <= b["fills"] and a["market_s"] <= b["market_s"] for a, b in itertools.pairwise(rows))
    assert any(r["quotes_live"] > 0 for r in rows)
    assert any(r["latency_p50_us"] for r in rows)
    assert "HEALTH book_age=" in session.log


def test_stale_feed_guard_stops_quoting_during_a_cut_and_resumes_after(session):
    [cut] = session.report["replay"]["cuts"]
    assert cut["end_ns"] - cut["start_ns"] >= CUT_FOR_S * 1e9
    rows = session.health
    during = [r for r in rows if cut["start_ns"] <= r["ts_ns"] <= cut["end_ns"]]
    assert during and max(r["book_age_ms"] for r in during) > STALE_MS + 1000  # the feed really stopped
    before_cut = [r for r in rows if cut["start_ns"] - 2e9 <= r["ts_ns"] < cut["start_ns"]]
    assert any(r["quotes_live"] > 0 for r in before_cut)  # there was something to stop
    # The guard checks every stale_book_ms / 4: past that (plus loop jitter) no quote may rest.
    limit_ms = STALE_MS * 1.25 + SLACK_MS
    for row in during:
        if row["book_age_ms"] > limit_ms:
            assert row["stale"] is True and row["quotes_live"] == 0, row
        if row["book_age_ms"] < STALE_MS - SLACK_MS:
            assert row["stale"] is False, row  # and not before the limit
    after = [r for r in rows if cut["end_ns"] < r["ts_ns"] <= cut["end_ns"] + 5e9]
    assert after and all(r["stale"] is False for r in after[1:])
    assert any(r["quotes_live"] > 0 for r in after)
    assert after[-1]["quote_updates"] > during[-1]["quote_updates"]  # new quotes after the feed returned
    assert session.report["stale_episodes"] == 1


def test_recording_is_restamped_backtest_data(session):
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from catalog.validation import F_LAST, F_SNAPSHOT

    iid = "BTCUSDT-PERP.BINANCE"
    recorded = ParquetDataCatalog(str(session.record))
    deltas = recorded.order_book_deltas(instrument_ids=[iid])
    trades = recorded.trade_ticks(instrument_ids=[iid])
    assert recorded.instruments(instrument_ids=[iid])
    assert len(deltas) == session.report["record"]["deltas"] and len(trades) == session.report["record"]["trades"] > 0
    assert deltas[0].flags & F_SNAPSHOT and deltas[-1].flags & F_LAST
    assert all(a.ts_init <= b.ts_init for a, b in itertools.pairwise(deltas))
    assert all(d.ts_event <= d.ts_init for d in deltas[:: 97])
    # Re-stamped to the wall clock of the session, with market time compressed by the speed:
    # before the cut, recorded batch k sits (original offset of batch k) / SPEED after batch 0.
    original = ParquetDataCatalog(str(session.catalog)).order_book_deltas(instrument_ids=[iid])
    rec_batches = [d.ts_init for d in deltas if d.flags & F_LAST]
    orig_batches = [d.ts_init for d in original if d.flags & F_LAST]
    cut = session.report["replay"]["cuts"][0]
    assert session.health[0]["ts_ns"] - 5e9 < rec_batches[0] < session.health[-1]["ts_ns"]
    late_ms = [
        (rec - rec_batches[0] - (orig - orig_batches[0]) // SPEED) / 1e6
        for rec, orig in zip(rec_batches, orig_batches)
        if rec < cut["start_ns"]
    ]
    assert len(late_ms) > 100
    assert min(late_ms) > -20  # never ahead of its compressed market time (batch 0 may itself be late)
    assert sorted(late_ms)[len(late_ms) // 2] < 100  # and typically on time


def test_a_baseline_replays_a_slice_stops_at_its_end_and_its_recording_is_data_again(tmp_path, real_catalog):
    """No bundle, no code change: a registry baseline on a slice starting mid-capture (synthetic
    snapshot first); the replay stops the session when the data ends; the recording, written in
    several chunks, is replayed by a second session and backtested by the BacktestEngine."""
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from catalog.validation import F_LAST
    from cmm_strategy.baselines import FixedSpreadConfig, FixedSpreadStrategy

    base = {
        "catalog": str(real_catalog),
        "instrument_id": "BTCUSDT-PERP.BINANCE",
        "strategy": {"name": "fixed_spread", "params": {"half_spread_ticks": 2}},
        "paper": {"health_interval_s": 0.5, "record_flush_rows": 5000},
    }
    config, whole = tmp_path / "slice.yaml", tmp_path / "whole.yaml"
    config.write_text(yaml.safe_dump({**base, "time_range": {"start_fraction": 0.5, "end_fraction": 0.58}}))
    whole.write_text(yaml.safe_dump(base))
    record = tmp_path / "recorded"
    first = _paper(config, "--replay", str(real_catalog), "--speed", "20", "--out", str(tmp_path / "a"), "--record", str(record))
    assert first.returncode == 0, first.stdout[-2000:]
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["stop_reason"] == "replay finished" and report["replay"]["finished"]
    assert report["strategy"] == "fixed_spread" and report["quote_updates"] > 0
    assert 20 < report["replay"]["market_s"] < 35
    assert len(list((record / "data" / "order_book_delta").rglob("*.parquet"))) > 1  # chunked while running

    data = ParquetDataCatalog(str(record))
    recorded_batches = sum(1 for d in data.order_book_deltas() if d.flags & F_LAST)
    assert 0.8 * report["replay"]["book_batches"] < recorded_batches <= report["replay"]["book_batches"]

    again = _paper(whole, "--replay", str(record), "--speed", "20", "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stdout[-2000:]
    replayed = json.loads((tmp_path / "b" / "report.json").read_text())
    assert replayed["replay"]["finished"] and replayed["replay"]["book_batches"] == recorded_batches

    engine = BacktestEngine(config=BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR")))
    try:
        engine.add_venue(Venue("BINANCE"), OmsType.NETTING, AccountType.MARGIN, [Money(100_000, USDT)], base_currency=USDT, book_type=BookType.L2_MBP)
        instrument = data.instruments()[0]
        engine.add_instrument(instrument)
        engine.add_data(data.order_book_deltas(instrument_ids=[str(instrument.id)]))
        engine.add_data(data.trade_ticks(instrument_ids=[str(instrument.id)]))
        strategy = FixedSpreadStrategy(FixedSpreadConfig(instrument_id=instrument.id, half_spread_ticks=2))
        engine.add_strategy(strategy)
        engine.run()
        assert strategy.decisions > 0 and strategy.quote_updates > 0
    finally:
        engine.dispose()
