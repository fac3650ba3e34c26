"""Replay a ParquetDataCatalog through NautilusTrader's *live* data path, on the wall clock.

Why a live data client and not the BacktestEngine: paper trading must exercise what runs live (the
TradingNode, its queues, the LiveClock and its timers, the sandbox execution client). So the replay
is a ``LiveMarketDataClient`` like Binance's: it publishes ``OrderBookDeltas`` batches (one per
venue message, the last delta flagged ``F_LAST``) and ``TradeTick`` objects into the DataEngine,
paced so that market time passes ``speed`` times faster than wall time.

Timestamps are re-stamped on publication: ``ts_init`` becomes the wall-clock time of publication
(what a live client stamps on receipt) and ``ts_event`` keeps the original venue-to-receipt delay,
divided by ``speed`` like every other market interval. Keeping the original stamps would be wrong in
a live node: the strategy's stale-book guard compares the LiveClock with the last ``ts_init`` and
would fire on every check, and the sandbox, which stamps its order events with the ``ts_init`` of the
last data it saw, would date fills years before the orders they fill.

A replay starting inside the data begins with a synthetic snapshot of the book at that point (CLEAR
plus one ADD per level, ``F_SNAPSHOT``), as a live client sends a REST snapshot before the diffs.
``cuts`` pause the feed for a while (market time stands still, nothing is lost) to exercise the
stale-feed guard. Progress and cuts are published on the message bus topic ``REPLAY_TOPIC``.
"""

from __future__ import annotations

import asyncio
import heapq
from dataclasses import dataclass
from typing import Any

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import LiveDataClientConfig
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import (
    BookOrder,
    OrderBookDelta,
    OrderBookDeltas,
    TradeTick,
)
from nautilus_trader.model.enums import BookAction, BookType, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import ClientId, InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Quantity
from nautilus_trader.persistence.catalog import ParquetDataCatalog

F_LAST = int(RecordFlag.F_LAST)
F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)
REPLAY_TOPIC = "cmm.replay.status"
_STATUS_EVERY_NS = 500_000_000  # progress messages at most twice per wall second
_MAX_SLEEP_S = 0.1  # sleep in short steps so a stop request is honoured quickly


class ReplayDataClientConfig(LiveDataClientConfig, frozen=True, kw_only=True):
    """Configuration of ``ReplayDataClient``.

    Parameters
    ----------
    catalog_path : str
        The ParquetDataCatalog to replay.
    instrument_id : str
        The instrument whose deltas and trades are replayed.
    speed : float, default 1.0
        Market seconds per wall second (10: ten times faster than real time).
    start_ns, end_ns : int, optional
        Absolute replay bounds on the original ``ts_init`` (ns since epoch).
    start_fraction, end_fraction : float, optional
        Bounds as fractions of the data span (the run config's ``time_range``); not with the above.
    cuts : tuple of (at_s, for_s), default ()
        Feed cuts: after ``at_s`` market seconds of replay, publish nothing for ``for_s`` wall seconds.
    """

    catalog_path: str
    instrument_id: str
    speed: float = 1.0
    start_ns: int | None = None
    end_ns: int | None = None
    start_fraction: float | None = None
    end_fraction: float | None = None
    cuts: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class ReplayEvent:
    """One venue message: a complete book batch or a trade, at its original ``ts_init``."""

    ts: int
    batch: tuple[OrderBookDelta, ...] | None = None
    trade: TradeTick | None = None


def resolve_window(first_ns: int, last_ns: int, config: ReplayDataClientConfig) -> tuple[int, int]:
    """Absolute [start, end] on the original ``ts_init`` from absolute bounds or span fractions."""
    span = last_ns - first_ns
    start = config.start_ns if config.start_ns is not None else first_ns + int(span * (config.start_fraction or 0.0))
    end_fraction = 1.0 if config.end_fraction is None else config.end_fraction
    end = config.end_ns if config.end_ns is not None else first_ns + int(span * end_fraction)
    return max(start, first_ns), min(end, last_ns)


def snapshot_batch(book: OrderBook, ts: int, size_precision: int) -> tuple[OrderBookDelta, ...]:
    """The book as one snapshot batch (CLEAR + ADDs, ``F_SNAPSHOT``, the last also ``F_LAST``)."""
    iid = book.instrument_id
    clear = OrderBookDelta.clear(iid, 0, ts, ts)
    batch = [OrderBookDelta(iid, clear.action, clear.order, F_SNAPSHOT, 0, ts, ts)]
    for side, levels in ((OrderSide.BUY, book.bids()), (OrderSide.SELL, book.asks())):
        for level in levels:
            order = BookOrder(side, level.price, Quantity(level.size(), size_precision), 0)
            batch.append(OrderBookDelta(iid, BookAction.ADD, order, F_SNAPSHOT, 0, ts, ts))
    last = batch[-1]
    batch[-1] = OrderBookDelta(iid, last.action, last.order, last.flags | F_SNAPSHOT | F_LAST, 0, ts, ts)
    return tuple(batch)


def _batches(deltas: list[OrderBookDelta]) -> list[tuple[OrderBookDelta, ...]]:
    """Group deltas into venue messages: each batch ends at an ``F_LAST`` delta (or the data's end)."""
    batches, current = [], []
    for delta in deltas:
        current.append(delta)
        if delta.flags & F_LAST:
            batches.append(tuple(current))
            current = []
    if current:
        batches.append(tuple(current))
    return batches


def build_events(
    deltas: list[OrderBookDelta],
    trades: list[TradeTick],
    start_ns: int,
    end_ns: int,
    size_precision: int,
) -> list[ReplayEvent]:
    """Book batches and trades in ``[start_ns, end_ns]``, merged in ``ts_init`` order (book first on
    ties); when the window starts after the data does, the first event is a snapshot at ``start_ns``."""
    batches = _batches(deltas)
    first_inside = next((i for i, batch in enumerate(batches) if batch[-1].ts_init >= start_ns), len(batches))
    kept = [b for b in batches[first_inside:] if b[-1].ts_init <= end_ns]
    if kept and first_inside > 0 and not kept[0][0].flags & F_SNAPSHOT:
        book = OrderBook(kept[0][0].instrument_id, BookType.L2_MBP)
        for batch in batches[:first_inside]:
            for delta in batch:
                book.apply_delta(delta)
        kept.insert(0, snapshot_batch(book, kept[0][0].ts_init, size_precision))
    if not kept:
        return []
    book_events = [ReplayEvent(b[-1].ts_init, batch=b) for b in kept]
    begin = book_events[0].ts  # trades before the first book state would be published into nothing
    trade_events = [ReplayEvent(t.ts_init, trade=t) for t in trades if begin <= t.ts_init <= end_ns]
    return list(heapq.merge(book_events, trade_events, key=lambda e: (e.ts, e.batch is None)))


def restamp_batch(batch: tuple[OrderBookDelta, ...], ts_init: int, speed: float) -> OrderBookDeltas:
    """The batch as published now: ``ts_init`` = now, venue delay scaled by ``1 / speed``."""
    delay = max(batch[-1].ts_init - batch[-1].ts_event, 0)
    ts_event = ts_init - int(delay / speed)
    iid = batch[0].instrument_id
    return OrderBookDeltas(
        iid,
        [OrderBookDelta(iid, d.action, d.order, d.flags, d.sequence, ts_event, ts_init) for d in batch],
    )


def restamp_trade(trade: TradeTick, ts_init: int, speed: float) -> TradeTick:
    delay = max(trade.ts_init - trade.ts_event, 0)
    return TradeTick(
        trade.instrument_id, trade.price, trade.size, trade.aggressor_side, trade.trade_id,
        ts_init - int(delay / speed), ts_init,
    )


def load_replay(config: ReplayDataClientConfig) -> tuple[Instrument, list[ReplayEvent]]:
    """The instrument and the merged events of the configured window (a clear error if empty)."""
    catalog = ParquetDataCatalog(config.catalog_path)
    iid = config.instrument_id
    instruments = catalog.instruments(instrument_ids=[iid])
    if not instruments:
        raise ValueError(f"replay catalog {config.catalog_path} has no instrument {iid}")
    deltas = catalog.order_book_deltas(instrument_ids=[iid])
    if not deltas:
        raise ValueError(f"replay catalog {config.catalog_path} has no order book deltas for {iid}")
    trades = catalog.trade_ticks(instrument_ids=[iid])
    start, end = resolve_window(deltas[0].ts_init, deltas[-1].ts_init, config)
    events = build_events(deltas, trades, start, end, instruments[0].size_precision)
    if not events:
        raise ValueError(f"replay window [{start}, {end}] of {config.catalog_path} holds no complete book update for {iid}")
    return instruments[0], events


class ReplayDataClient(LiveMarketDataClient):
    """Publishes a catalog's book batches and trades for one instrument on wall-clock time.

    The replay starts when the first order book subscription arrives (as a live feed starts with its
    subscription) and ends when the data does; it then publishes ``state: finished`` on
    ``REPLAY_TOPIC`` and leaves stopping to the node."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_id: ClientId,
        config: ReplayDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> None:
        if not config.speed > 0:
            raise ValueError(f"replay speed must be positive, got {config.speed}")
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        super().__init__(
            loop=loop,
            client_id=client_id,
            venue=self.instrument_id.venue,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=InstrumentProvider(),
            config=config,
        )
        self._config = config
        self.speed = config.speed
        self._events: list[ReplayEvent] = []
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.published_batches = 0
        self.published_trades = 0
        self.market_ns = 0  # market time replayed so far (since the first event)
        self.finished = False
        self.cuts_done: list[dict[str, Any]] = []

    # -- connection -------------------------------------------------------------------------

    async def _connect(self) -> None:
        instrument, self._events = load_replay(self._config)
        self._handle_data(instrument)
        span_s = (self._events[-1].ts - self._events[0].ts) / 1e9
        self._log.info(f"Replay of {len(self._events):,} events ({span_s:.1f} market s) at {self._config.speed:g}x loaded")

    async def _disconnect(self) -> None:
        self._stopping = True
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=2.0)

    # -- subscriptions: the replay holds one instrument's book and trades ------------------

    async def _subscribe_order_book_deltas(self, command) -> None:
        if command.instrument_id != self.instrument_id:
            self._log.warning(f"Replay holds {self.instrument_id} only, not {command.instrument_id}")
            return
        if self._task is None:
            # A plain task, not ``create_task``: stopping ends it cleanly instead of cancelling it.
            self._task = self._loop.create_task(self._run(), name="cmm-replay")
            self._task.add_done_callback(self._on_replay_done)

    async def _subscribe_trade_ticks(self, command) -> None:
        pass  # trades are published whenever they are subscribed (checked per trade)

    async def _subscribe_instrument(self, command) -> None:
        pass  # the instrument was published on connect

    async def _subscribe_instruments(self, command) -> None:
        pass

    async def _subscribe_quote_ticks(self, command) -> None:
        self._log.warning("Replay publishes no quote ticks (book deltas and trades only)")

    async def _subscribe_order_book_snapshots(self, command) -> None:
        self._log.warning("Replay publishes no book snapshots; subscribe to order book deltas")

    async def _subscribe(self, command) -> None:
        self._log.warning(f"Replay publishes no {command.data_type}")

    async def _unsubscribe_order_book_deltas(self, command) -> None:
        pass

    async def _unsubscribe_trade_ticks(self, command) -> None:
        pass

    async def _unsubscribe_instrument(self, command) -> None:
        pass

    async def _unsubscribe_instruments(self, command) -> None:
        pass

    # -- the replay loop ----------------------------------------------------------------------

    def _on_replay_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.exception("Replay failed", task.exception())

    def _status(self, state: str, market_ns: int, lag_ns: int, **extra: Any) -> None:
        message = {
            "state": state,
            "market_s": market_ns / 1e9,
            "lag_s": max(lag_ns, 0) / 1e9,
            "batches": self.published_batches,
            "trades": self.published_trades,
            "speed": self._config.speed,
            **extra,
        }
        self._msgbus.publish(REPLAY_TOPIC, message)

    async def _sleep(self, seconds: float) -> None:
        while seconds > 0 and not self._stopping:
            step = min(seconds, _MAX_SLEEP_S)
            await asyncio.sleep(step)
            seconds -= step

    async def _cut(self, at_s: float, for_s: float, market_ns: int) -> None:
        start = self._clock.timestamp_ns()
        self._log.warning(f"Replay feed cut at {at_s:g} market s for {for_s:g} wall s")
        self._status("cut", market_ns, 0, cut_for_s=for_s)
        await self._sleep(for_s)
        end = self._clock.timestamp_ns()
        self.cuts_done.append({"at_market_s": at_s, "for_s": for_s, "start_ns": start, "end_ns": end})
        self._log.info("Replay feed resumed")
        self._status("running", market_ns, 0, cuts=list(self.cuts_done))

    async def _run(self) -> None:
        speed = self._config.speed
        clock = self._clock
        events = self._events
        cuts = sorted(self._config.cuts)
        first = events[0].ts
        anchor_wall, anchor_market = clock.timestamp_ns(), first
        last_status = 0
        lag = 0
        for event in events:
            if self._stopping:
                return
            market_ns = event.ts - first
            while cuts and market_ns >= cuts[0][0] * 1e9:
                at_s, for_s = cuts.pop(0)
                await self._cut(at_s, for_s, market_ns)
                anchor_wall, anchor_market = clock.timestamp_ns(), event.ts
            target = anchor_wall + int((event.ts - anchor_market) / speed)
            now = clock.timestamp_ns()
            if target > now:
                await self._sleep((target - now) / 1e9)
                if self._stopping:
                    return
            else:
                await asyncio.sleep(0)  # behind schedule: still let the engines drain their queues
            now = clock.timestamp_ns()
            lag = now - target
            self.market_ns = market_ns
            if event.batch is not None:
                self._handle_data(restamp_batch(event.batch, now, speed))
                self.published_batches += 1
            elif event.trade is not None and self.instrument_id in self.subscribed_trade_ticks():
                self._handle_data(restamp_trade(event.trade, now, speed))
                self.published_trades += 1
            if now - last_status >= _STATUS_EVERY_NS:
                last_status = now
                self._status("running", market_ns, lag)
        self.finished = True
        self._log.info(f"Replay finished: {self.published_batches:,} book batches, {self.published_trades:,} trades")
        self._status("finished", events[-1].ts - first, lag, cuts=list(self.cuts_done))


class ReplayDataClientFactory(LiveDataClientFactory):
    """Builds ``ReplayDataClient`` for a TradingNode (``node.add_data_client_factory("REPLAY", ...)``)."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ReplayDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> ReplayDataClient:
        return ReplayDataClient(loop=loop, client_id=ClientId(name), config=config, msgbus=msgbus, cache=cache, clock=clock)
