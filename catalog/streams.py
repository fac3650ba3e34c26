"""Delta plumbing every reader shares: level views into delta batches, per-file streams, merge.

``LevelBook`` turns successive N-level views of a book (Tardis book snapshots, Databento MBP-1 and
MBP-10, LOBSTER orderbook rows) into delta batches: the first view is a snapshot batch (CLEAR +
ADDs, ``F_SNAPSHOT``), each later view a batch of the level changes (DELETE / UPDATE / ADD), so the
book is exact at every view while far fewer deltas are written. ``validate_and_merge`` validates
each file's stream (``catalog.validation``) and merges all streams by ``ts_init``.

Must not: parse any format or write catalogs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from nautilus_trader.model.data import BookOrder, OrderBookDelta, TradeTick
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from catalog.errors import IngestError
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy, validate_deltas, validate_trades



def reflag(delta: OrderBookDelta, flags: int) -> OrderBookDelta:
    """A copy of ``delta`` with other flags (Cython deltas are immutable)."""
    return OrderBookDelta(delta.instrument_id, delta.action, delta.order, flags, delta.sequence, delta.ts_event, delta.ts_init)


def clear_delta(instrument_id: InstrumentId, sequence: int, ts_event: int, ts_init: int) -> OrderBookDelta:
    """The CLEAR that opens a snapshot, flagged ``F_SNAPSHOT`` like the ADDs that follow it."""
    return OrderBookDelta(instrument_id, BookAction.CLEAR, None, F_SNAPSHOT, sequence, ts_event, ts_init)


class LevelBook:
    """Turns successive N-level views of one book into delta batches.

    Levels are ``{price_units: size_units}`` with integer units at the instrument's precisions, so
    that comparing two views is exact and cheap. The first view (or one after ``reset``) is a
    snapshot batch; later views are diffs: DELETEs first (so the book never crosses in the middle
    of a batch), then UPDATEs, then ADDs. A view identical to the last one yields no batch.
    """

    def __init__(self, instrument_id: InstrumentId, price_precision: int, size_precision: int) -> None:
        self.instrument_id = instrument_id
        self.price_precision = price_precision
        self.size_precision = size_precision
        self._price_scale = 10**price_precision
        self._size_scale = 10**size_precision
        self._bids: dict[int, int] | None = None
        self._asks: dict[int, int] = {}

    def reset(self) -> None:
        """Forget the last view: the next one is published as a snapshot."""
        self._bids = None
        self._asks = {}

    def _order(self, side: OrderSide, price: int, size: int) -> BookOrder:
        return BookOrder(
            side,
            Price(price / self._price_scale, self.price_precision),
            Quantity(size / self._size_scale, self.size_precision),
            0,
        )

    def update(self, bids: dict[int, int], asks: dict[int, int], ts_event: int, ts_init: int, sequence: int = 0) -> list[OrderBookDelta]:
        """Return the batch that moves the book from the last view to this one (``F_LAST`` on its tail)."""
        iid = self.instrument_id
        out: list[OrderBookDelta] = []
        if self._bids is None:
            out.append(clear_delta(iid, sequence, ts_event, ts_init))
            for side, levels in ((OrderSide.BUY, bids), (OrderSide.SELL, asks)):
                for price in sorted(levels, reverse=side == OrderSide.BUY):
                    order = self._order(side, price, levels[price])
                    out.append(OrderBookDelta(iid, BookAction.ADD, order, F_SNAPSHOT, sequence, ts_event, ts_init))
        else:
            deletes: list[OrderBookDelta] = []
            updates: list[OrderBookDelta] = []
            adds: list[OrderBookDelta] = []
            for side, old, new in ((OrderSide.BUY, self._bids, bids), (OrderSide.SELL, self._asks, asks)):
                for price in sorted(old.keys() - new.keys()):
                    deletes.append(OrderBookDelta(iid, BookAction.DELETE, self._order(side, price, 0), 0, sequence, ts_event, ts_init))
                for price in sorted(new):
                    size = new[price]
                    if price not in old:
                        adds.append(OrderBookDelta(iid, BookAction.ADD, self._order(side, price, size), 0, sequence, ts_event, ts_init))
                    elif old[price] != size:
                        updates.append(OrderBookDelta(iid, BookAction.UPDATE, self._order(side, price, size), 0, sequence, ts_event, ts_init))
            out = deletes + updates + adds
        self._bids, self._asks = dict(bids), dict(asks)
        if out:
            out[-1] = reflag(out[-1], out[-1].flags | F_LAST)
        return out


@dataclass
class DeltaStream:
    """The deltas of one instrument read from one file, in file order, and how to validate them."""

    file: str
    instrument_id: InstrumentId
    deltas: list[OrderBookDelta]
    book_type: BookType = BookType.L2_MBP


@dataclass
class TradeStream:
    """The trades of one file (any instruments), in file order."""

    file: str
    trades: list[TradeTick]


@dataclass
class Merged:
    """Validated, merged output of all files of one ingest."""

    deltas: list[OrderBookDelta]
    trades: list[TradeTick]
    crossed: int = 0
    duplicate_trades: int = 0


def close_last_batch(deltas: list[OrderBookDelta]) -> list[OrderBookDelta]:
    """Make sure the stream ends a batch: a loader may leave ``F_LAST`` off the last record."""
    if deltas and not deltas[-1].flags & F_LAST:
        deltas = deltas[:-1] + [reflag(deltas[-1], deltas[-1].flags | F_LAST)]
    return deltas


def split_batches(deltas: list[OrderBookDelta]) -> list[list[OrderBookDelta]]:
    """Cut a stream at each ``F_LAST`` (a trailing open batch is kept as a batch)."""
    batches: list[list[OrderBookDelta]] = []
    batch: list[OrderBookDelta] = []
    for delta in deltas:
        batch.append(delta)
        if delta.flags & F_LAST:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def _refuse_interleaved_books(streams: list[DeltaStream]) -> None:
    """Two files holding one instrument's book over the same time cannot be merged into one book."""
    spans: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for stream in streams:
        if stream.deltas:
            spans[stream.instrument_id.value].append((stream.deltas[0].ts_init, stream.deltas[-1].ts_init, stream.file))
    for iid, items in spans.items():
        items.sort()
        for (start_a, end_a, file_a), (start_b, end_b, file_b) in zip(items, items[1:]):
            if start_b < end_a:
                raise IngestError(
                    file_b,
                    0,
                    f"its order-book data for {iid} ({start_b}..{end_b} ns) overlaps {file_a} ({start_a}..{end_a} ns); "
                    "two books of one instrument cannot be interleaved: ingest these files separately",
                )


def validate_and_merge(delta_streams: list[DeltaStream], trade_streams: list[TradeStream], policy: ValidationPolicy) -> Merged:
    """Validate each file's stream on its own book, then merge all files by ``ts_init`` (stable).

    Deltas are merged batch by batch so a batch is never split; equal timestamps keep the order in
    which the files were given. Trades that an earlier file already holds (same instrument, id,
    time, price and size; e.g. Databento MBP-1 trades next to a trades file) are dropped once each.
    """
    crossed = 0
    batches: list[list[OrderBookDelta]] = []
    validated: list[DeltaStream] = []
    for stream in delta_streams:
        deltas, n_crossed = validate_deltas(close_last_batch(stream.deltas), policy, stream.file, stream.book_type)
        crossed += n_crossed
        validated.append(DeltaStream(stream.file, stream.instrument_id, deltas, stream.book_type))
    _refuse_interleaved_books(validated)
    for stream in validated:
        batches.extend(split_batches(stream.deltas))
    batches.sort(key=lambda b: b[0].ts_init)
    deltas = [d for batch in batches for d in batch]

    seen: Counter[tuple] = Counter()
    trades: list[TradeTick] = []
    duplicates = 0
    for stream in trade_streams:
        mine: Counter[tuple] = Counter()
        for trade in validate_trades(stream.trades, policy, stream.file):
            key = (trade.instrument_id.value, trade.trade_id.value, trade.ts_event, str(trade.price), str(trade.size))
            if seen[key] > 0:
                seen[key] -= 1
                duplicates += 1
                continue
            mine[key] += 1
            trades.append(trade)
        seen.update(mine)
    trades.sort(key=lambda t: t.ts_init)
    return Merged(deltas, trades, crossed, duplicates)


def data_precisions(deltas: list[OrderBookDelta], trades: list[TradeTick]) -> dict[str, tuple[int, int]]:
    """Largest price and size precision seen per instrument (CLEARs carry none)."""
    out: dict[str, tuple[int, int]] = {}
    for delta in deltas:
        if delta.action == BookAction.CLEAR:
            continue
        pp, sp = out.get(delta.instrument_id.value, (0, 0))
        out[delta.instrument_id.value] = (max(pp, delta.order.price.precision), max(sp, delta.order.size.precision))
    for trade in trades:
        pp, sp = out.get(trade.instrument_id.value, (0, 0))
        out[trade.instrument_id.value] = (max(pp, trade.price.precision), max(sp, trade.size.precision))
    return out


def first_ts(deltas: list[OrderBookDelta], trades: list[TradeTick]) -> dict[str, int]:
    """Earliest ``ts_init`` per instrument, used as the instrument definition's timestamp."""
    out: dict[str, int] = {}
    for item in [*deltas, *trades]:
        key = item.instrument_id.value
        out[key] = min(out.get(key, item.ts_init), item.ts_init)
    return out
