"""``--record DIR``: keep what the paper session received as backtest data.

An Actor subscribed to the same book deltas and trades as the strategy buffers them and writes them
into a ParquetDataCatalog in chunks (and everything left on stop), so a session becomes a catalog
that ``cmm backtest``/``--replay`` read like an ingested one. Chunks go through
``catalog.staging.staged_catalog``: each is all-or-nothing and refused if it would overlap data
already there, so a crash loses at most the unwritten buffer and never leaves a torn file.

Chunk boundaries keep the catalog valid: deltas are cut after a complete batch (``F_LAST``) and
only items strictly older than the newest buffered ``ts_init`` are written, so consecutive chunk
files never share a timestamp (the catalog requires disjoint file intervals).

Why not NautilusTrader's ``StreamingConfig``: it streams every message type to feather files of one
node instance and needs a conversion step; this writes the two types a backtest needs, directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import (
    BookOrder,
    OrderBookDelta,
    OrderBookDeltas,
    TradeTick,
)
from nautilus_trader.model.enums import BookAction, BookType, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from catalog.staging import staged_catalog

F_LAST = int(RecordFlag.F_LAST)


class RecorderConfig(ActorConfig, frozen=True, kw_only=True):
    """``catalog_path``: the catalog to write into (created if needed); ``flush_rows``: deltas +
    trades buffered before a chunk is written."""

    instrument_id: str
    catalog_path: str
    flush_rows: int = 200_000


def conform_delta(delta: OrderBookDelta, price_precision: int, size_precision: int) -> OrderBookDelta:
    """The delta with the instrument's precisions. Binance's live client parses prices from the
    venue's strings (``"61800.10"``: 2 decimals for a 0.1 tick); a catalog for backtests must match
    the instrument definition, as the ingested catalogs do."""
    order = delta.order
    if delta.action == BookAction.CLEAR or (order.price.precision == price_precision and order.size.precision == size_precision):
        return delta
    fixed = BookOrder(order.side, Price(order.price.as_double(), price_precision), Quantity(order.size.as_double(), size_precision), order.order_id)
    return OrderBookDelta(delta.instrument_id, delta.action, fixed, delta.flags, delta.sequence, delta.ts_event, delta.ts_init)


def conform_trade(tick: TradeTick, price_precision: int, size_precision: int) -> TradeTick:
    if tick.price.precision == price_precision and tick.size.precision == size_precision:
        return tick
    return TradeTick(
        tick.instrument_id, Price(tick.price.as_double(), price_precision), Quantity(tick.size.as_double(), size_precision),
        tick.aggressor_side, tick.trade_id, tick.ts_event, tick.ts_init,
    )


def split_flushable(deltas: list[Any], trades: list[Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(deltas to write, deltas to keep, trades to write, trades to keep) for a mid-session chunk.

    Written: complete batches and trades strictly older than the newest buffered ``ts_init`` of their
    type; kept: the rest, so a later chunk can never start at a timestamp an earlier one ended on."""
    cut = 0
    if deltas:
        newest = deltas[-1].ts_init
        for i, delta in enumerate(deltas):
            if delta.ts_init >= newest:
                break
            if delta.flags & F_LAST:
                cut = i + 1
    trade_cut = 0
    if trades:
        newest_trade = trades[-1].ts_init
        trade_cut = next((i for i, t in enumerate(trades) if t.ts_init >= newest_trade), len(trades))
    return deltas[:cut], deltas[cut:], trades[:trade_cut], trades[trade_cut:]


class RecorderActor(Actor):
    """Buffers the instrument's deltas and trades; writes chunks to ``catalog_path``."""

    def __init__(self, config: RecorderConfig) -> None:
        super().__init__(config)
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.path = Path(config.catalog_path)
        self._deltas: list[Any] = []
        self._trades: list[TradeTick] = []
        self._instrument_written = False
        self._precisions: tuple[int, int] | None = None
        self.written_deltas = 0
        self.written_trades = 0

    def on_start(self) -> None:
        instrument = self.cache.instrument(self.instrument_id)
        self._precisions = (instrument.price_precision, instrument.size_precision) if instrument else None
        self.path.mkdir(parents=True, exist_ok=True)
        self.subscribe_order_book_deltas(self.instrument_id, BookType.L2_MBP)
        self.subscribe_trade_ticks(self.instrument_id)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        if self._precisions is None:
            self._deltas.extend(deltas.deltas)
        else:
            self._deltas.extend(conform_delta(d, *self._precisions) for d in deltas.deltas)
        self._maybe_flush()

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._trades.append(tick if self._precisions is None else conform_trade(tick, *self._precisions))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._deltas) + len(self._trades) >= self.config.flush_rows:
            deltas, self._deltas, trades, self._trades = split_flushable(self._deltas, self._trades)
            self._write(deltas, trades)

    def _write(self, deltas: list[Any], trades: list[TradeTick]) -> None:
        if not deltas and not trades:
            return
        with staged_catalog(self.path) as staging:
            if not self._instrument_written:
                instrument = self.cache.instrument(self.instrument_id)
                if instrument is not None:
                    staging.write_data([instrument])
            if deltas:
                staging.write_data(deltas)
            if trades:
                staging.write_data(trades)
        self._instrument_written = True
        self.written_deltas += len(deltas)
        self.written_trades += len(trades)
        self.log.info(f"Recorded {len(deltas):,} deltas and {len(trades):,} trades into {self.path}")

    def on_stop(self) -> None:
        deltas, self._deltas, trades, self._trades = self._deltas, [], self._trades, []
        self._write(deltas, trades)
