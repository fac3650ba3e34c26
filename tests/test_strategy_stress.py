"""Stress through the engine on the real BTCUSDT-PERP capture: a feed gap without re-snapshot, a crossed
book, NaN model output, 10,000 deltas in one millisecond, a reject storm. Each run must finish, never
rest a quote that breaks an invariant (own bid below own ask, tick grid, lot sizes in bounds), and
keep the risk limits (|position| <= q_max after every fill, order-rate limit)."""

from __future__ import annotations

import math

import pytest
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, OrderSide
from nautilus_trader.model.objects import Price, Quantity

from catalog.realdata import missing_reason
from catalog.validation import F_LAST
from cmm_strategy.book_levels import BookLevels
from cmm_strategy.strategy import CMMStrategy, CMMStrategyConfig
from tests.engine_harness import assert_own_quotes_never_cross, max_in_window, order_action_times, position_path, quote_segments, run_engine

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

SECOND = 1_000_000_000
Q_MAX = 0.01
RATE = 10


@pytest.fixture(scope="module")
def market(quick_bundle, btc_capture):
    """The first two minutes of the capture (enough for every scenario, a third of the run time)."""
    end = btc_capture.deltas[0].ts_init + 120 * SECOND
    deltas = [d for d in btc_capture.deltas if d.ts_init < end]
    trades = [t for t in btc_capture.trades if t.ts_init < end]
    return quick_bundle, btc_capture.instruments[0], deltas, trades


def _config(bundle, instrument, **overrides):
    base = dict(instrument_id=instrument.id, bundle_path=str(bundle), q_max=Q_MAX, max_orders_per_s=RATE, levels=2)
    return CMMStrategyConfig(**{**base, **overrides})


def _check_invariants(engine, instrument, config):
    tick = float(instrument.price_increment)
    assert assert_own_quotes_never_cross(engine) > 0
    for order in (o for o in engine.cache.orders() if o.is_post_only):
        assert math.isclose(round(order.price.as_double() / tick) * tick, order.price.as_double(), abs_tol=1e-9)
        lots = order.quantity.as_double() / 0.001
        assert math.isclose(lots, round(lots), abs_tol=1e-9)
    path = position_path(engine)
    assert max((abs(q) for q in path[:-1]), default=0.0) <= config.q_max + 1e-12
    assert max_in_window(order_action_times(engine)) <= config.max_orders_per_s


def _at(deltas, seconds):
    return deltas[0].ts_init + seconds * SECOND


def _resting_during(engine, start, end):
    """Segments of our quotes that rested at some point inside [start, end)."""
    return [s for s in quote_segments(engine) if s[2] < end and s[3] > start]


def test_feed_gap_without_resnapshot_leaves_a_broken_book_but_no_crash(market):
    """20 s of deltas lost and no snapshot after: the book keeps stale levels (possibly crossed);
    the stale guard cancels during the gap and quoting goes on afterwards within the invariants."""
    bundle, instrument, deltas, trades = market
    start, end = _at(deltas, 40), _at(deltas, 60)
    kept = [d for d in deltas if not start <= d.ts_init < end]
    config = _config(bundle, instrument, stale_book_ms=500)
    strategy = CMMStrategy(config)
    engine = run_engine(strategy, instrument, kept, trades)
    assert _resting_during(engine, start + SECOND, end) == []
    bid, _, ask, _ = strategy.levels.best()
    after = [o for o in engine.cache.orders() if o.is_post_only and o.ts_init > end]
    if bid >= ask:  # levels the gap should have removed still cross the book: no quotes at all
        assert after == [] and strategy.decisions > 0
    else:
        assert after
    _check_invariants(engine, instrument, config)
    engine.dispose()


def _crossing_delta(instrument, price, ts, action):
    order = BookOrder(OrderSide.BUY, Price(price, instrument.price_precision), Quantity(5.0, instrument.size_precision), 0)
    return OrderBookDelta(instrument.id, action, order, F_LAST, 0, ts, ts)


def test_crossed_book_cancels_quotes_and_makes_none_until_it_uncrosses(market):
    bundle, instrument, deltas, trades = market
    start, end = _at(deltas, 50) + 1, _at(deltas, 55) + 1
    levels = BookLevels()
    for d in deltas:
        if d.ts_init >= start:
            break
        levels.apply(d)
    cross_px = levels.best()[2] + 1000 * float(instrument.price_increment)  # a bid 1000 ticks above the best ask
    injected = [_crossing_delta(instrument, cross_px, start, BookAction.ADD), _crossing_delta(instrument, cross_px, end, BookAction.DELETE)]
    config = _config(bundle, instrument, charge_latency=False)
    strategy = CMMStrategy(config)
    engine = run_engine(strategy, instrument, sorted(deltas + injected, key=lambda d: d.ts_init), trades)
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    assert not any(start <= strategy.order_decision_ns[o.client_order_id.value] < end for o in quotes)
    assert _resting_during(engine, start + 1, end) == []  # cancelled at the first crossed batch
    assert any(strategy.order_decision_ns[o.client_order_id.value] >= end for o in quotes)
    _check_invariants(engine, instrument, config)
    engine.dispose()


class NaNWindowCMM(CMMStrategy):
    """The bundle's output turns NaN inside a time window (a broken model, a numeric blow-up)."""

    window: tuple[int, int] = (0, 0)

    def predict(self, ts, bid, ask, position):
        mid, spread, volume = super().predict(ts, bid, ask, position)
        if self.window[0] <= ts < self.window[1]:
            return math.nan, spread, volume
        return mid, spread, volume


def test_nan_model_output_cancels_every_quote_and_quoting_resumes_after(market):
    bundle, instrument, deltas, trades = market
    config = _config(bundle, instrument, charge_latency=False)
    strategy = NaNWindowCMM(config)
    strategy.window = (_at(deltas, 30), _at(deltas, 45))
    engine = run_engine(strategy, instrument, deltas, trades)
    first_batch_in_window = min(d.ts_init for d in deltas if d.ts_init >= strategy.window[0] and d.flags & F_LAST)
    assert _resting_during(engine, first_batch_in_window + 1, strategy.window[1]) == []
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    assert any(strategy.order_decision_ns[o.client_order_id.value] >= strategy.window[1] for o in quotes)
    _check_invariants(engine, instrument, config)
    engine.dispose()


def test_a_burst_of_10000_deltas_in_one_millisecond(market):
    """5,000 add/delete pairs of a new best bid inside one millisecond, each its own batch: with latency
    charging off the strategy decides on every one of them; the order-rate limit holds."""
    bundle, instrument, deltas, trades = market
    batch_times = [d.ts_init for d in deltas if d.flags & F_LAST]
    t0 = next(t for a, t in zip(batch_times, batch_times[1:]) if t - a > 5_000_000 and a > _at(deltas, 30)) - 2_000_000
    levels = BookLevels()
    for d in deltas:
        if d.ts_init > t0:
            break
        levels.apply(d)
    bid, _, ask, _ = levels.best()
    tick = float(instrument.price_increment)
    inside = bid + tick if ask - bid > 1.5 * tick else bid  # improve the bid when the spread allows, else refresh it
    burst = []
    for i in range(5_000):
        ts = t0 + 200 * i
        burst.append(_crossing_delta(instrument, inside, ts, BookAction.UPDATE if inside == bid else BookAction.ADD))
        burst.append(_crossing_delta(instrument, inside, ts + 100, BookAction.DELETE if inside != bid else BookAction.UPDATE))
    assert burst[-1].ts_init - burst[0].ts_init < 1_000_000 and len(burst) == 10_000
    config = _config(bundle, instrument, charge_latency=False)
    strategy = CMMStrategy(config)
    engine = run_engine(strategy, instrument, sorted(deltas + burst, key=lambda d: d.ts_init), trades)
    assert strategy.decisions >= 10_000
    _check_invariants(engine, instrument, config)
    engine.dispose()


class ShiftedView(BookLevels):
    """A corrupted view of the book: inside a window every price looks ``shift`` higher than it is."""

    def __init__(self, window, shift):
        super().__init__()
        self.window, self.shift, self.now = window, shift, 0

    def apply(self, delta):
        self.now = delta.ts_init
        super().apply(delta)

    def best(self):
        best = super().best()
        if best is None or not self.window[0] <= self.now < self.window[1]:
            return best
        bid, bid_size, ask, ask_size = best
        return bid + self.shift, bid_size, ask + self.shift, ask_size


def test_reject_storm_pauses_quoting_and_the_limits_hold(market):
    """For 10 s the strategy sees the book 20 ticks too high: its post-only bids would take the real
    asks and the venue rejects them. After max_rejects_per_s rejects it pauses for reject_backoff_ms."""
    bundle, instrument, deltas, trades = market
    window = (_at(deltas, 30), _at(deltas, 40))
    config = _config(bundle, instrument, charge_latency=False, max_rejects_per_s=5, reject_backoff_ms=1000)
    strategy = CMMStrategy(config)
    strategy.levels = ShiftedView(window, 20 * float(instrument.price_increment))
    engine = run_engine(strategy, instrument, deltas, trades)
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    rejected = sorted(
        [o.ts_last for o in quotes if o.status_string() == "REJECTED"]
        + [e.ts_event for o in quotes for e in o.events if type(e).__name__ == "OrderModifyRejected"]
    )
    assert strategy.rejects == len(rejected) >= 5
    assert all(window[0] <= t < window[1] + SECOND for t in rejected)
    # the backoff: at most max_rejects_per_s rejects per (1 s + backoff), with one round in flight
    assert len(rejected) <= (10 / 1.0 + 1) * config.max_rejects_per_s
    assert max_in_window(rejected) <= 2 * config.max_rejects_per_s
    assert any(o.ts_init > window[1] + SECOND and o.status_string() != "REJECTED" for o in engine.cache.orders() if o.is_post_only)
    _check_invariants(engine, instrument, config)
    engine.dispose()
