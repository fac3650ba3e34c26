"""The queue fill model on the real BTCUSDT-PERP capture: cost, and partial fills of large quotes."""

from __future__ import annotations

import time

import pytest

import backtests.fill.nautilus_model as nm
from cmm_strategy.baselines import FixedSpreadConfig, FixedSpreadStrategy
from tests.engine_harness import run_engine

pytestmark = pytest.mark.real_data

SECONDS = 60


def _window(capture, seconds: int = SECONDS):
    end = capture.deltas[0].ts_init + seconds * 10**9
    deltas = [d for d in capture.deltas if d.ts_init < end]
    trades = [t for t in capture.trades if t.ts_init < end]
    return capture.instruments[0], deltas, trades


def _run(capture, order_size: float, model: str | None):
    instrument, deltas, trades = _window(capture)
    venue = {}
    if model is not None:
        venue = {
            "fill_model": nm.QueuePositionFillModel(
                nm.QueueFillModelConfig(model=model)
            ),
            "modules": [nm.QueuePositionModule(nm.QueueModuleConfig())],
            "trade_execution": True,
        }
    strategy = FixedSpreadStrategy(
        FixedSpreadConfig(
            instrument_id=instrument.id,
            order_size=order_size,
            q_max=1.0,
            max_orders_per_s=50,
        )
    )
    started = time.perf_counter()
    engine = run_engine(strategy, instrument, deltas, trades, **venue)
    return engine, time.perf_counter() - started


def test_queue_model_costs_little_more_than_the_default_fill_model(btc_capture):
    """~70k deltas: the queue model used to re-read the deep book per item (~100x the default run)."""
    engine, default_s = _run(btc_capture, 0.05, None)
    engine.dispose()
    engine, queue_s = _run(btc_capture, 0.05, "risk_averse")
    engine.dispose()
    assert queue_s < 3.0 * default_s + 0.5, (queue_s, default_s)


@pytest.mark.parametrize("model", ["risk_averse", "power"])
def test_large_quotes_fill_partially_by_the_prints_that_reach_them(
    btc_capture, monkeypatch, model
):
    """0.5 BTC quotes vs a median print of 0.01 BTC: a print fills only its excess over the queue
    ahead, so queue fills are mostly partial and orders fill in several pieces."""
    shares = []
    floor = nm._floor_qty
    monkeypatch.setattr(
        nm, "_floor_qty", lambda q, p: shares.append(floor(q, p)) or shares[-1]
    )
    engine, _ = _run(btc_capture, 0.5, model)
    fills = [
        (order, event)
        for order in engine.cache.orders()
        for event in order.events
        if type(event).__name__ == "OrderFilled"
    ]
    engine.dispose()
    queue_fills = [q for q in shares if q > 0]
    assert len(queue_fills) >= 50
    assert sum(q < 0.5 for q in queue_fills) >= 0.9 * len(queue_fills)
    assert len(fills) > 2 * len({order.client_order_id for order, _ in fills})
