"""Order management through the engine on the real BTCUSDT-PERP capture: modify vs cancel/replace,
the ladder, partial fills, the notional cap, and cancels in flight under venue latency."""

from __future__ import annotations

import pytest
from nautilus_trader.backtest.models import LatencyModel

from backtests.fill.nautilus_model import QueueFillModelConfig, QueueModuleConfig, QueuePositionFillModel, QueuePositionModule
from catalog.realdata import missing_reason
from cmm_strategy.baselines import FixedSpreadConfig, FixedSpreadStrategy
from tests.engine_harness import assert_own_quotes_never_cross, position_path, quote_segments, run_engine

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def market(btc_capture):
    end = btc_capture.deltas[0].ts_init + 120 * SECOND
    return (
        btc_capture.instruments[0],
        [d for d in btc_capture.deltas if d.ts_init < end],
        [t for t in btc_capture.trades if t.ts_init < end],
    )


def _run(market, venue=None, **config):
    instrument, deltas, trades = market
    strategy = FixedSpreadStrategy(FixedSpreadConfig(instrument_id=instrument.id, **config))
    return run_engine(strategy, instrument, deltas, trades, **(venue or {})), strategy


def _updates(engine) -> int:
    return sum(1 for o in engine.cache.orders() for e in o.events if type(e).__name__ == "OrderPendingUpdate")


def test_modify_keeps_orders_and_cancel_replace_creates_new_ones(market):
    modify, s_modify = _run(market, use_modify=True, max_orders_per_s=50)
    replace, s_replace = _run(market, use_modify=False, max_orders_per_s=50)
    assert _updates(modify) == s_modify.modifies > 0
    assert _updates(replace) == s_replace.modifies == 0
    assert len(replace.cache.orders()) > len(modify.cache.orders())
    cancelled = [o for o in replace.cache.orders() if o.status_string() == "CANCELED"]
    assert len(cancelled) > 10
    for engine in (modify, replace):
        assert_own_quotes_never_cross(engine)
        engine.dispose()


def test_ladder_rests_up_to_levels_orders_per_side_spaced_on_the_grid(market):
    instrument = market[0]
    tick = float(instrument.price_increment)
    engine, _ = _run(market, levels=3, level_spacing_ticks=2, q_max=0.05, max_orders_per_s=50)
    segments = quote_segments(engine)
    most, spaced = 0, 0
    for side in ("BUY", "SELL"):
        mine = [s for s in segments if s[0] == side]
        for _, _, t0, _ in mine[::25]:  # sample instants
            live = sorted(p for _, p, a, b in mine if a <= t0 < b)
            most = max(most, len(live))
            if len(live) == 3:
                gaps = {round((hi - lo) / tick) for lo, hi in zip(live, live[1:])}
                spaced += gaps == {2}
    assert most == 3 and spaced > 0
    engine.dispose()


def test_partial_fills_and_the_position_cap_with_large_orders(market):
    """Under the queue-position fill model a trade fills an order only by what exceeds the queue ahead,
    so large passive orders are filled in parts; leaves are requoted, the cap holds."""
    queue = {
        "fill_model": QueuePositionFillModel(QueueFillModelConfig()),
        "modules": [QueuePositionModule(QueueModuleConfig())],
        "trade_execution": True,
    }
    engine, strategy = _run(market, venue=queue, order_size=0.5, q_max=1.0, max_orders_per_s=50)
    pieces = [sum(1 for e in o.events if type(e).__name__ == "OrderFilled") for o in engine.cache.orders() if o.is_post_only]
    assert sum(1 for n in pieces if n > 1) > 5, "large passive orders should fill in parts (trades smaller than the order)"
    assert strategy.modifies > 0  # partly filled orders stay alive and are repriced, leaves and all
    assert max(abs(q) for q in position_path(engine)[:-1]) <= 1.0 + 1e-12
    engine.dispose()


def test_notional_cap_holds_in_the_worst_case(market):
    """max_notional 1,000 USDT at ~61,800 USDT/BTC allows 0.016 BTC, well inside q_max = 0.05."""
    engine, strategy = _run(market, order_size=0.005, q_max=0.05, max_notional=1_000.0)
    price = max(float(o.price) for o in engine.cache.orders() if o.is_post_only)
    path = position_path(engine)[:-1]
    assert path and max(abs(q) for q in path) * price <= 1_000.0 + 1e-6
    assert strategy.risk_trimmed > 0
    engine.dispose()


def test_cancels_in_flight_never_take_the_position_past_q_max(market):
    """With 50 ms to reach the venue, cancel/replace leaves old orders live while new ones are sent; the
    worst-case check counts orders pending cancel, so the position stays inside q_max."""
    latency = LatencyModel(base_latency_nanos=50_000_000, insert_latency_nanos=0, update_latency_nanos=0, cancel_latency_nanos=0)
    engine, strategy = _run(market, venue={"latency_model": latency}, use_modify=False, order_size=0.002, q_max=0.004, max_orders_per_s=50)
    path = position_path(engine)[:-1]
    assert len(path) > 5 and max(abs(q) for q in path) <= 0.004 + 1e-12
    assert strategy.risk_trimmed > 0  # the in-flight orders did bind
    engine.dispose()
