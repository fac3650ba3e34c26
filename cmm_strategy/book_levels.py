"""The top levels of an L2 book, kept incrementally from the deltas themselves.

NautilusTrader 1.221's ``OrderBook.bids()`` materializes every level (about 7 ms on the real
BTCUSDT-PERP book of ~7,000 levels), far too slow to read on every batch. ``BookLevels`` applies
the same deltas to two sorted maps (integer raw prices, so no float keys) and reads the top N in
O(N). Training (``training.replay``) and the strategy both feed it the deltas they see, so the
levels behind ``x_t`` come from the same code on both sides.

Owns the level bookkeeping only; must not compute features or talk to the engine.
"""

from __future__ import annotations

import numpy as np
from nautilus_trader.model.data import OrderBookDelta
from nautilus_trader.model.enums import BookAction, OrderSide
from nautilus_trader.model.objects import FIXED_SCALAR
from sortedcontainers import SortedDict

_CLEAR = BookAction.CLEAR
_DELETE = BookAction.DELETE
_BUY = OrderSide.BUY


class BookLevels:
    """Bids keyed by negated raw price (best first), asks by raw price (best first)."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()

    def apply(self, delta: OrderBookDelta) -> None:
        action = delta.action
        if action == _CLEAR:
            self.bids.clear()
            self.asks.clear()
            return
        order = delta.order
        raw = order.price.raw
        if order.side == _BUY:
            book, key = self.bids, -raw
        else:
            book, key = self.asks, raw
        if action == _DELETE:
            book.pop(key, None)
        else:
            book[key] = order.size.as_double()

    def best(self) -> tuple[float, float, float, float] | None:
        """(bid, bid size, ask, ask size), or None when a side is empty."""
        if not self.bids or not self.asks:
            return None
        bid_key, bid_size = self.bids.peekitem(0)
        ask_key, ask_size = self.asks.peekitem(0)
        return -bid_key / FIXED_SCALAR, bid_size, ask_key / FIXED_SCALAR, ask_size

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Best-first (price, size) arrays of the top ``depth`` levels per side."""
        return tuple(np.array(v, dtype=np.float64) for v in self.top_lists(depth))  # type: ignore[return-value]

    def top_lists(self, depth: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """``top`` as plain lists (bid prices, bid sizes, ask prices, ask sizes): what the strategy's
        hot path feeds ``FeatureState.set_levels``, without building four small numpy arrays."""
        bids, asks = self.bids, self.asks
        bid_keys = bids.keys()[:depth]
        ask_keys = asks.keys()[:depth]
        return (
            [-k / FIXED_SCALAR for k in bid_keys],
            [bids[k] for k in bid_keys],
            [k / FIXED_SCALAR for k in ask_keys],
            [asks[k] for k in ask_keys],
        )
