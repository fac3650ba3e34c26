"""``cmm backtest`` on each real-data config: results reconcile with NautilusTrader's own reports;
bad configs are refused before the engine starts; the report opens in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from backtests.cli import main as cmm
from backtests.config import ConfigError, load_run_config, merge_config
from backtests.report import SECTIONS
from backtests.runner import run_backtest
from catalog.realdata import missing_reason

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

CONFIGS = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "real"
REAL_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml"))
# Fixed charged latency keeps runs deterministic (the measured one depends on the machine).
FAST = {"venue": {"fill_model": {"name": "nautilus-default"}}, "strategy": {"params": {"decision_latency_us": 20.0}}}


def _local(config: str, real_catalog: Path, bundle: Path, tmp_path: Path, **extra) -> Path:
    """The shipped config with the catalog and bundle of this test session."""
    raw = yaml.safe_load((CONFIGS / config).read_text())
    raw = merge_config(merge_config(raw, {"catalog": str(real_catalog), "bundle": str(bundle), **FAST}), extra)
    path = tmp_path / config
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_real_capture_has_a_config():
    ids = {yaml.safe_load((CONFIGS / c).read_text())["instrument_id"] for c in REAL_CONFIGS}
    assert ids == {"BTCUSDT-PERP.BINANCE", "ETHUSDT-PERP.BINANCE", "BTCUSDT.BINANCE", "BTCUSD-PERP.BINANCE"}


@pytest.mark.parametrize("config", REAL_CONFIGS)
def test_real_config_results_reconcile_with_nautilus_reports(config, real_catalog, quick_bundle, tmp_path):
    results = run_backtest(_local(config, real_catalog, quick_bundle, tmp_path), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["metrics"] == pytest.approx(results["metrics"], nan_ok=True)
    m, rec = results["metrics"], results["reconciliation"]
    assert m["fills"] == rec["nautilus_fills"] > 0
    assert rec["final_position"] == pytest.approx(0.0, abs=1e-12)  # flattened at the end of the run
    # flat at the end, PnL marked to mid is the account's balance change; the account rounds every
    # fill's cash and fee to the currency's precision (1e-8)
    tolerance = 2e-8 * m["fills"] + 1e-9
    assert math.isclose(m["pnl"], rec["account_balance_change"], abs_tol=tolerance)
    assert math.isclose(m["fees"], rec["nautilus_commissions"], abs_tol=tolerance)
    assert m["pnl_no_rebates"] <= m["pnl"]  # the configs pay maker rebates
    window = results["window"]
    assert window["data_start_ns"] < window["start_ns"] < window["end_ns"]
    assert (tmp_path / "run" / "report.html").is_file()


def _cli_error(path: Path, capsys) -> str:
    assert cmm(["backtest", str(path), "--out", str(path.parent / "out")]) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"strategy": {"name": "martingale"}}, "strategy.name: unknown strategy 'martingale'"),
        ({"bundle": "/nonexistent/bundle"}, "bundle: no model bundle"),
        ({"instrument_id": "SOLUSDT-PERP.BINANCE"}, "instrument_id: SOLUSDT-PERP.BINANCE not in catalog"),
        ({"time_range": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}}, "time_range: no data in the requested range"),
        ({"venue": {"fill_model": {"name": "queue-power", "nn": 2}}}, "fill_model.nn: unknown key"),
        ({"venue": {"fees": {"maker": "cheap", "taker": 0.0004}}}, "venue.fees.maker: expected int or float"),
        ({"venu": {}}, "venu: unknown key"),
        ({"strategy": {"name": "cmm", "params": {"q_maximum": 1}}}, "strategy.params"),
    ],
)
def test_bad_configs_are_refused_before_the_engine_starts(change, expected, real_catalog, quick_bundle, tmp_path, capsys):
    raw = yaml.safe_load(_local("btcusdt-perp.yaml", real_catalog, quick_bundle, tmp_path).read_text())
    raw = merge_config({k: v for k, v in raw.items() if k != "time_range" or k not in change}, change)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    message = _cli_error(bad, capsys)
    assert str(bad) in message and expected in message
    assert not (tmp_path / "out").exists()  # nothing ran


def test_unknown_strategy_names_the_known_ones(real_catalog, tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text(yaml.safe_dump({"catalog": str(real_catalog), "instrument_id": "BTCUSDT-PERP.BINANCE", "strategy": {"name": "nope"}}))
    with pytest.raises(ConfigError, match="known: avellaneda_stoikov, cmm, fixed_spread, glft, teacher_direct"):
        load_run_config(bad)


@pytest.fixture(scope="module")
def report_run(real_catalog, quick_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run_backtest(_local("btcusdt-perp.yaml", real_catalog, quick_bundle, tmp), tmp / "run", progress=False)
    return tmp / "run"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--allow-file-access-from-files",
]


def test_report_opens_in_headless_chromium_with_every_section(report_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    page = (report_run / "report.html").as_uri()
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, f"section {section} missing"
    assert dom.count("<img") >= 5
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1200,2600", f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2600, 1200)
    assert float(np.std(pixels[..., :3])) > 0.05  # plots rendered, not a blank page
