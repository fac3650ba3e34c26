"""CMMStrategy through NautilusTrader's BacktestEngine on the real BTCUSDT-PERP capture."""

from __future__ import annotations

import math

import pytest
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.identifiers import Venue

from catalog.realdata import missing_reason
from catalog.validation import F_LAST
from cmm_strategy.strategy import CMMStrategy, CMMStrategyConfig
from backtests.l2_engine import START_BALANCE as START
from tests.engine_harness import run_engine, snapshot_at

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)


def _run_engine(bundle, data, deltas=None, **config):
    instrument = data.instruments[0]
    strategy = CMMStrategy(CMMStrategyConfig(instrument_id=instrument.id, bundle_path=str(bundle), **config))
    return run_engine(strategy, instrument, data.deltas if deltas is None else deltas, data.trades), strategy


@pytest.fixture(scope="module")
def market(quick_bundle, btc_capture):
    return quick_bundle, btc_capture


@pytest.fixture(scope="module")
def run(market):
    bundle, data = market
    engine, strategy = _run_engine(bundle, data)
    batches = sum(1 for d in data.deltas if d.flags & F_LAST)
    yield engine, strategy, data.instruments[0], batches
    engine.dispose()


def test_measured_compute_cost_is_charged_and_skips_batches_while_busy(run):
    _, strategy, _, batches = run
    assert 0 < strategy.decisions <= batches
    assert min(strategy.decision_costs_ns) > 0


def test_without_latency_charging_every_complete_batch_gets_a_decision(market):
    bundle, data = market
    engine, strategy = _run_engine(bundle, data, charge_latency=False)
    assert strategy.decisions == sum(1 for d in data.deltas if d.flags & F_LAST)
    engine.dispose()


def test_orders_reach_the_venue_exactly_the_charged_latency_after_the_decision(market):
    bundle, data = market
    latency_ns = 200_000_000
    engine, strategy = _run_engine(bundle, data, decision_latency_us=latency_ns / 1000)
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    assert quotes
    for order in quotes:
        assert order.ts_init - strategy.order_decision_ns[order.client_order_id.value] == latency_ns
    span_s = (data.deltas[-1].ts_init - data.deltas[0].ts_init) / 1e9
    assert strategy.decisions <= span_s / 0.2 + 1  # busy for 200 ms after each decision
    engine.dispose()


def test_kill_switch_cancels_flattens_and_stops_quoting(market):
    bundle, data = market
    engine, strategy = _run_engine(bundle, data, max_loss=0.5)
    assert strategy.killed
    fills = engine.trader.generate_order_fills_report()
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    kill_ns = max(o.ts_last for o in engine.cache.orders() if not o.is_post_only)  # the flattening order
    assert all(o.ts_init <= kill_ns for o in quotes)
    assert all(not o.is_open for o in engine.cache.orders())
    assert sum(float(p.signed_qty) for p in engine.cache.positions()) == 0
    assert len(fills) > 0
    engine.dispose()


def test_stale_book_guard_cancels_quotes_during_a_feed_gap(market):
    """Cut 20 s out of the book feed (then re-snapshot, as a live client does after a gap): within the
    stale limit (1 s) plus one check interval (0.25 s) after the last book update no quote rests, and
    quoting resumes when the feed returns."""
    bundle, data = market
    start = data.deltas[0].ts_init + 60 * 1_000_000_000
    end = start + 20 * 1_000_000_000
    before = [d for d in data.deltas if d.ts_init < start]
    after = [d for d in data.deltas if d.ts_init >= end]
    kept = before + snapshot_at(data.deltas, after[0].ts_init) + after
    engine, strategy = _run_engine(bundle, data, deltas=kept, stale_book_ms=1000)
    last_book_before_gap = max(d.ts_init for d in kept if d.ts_init < start)
    checkpoint = last_book_before_gap + 1_300_000_000
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    resting_at_checkpoint = [o for o in quotes if o.ts_init <= checkpoint and (o.is_open or o.ts_last > checkpoint)]
    assert resting_at_checkpoint == []
    assert any(o.ts_init >= end for o in quotes)  # quoting resumed after the gap
    assert strategy.decisions > 0
    engine.dispose()


def test_every_submit_and_modify_is_a_counted_quote_update(run):
    engine, strategy, _, _ = run
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    modifies = sum(1 for o in quotes for e in o.events if type(e).__name__ == "OrderPendingUpdate")
    assert modifies == strategy.modifies > 0
    assert strategy.quote_updates == len(quotes) + modifies


def test_quotes_are_post_only_on_the_grid_and_fill(run):
    engine, strategy, instrument, _ = run
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    assert len(quotes) > 100
    tick = float(instrument.price_increment)
    for order in quotes:
        assert math.isclose(round(order.price.as_double() / tick) * tick, order.price.as_double(), abs_tol=1e-9)
    fills = engine.trader.generate_order_fills_report()
    assert len(fills) > 10
    assert (fills["liquidity_side"] == "MAKER").sum() >= len(fills) - 1  # the last one may be the closing market order


def test_fills_and_positions_reconcile_with_the_account(run):
    engine, _, _, _ = run
    fills = engine.trader.generate_order_fills_report()
    signed = sum((1 if side == "BUY" else -1) * float(qty) for side, qty in zip(fills["side"], fills["filled_qty"]))
    net = sum(float(p.signed_qty) for p in engine.cache.positions())
    assert math.isclose(signed, net, abs_tol=1e-9)
    cash = sum(
        (-1 if side == "BUY" else 1) * float(qty) * float(px) for side, qty, px in zip(fills["side"], fills["filled_qty"], fills["avg_px"])
    )
    commissions = sum(float(str(c[0]).split()[0]) for c in fills["commissions"] if c)
    account = engine.cache.account_for_venue(Venue("BINANCE"))
    change = account.balance_total(USDT).as_double() - START
    assert net == 0  # on_stop flattens
    assert math.isclose(change, cash - commissions, abs_tol=1e-6)
