"""The top levels of an L2 book, kept incrementally from the deltas themselves.

NautilusTrader 1.221's ``OrderBook.bids()`` materializes every level (about 7 ms on the real
BTCUSDT-PERP book of ~7,000 levels), far too slow to read on every batch. ``BookLevels`` applies
the same deltas to two maps of sizes with sorted keys (integer raw prices, so no float keys) and
reads the top N in O(N). Training (``training.replay``) and the strategy both feed it the deltas they see, so the
levels behind ``x_t`` come from the same code on both sides.

Owns the level bookkeeping only; must not compute features or talk to the engine.
"""

from __future__ import annotations

import numpy as np
from nautilus_trader.model.data import OrderBookDelta
from nautilus_trader.model.enums import BookAction, OrderSide
from nautilus_trader.model.objects import FIXED_SCALAR
from sortedcontainers import SortedList

_CLEAR = BookAction.CLEAR
_DELETE = BookAction.DELETE
_BUY = OrderSide.BUY


class BookLevels:
    """Sizes in plain dicts keyed by raw price, plus the keys kept sorted (bids negated, so both sides
    are best first). Most deltas update an existing level: a dict store, no sorted-list work."""

    __slots__ = ("bids", "asks", "_bid_keys", "_ask_keys")

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self._bid_keys: SortedList = SortedList()  # negated raw prices
        self._ask_keys: SortedList = SortedList()

    def apply(self, delta: OrderBookDelta) -> None:
        action = delta.action
        if action == _CLEAR:
            self.bids.clear()
            self.asks.clear()
            self._bid_keys.clear()
            self._ask_keys.clear()
            return
        order = delta.order
        raw = order.price.raw
        if order.side == _BUY:
            book, keys, key = self.bids, self._bid_keys, -raw
        else:
            book, keys, key = self.asks, self._ask_keys, raw
        if action == _DELETE:
            if book.pop(key, None) is not None:
                keys.remove(key)
            return
        if key not in book:
            keys.add(key)
        book[key] = order.size.as_double()

    def best(self) -> tuple[float, float, float, float] | None:
        """(bid, bid size, ask, ask size), or None when a side is empty."""
        if not self.bids or not self.asks:
            return None
        bid_key = self._bid_keys[0]
        ask_key = self._ask_keys[0]
        return -bid_key / FIXED_SCALAR, self.bids[bid_key], ask_key / FIXED_SCALAR, self.asks[ask_key]

    def top(self, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Best-first (price, size) arrays of the top ``depth`` levels per side."""
        return tuple(np.array(v, dtype=np.float64) for v in self.top_lists(depth))  # type: ignore[return-value]

    def top_lists(self, depth: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """``top`` as plain lists (bid prices, bid sizes, ask prices, ask sizes): what the strategy's
        hot path feeds ``FeatureState.set_levels``, without building four small numpy arrays."""
        bids, asks = self.bids, self.asks
        bid_keys = self._bid_keys[:depth]
        ask_keys = self._ask_keys[:depth]
        return (
            [-k / FIXED_SCALAR for k in bid_keys],
            [bids[k] for k in bid_keys],
            [k / FIXED_SCALAR for k in ask_keys],
            [asks[k] for k in ask_keys],
        )
