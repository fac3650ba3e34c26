"""Run one of our strategies through NautilusTrader's BacktestEngine on in-memory data (tests only)."""

from __future__ import annotations

from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.objects import Quantity

from backtests.l2_engine import build_l2_engine
from backtests.runner import quote_segments
from catalog.validation import F_LAST, F_SNAPSHOT


def run_engine(strategy, instrument, deltas, trades, **venue):
    """A margin venue on L2 with the instrument, the data and one strategy; returns the engine (run)."""
    engine = build_l2_engine(strategy, instrument, deltas, trades, **venue)
    engine.run()
    return engine


def snapshot_at(deltas, ts):
    """CLEAR + ADDs of the true book just before ``ts``, flagged as one snapshot batch (what a live
    client sends after a gap)."""
    book = OrderBook(deltas[0].instrument_id, BookType.L2_MBP)
    for delta in deltas:
        if delta.ts_init >= ts:
            break
        book.apply_delta(delta)
    iid = deltas[0].instrument_id
    precision = deltas[1].order.size.precision
    batch = [OrderBookDelta.clear(iid, 0, ts, ts)]
    for side, levels in ((OrderSide.BUY, book.bids()), (OrderSide.SELL, book.asks())):
        batch += [
            OrderBookDelta(iid, BookAction.ADD, BookOrder(side, lv.price, Quantity(lv.size(), precision), 0), F_SNAPSHOT, 0, ts, ts)
            for lv in levels
        ]
    last = batch[-1]
    batch[-1] = OrderBookDelta(iid, last.action, last.order, F_SNAPSHOT | F_LAST, 0, ts, ts)
    return batch


def position_path(engine) -> list[float]:
    """Net position after each fill, in fill order (the account's own fills)."""
    fills = engine.trader.generate_order_fills_report()
    if len(fills) == 0:
        return []
    fills = fills.sort_values("ts_last")
    path, q = [], 0.0
    for side, qty in zip(fills["side"], fills["filled_qty"]):
        q += float(qty) if side == "BUY" else -float(qty)
        path.append(q)
    return path


def assert_own_quotes_never_cross(engine) -> int:
    """No bid of ours ever rests at or above an ask of ours; returns how many segments were checked."""
    segments = quote_segments(engine)
    bids = [s for s in segments if s[0] == "BUY"]
    asks = sorted((s for s in segments if s[0] == "SELL"), key=lambda s: s[2])
    for _, bid_px, b0, b1 in bids:
        for _, ask_px, a0, a1 in asks:
            if a0 >= b1:
                break
            if a1 > b0 and b1 > a0:
                assert bid_px < ask_px, f"own bid {bid_px} >= own ask {ask_px} while both rested"
    return len(segments)


def order_action_times(engine) -> list[int]:
    """Times of every submit and modify request of post-only orders (what the rate limit counts)."""
    times = []
    for order in engine.cache.orders():
        if order.is_post_only:
            times += [e.ts_event for e in order.events if type(e).__name__ in ("OrderSubmitted", "OrderPendingUpdate")]
    return sorted(times)


def max_in_window(times: list[int], window_ns: int = 1_000_000_000) -> int:
    """Most events within any half-open window of ``window_ns``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
