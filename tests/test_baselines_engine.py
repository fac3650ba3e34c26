"""Every baseline market maker end to end through BacktestEngine on the real BTCUSDT-PERP capture:
it quotes, gets filled, and the fills and positions reconcile with the account."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.identifiers import Venue

from catalog.realdata import missing_reason
from cmm_strategy.baselines import (
    AvellanedaStoikovConfig,
    AvellanedaStoikovStrategy,
    FixedSpreadConfig,
    FixedSpreadStrategy,
    GLFTConfig,
    GLFTStrategy,
)
from cmm_strategy.teacher_direct import TeacherDirectConfig, TeacherDirectStrategy
from backtests.l2_engine import START_BALANCE
from tests.engine_harness import position_path, run_engine

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

Q_MAX = 0.01


@pytest.fixture(scope="module")
def btc(btc_capture):
    return btc_capture


@pytest.fixture(scope="module")
def teacher_file(btc, tmp_path_factory):
    """A cached-predictions file on the capture's own clock, one state every 300 ms. The values are
    constant: this test is about the clock (latency charged, decisions only on read states)."""
    start, end = btc.deltas[0].ts_init + 5_000_000_000, btc.deltas[-1].ts_init
    ts = np.arange(start, end, 300_000_000, dtype=np.int64)
    n = len(ts)
    table = pa.table(
        {
            "instrument_id": pa.array(["BTCUSDT-PERP.BINANCE"] * n),
            "ts_ns": pa.array(ts),
            "mid_1s": pa.array(np.zeros(n)),
            "spread_1s": pa.array(np.full(n, 2.0)),
            "volume_1s": pa.array(np.full(n, math.log1p(0.05))),
        }
    ).replace_schema_metadata({"teacher_ms_per_decision": "153.5"})
    path = tmp_path_factory.mktemp("teacher") / "teacher_predictions.parquet"
    pq.write_table(table, path)
    return path, ts


def _strategies(instrument_id, teacher_path):
    common = dict(instrument_id=instrument_id, q_max=Q_MAX)
    return {
        "fixed_spread": FixedSpreadStrategy(FixedSpreadConfig(**common, half_spread_ticks=1.0)),
        "avellaneda_stoikov": AvellanedaStoikovStrategy(AvellanedaStoikovConfig(**common, gamma=0.05)),
        "glft": GLFTStrategy(GLFTConfig(**common, gamma=0.05)),
        "teacher_direct": TeacherDirectStrategy(
            TeacherDirectConfig(**common, predictions_path=str(teacher_path), size_fraction=0.02, max_size=0.002)
        ),
    }


@pytest.fixture(scope="module")
def runs(btc, teacher_file):
    instrument = btc.instruments[0]
    out = {}
    for name, strategy in _strategies(instrument.id, teacher_file[0]).items():
        out[name] = (run_engine(strategy, instrument, btc.deltas, btc.trades), strategy)
    yield out
    for engine, _ in out.values():
        engine.dispose()


@pytest.mark.parametrize("name", ["fixed_spread", "avellaneda_stoikov", "glft", "teacher_direct"])
def test_baseline_quotes_fills_and_reconciles_with_the_account(runs, name):
    engine, strategy = runs[name]
    fills = engine.trader.generate_order_fills_report()
    assert strategy.quote_updates > 10 and len(fills) > 5
    maker = fills[fills["liquidity_side"] == "MAKER"]
    assert len(maker) >= len(fills) - 1  # only the closing market order at stop takes liquidity
    signed = sum((1 if s == "BUY" else -1) * float(q) for s, q in zip(fills["side"], fills["filled_qty"]))
    net = sum(float(p.signed_qty) for p in engine.cache.positions())
    assert math.isclose(signed, net, abs_tol=1e-9) and net == 0  # on_stop flattens
    cash = sum((-1 if s == "BUY" else 1) * float(q) * float(px) for s, q, px in zip(fills["side"], fills["filled_qty"], fills["avg_px"]))
    commissions = sum(float(str(c[0]).split()[0]) for c in fills["commissions"] if c)
    change = engine.cache.account_for_venue(Venue("BINANCE")).balance_total(USDT).as_double() - START_BALANCE
    assert math.isclose(change, cash - commissions, abs_tol=1e-6)
    # the hard inventory limit held after every fill but the closing one
    assert max(abs(q) for q in position_path(engine)[:-1]) <= Q_MAX + 1e-12


@pytest.mark.parametrize("name", ["avellaneda_stoikov", "glft"])
def test_online_estimators_fit_the_real_feed(runs, name):
    _, strategy = runs[name]
    assert strategy.intensity.fitted and strategy.intensity.kappa > 0 and strategy.intensity.a > 0
    assert 1.0 < strategy.volatility.sigma < 1000.0  # ticks per sqrt(s), prior was 1.0


def test_teacher_direct_pays_the_teacher_latency_and_decides_only_on_states_it_read(runs, teacher_file):
    engine, strategy = runs["teacher_direct"]
    _, read_ts = teacher_file
    latency = 153_500_000
    assert strategy.teacher_latency_ns == latency
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    decision_times = {strategy.order_decision_ns[o.client_order_id.value] for o in quotes}
    assert all(o.ts_init - strategy.order_decision_ns[o.client_order_id.value] == latency for o in quotes)
    # one decision per read state at most, never two within the teacher's latency
    assert strategy.decisions <= len(read_ts)
    ordered = sorted(decision_times)
    assert min(np.diff(ordered)) >= latency
