"""BookLevels (the incremental top-N view used by training and the strategy) equals Nautilus' book."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.realdata import capture_paths, missing_reason
from catalog.validation import F_LAST
from cmm_strategy.book_levels import BookLevels

IID = InstrumentId.from_str("TEST-PERP.SIM")


def _nautilus_top(book: OrderBook, depth: int):
    bids, asks = book.bids()[:depth], book.asks()[:depth]
    return (
        np.array([lv.price.as_double() for lv in bids]),
        np.array([lv.size() for lv in bids]),
        np.array([lv.price.as_double() for lv in asks]),
        np.array([lv.size() for lv in asks]),
    )


def _assert_same(levels: BookLevels, book: OrderBook, depth: int = 5) -> None:
    ours, theirs = levels.top(depth), _nautilus_top(book, depth)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


_events = st.lists(
    st.tuples(st.sampled_from(["add", "delete", "clear"]), st.booleans(), st.integers(1, 60), st.integers(1, 500)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_levels_equal_nautilus_book_after_any_delta_sequence(events):
    levels, book = BookLevels(), OrderBook(IID, BookType.L2_MBP)
    for kind, is_bid, price_ticks, size_lots in events:
        side = OrderSide.BUY if is_bid else OrderSide.SELL
        price = Price(price_ticks / 10 + (0 if is_bid else 100), 1)
        if kind == "clear":
            delta = OrderBookDelta.clear(IID, 0, 0, 0)
        else:
            action = BookAction.DELETE if kind == "delete" else BookAction.UPDATE
            size = Quantity(0 if kind == "delete" else size_lots / 1000, 3)
            delta = OrderBookDelta(IID, action, BookOrder(side, price, size, 0), F_LAST, 0, 0, 0)
        levels.apply(delta)
        book.apply_delta(delta)
        _assert_same(levels, book)


@pytest.mark.real_data
def test_levels_equal_nautilus_book_on_the_real_btcusdt_capture():
    if missing_reason():
        pytest.skip(missing_reason())
    deltas = read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions()).deltas
    levels, book = BookLevels(), OrderBook(deltas[0].instrument_id, BookType.L2_MBP)
    checked = batches = 0
    for delta in deltas:
        levels.apply(delta)
        book.apply_delta(delta)
        batches += bool(delta.flags & F_LAST)
        if delta.flags & F_LAST and batches % 25 == 0:  # a few hundred batch ends across the capture
            _assert_same(levels, book)
            best = levels.best()
            assert best is not None and best[0] == book.best_bid_price().as_double() and best[3] == book.best_ask_size().as_double()
            checked += 1
    assert checked > 50
