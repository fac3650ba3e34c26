"""NautilusTrader glue for the queue-position fill rules in ``backtests.fill.queue``.

Two hooks cooperate, and why both are needed in 1.221:

* ``QueuePositionModule`` (a venue ``SimulationModule``) sees every trade in ``pre_process`` before the
  matching engine and runs after every data item in ``process``. It keeps one ``QueueBook`` per
  instrument in step with the venue's open limit orders and the displayed L2 book, and applies each
  order's share of a trade through the matching engine's public ``apply_fills`` (as MAKER, at the
  order's price). It must do so itself: in 1.221 with an L2_MBP book and ``trade_execution=True``, a
  seller print at a resting bid never fills it (checked in ``tests/test_fill_engine.py``), so the
  engine's own trade matching cannot be the trigger, and ``fill_limit_order`` cannot be used from
  Python because it needs ``order.liquidity_side`` (read-only there) already set to MAKER.
* ``QueuePositionFillModel`` (a ``FillModel``) answers the matching engine whenever *it* matches a
  resting order (``get_orderbook_for_fill_simulation``): if the displayed opposite side has reached
  the order it lets the engine fill from that displayed liquidity as usual; otherwise it returns an
  empty book, so no queue-blind fill can happen. Marketable orders are left to the engine.

The module finds the fill model through ``exchange.fill_model``; the queue parameters live in the
fill model's config only, so the two can never disagree.

Cost: real books are deep and busy (~1,200 deltas/s on BTCUSDT-PERP), so the module never reads the
venue book from Python per data item (``OrderBook.bids()`` builds every level). It mirrors the L2
sizes from the deltas it already sees in ``pre_process`` (O(1) each), re-reads only the levels a
delta, trade or order change touched, and re-syncs orders only after an order event on the message
bus. The outcome equals re-syncing everything after every data item (``verify`` checks it).
"""

from __future__ import annotations

import math

from nautilus_trader.backtest.config import SimulationModuleConfig
from nautilus_trader.backtest.models import FillModel
from nautilus_trader.backtest.modules import SimulationModule
from nautilus_trader.config import FillModelConfig
from nautilus_trader.core.data import Data
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import (
    Bar,
    OrderBookDelta,
    OrderBookDeltas,
    OrderBookDepth10,
    TradeTick,
)
from nautilus_trader.model.enums import (
    AggressorSide,
    BookAction,
    BookType,
    LiquiditySide,
    OrderSide,
    OrderType,
)
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.model.orders import Order

from backtests.fill.queue import BUY, SELL, QueueBook, make_share


class QueueFillModelConfig(FillModelConfig, frozen=True):
    """Queue model: ``risk_averse``, ``power`` (with exponent ``n``) or ``log``."""

    model: str = "risk_averse"
    n: float = 2.0


class QueueModuleConfig(SimulationModuleConfig, frozen=True):
    """No parameters: the module reads them from the venue's ``QueuePositionFillModel``."""


def _side(order_side: OrderSide) -> int:
    return BUY if order_side == OrderSide.BUY else SELL


def _level_size(book: OrderBook, side: int, price_raw: int) -> float:
    levels = book.bids() if side == BUY else book.asks()
    for level in levels:
        raw = level.price.raw
        if raw == price_raw:
            return float(level.size())
        if (side == BUY and raw < price_raw) or (side == SELL and raw > price_raw):
            break  # levels are sorted best first: the price is not there
    return 0.0


class QueueState:
    """The per-instrument queue books of one venue, shared by the fill model and the module."""

    def __init__(self, model: str, n: float) -> None:
        self._share = make_share(model, n)
        self.books: dict[InstrumentId, QueueBook] = {}

    def book(self, instrument_id: InstrumentId) -> QueueBook:
        if instrument_id not in self.books:
            self.books[instrument_id] = QueueBook(self._share)
        return self.books[instrument_id]


class QueuePositionFillModel(FillModel):
    """Fills passive limit orders only by the part of the flow that gets past their queue position."""

    def __init__(self, config: QueueFillModelConfig | None = None) -> None:
        config = config or QueueFillModelConfig()
        if config.prob_fill_on_limit != 1.0:
            raise ValueError(
                "QueuePositionFillModel decides limit fills itself: keep prob_fill_on_limit=1"
            )
        super().__init__(config=config)
        self.queue_model = config.model
        self.queue_n = config.n
        self.state = QueueState(config.model, config.n)
        self.exchange = None  # set by QueuePositionModule.register_venue

    def get_orderbook_for_fill_simulation(
        self,
        instrument: Instrument,
        order: Order,
        best_bid: Price,
        best_ask: Price,
    ) -> OrderBook | None:
        if (
            order.order_type != OrderType.LIMIT
            or order.liquidity_side != LiquiditySide.MAKER
        ):
            return None  # marketable orders walk the real book as usual
        if self._crossed(instrument.id, order):
            return None  # displayed liquidity reached the order: fill from it as the engine would
        return OrderBook(
            instrument.id, BookType.L2_MBP
        )  # queue fills come from the module only

    def _crossed(self, instrument_id: InstrumentId, order: Order) -> bool:
        """Whether the *displayed* opposite side reached the order (trades move only the core prices)."""
        if self.exchange is None:
            return False
        book = self.exchange.get_book(instrument_id)
        if order.side == OrderSide.BUY:
            ask = book.best_ask_price()
            return ask is not None and ask <= order.price
        bid = book.best_bid_price()
        return bid is not None and bid >= order.price


def _floor_qty(qty: float, precision: int) -> float:
    scale = 10**precision
    return math.floor(qty * scale + 1e-9) / scale


_ORDER_EVENTS = "events.order.*"
_CLEAR, _DELETE, _BUY_SIDE = BookAction.CLEAR, BookAction.DELETE, OrderSide.BUY


class _Instrument:
    """What the module keeps per instrument between data items.

    ``bids`` / ``asks`` mirror the displayed size at every price of the venue's L2 book (price raw ->
    size), kept from the deltas seen in ``pre_process``: reading the venue book from Python builds
    every level, far too slow to do per data item on a deep real book. ``dirty`` holds the queue
    levels whose displayed size (or queue) changed since the last ``process``; ``orders_dirty`` says
    an order event arrived, so the queue must be re-synced with the venue's open orders. ``stale``
    says the mirror cannot be trusted (a book type or data type it does not follow) and must be
    rebuilt from the venue book before use.
    """

    __slots__ = (
        "asks",
        "bids",
        "dirty",
        "instrument_id",
        "levels",
        "orders_dirty",
        "queue",
        "stale",
    )

    def __init__(self, instrument_id: InstrumentId, queue: QueueBook) -> None:
        self.instrument_id = instrument_id
        self.queue = queue
        # A live view of the (side, price) levels we queue at: cheap membership tests per delta.
        self.levels = queue.level_keys()
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.dirty: set[tuple[int, int]] = set()
        self.orders_dirty = False
        self.stale = True  # nothing read yet: the first use reads the venue book once

    def size(self, side: int, price: int) -> float:
        return (self.bids if side == BUY else self.asks).get(price, 0.0)


class QueuePositionModule(SimulationModule):
    """Keeps queue positions in step with the venue and fills orders from trades past their queue.

    Work is proportional to what changes, not to the data: a delta only updates the size mirror (and
    marks one of our levels when it touches one), and ``process`` returns at once unless an order
    event or a touched level is pending. The result is the same as re-syncing every open order and
    re-reading every queued level after every data item (``verify = True`` checks exactly that).
    """

    def __init__(self, config: QueueModuleConfig | None = None) -> None:
        super().__init__(config or QueueModuleConfig())
        self._fill_model: QueuePositionFillModel | None = None
        self._instruments: dict[InstrumentId, _Instrument] = {}
        self._pending: dict[InstrumentId, _Instrument] = {}
        self._mirror_deltas = True
        # Tests switch this on: after every ``process`` compare the incremental state with a full
        # re-read of the venue (book sizes and open orders); mismatches are collected here.
        self.verify = False
        self.verify_errors: list[str] = []

    def register_venue(self, exchange) -> None:
        super().register_venue(exchange)
        fill_model = exchange.fill_model
        if not isinstance(fill_model, QueuePositionFillModel):
            raise TypeError(
                f"QueuePositionModule needs the venue fill model to be QueuePositionFillModel, got {type(fill_model).__name__}"
            )
        fill_model.exchange = exchange
        self._fill_model = fill_model
        # Only an L2_MBP book is exactly "size at price = last delta there"; other book types are
        # re-read from the venue after each data item (correct, but slow on deep books).
        self._mirror_deltas = exchange.book_type == BookType.L2_MBP
        # Every change to an order at the venue (accept, update, fill, cancel, expiry) publishes an
        # order event synchronously, before the next ``process``: that is when the queue re-syncs.
        exchange.msgbus.subscribe(topic=_ORDER_EVENTS, handler=self._on_order_event)

    # -- data -------------------------------------------------------------------------------------

    def _instrument(self, instrument_id: InstrumentId) -> _Instrument:
        inst = self._instruments.get(instrument_id)
        if inst is None:
            queue = self._fill_model.state.book(instrument_id)
            inst = self._instruments[instrument_id] = _Instrument(instrument_id, queue)
        return inst

    def _on_order_event(self, event) -> None:
        instrument_id = event.instrument_id
        if self._fill_model is None or instrument_id.venue != self.exchange.id:
            return
        inst = self._instrument(instrument_id)
        inst.orders_dirty = True
        self._pending[inst.instrument_id] = inst

    def pre_process(self, data: Data) -> None:
        if self._fill_model is None:
            return
        kind = type(data)
        if kind is OrderBookDelta:  # the bulk of the data: kept short
            inst = self._instruments.get(data.instrument_id) or self._instrument(
                data.instrument_id
            )
            if self._mirror_deltas:
                self._apply_delta(inst, data)
            else:
                self._mark_stale(inst)
        elif kind is OrderBookDeltas:
            inst = self._instrument(data.instrument_id)
            if self._mirror_deltas:
                for delta in data.deltas:
                    self._apply_delta(inst, delta)
            else:
                self._mark_stale(inst)
        elif kind is TradeTick:
            self._on_trade(data)
        elif kind is OrderBookDepth10 or not self._mirror_deltas:
            # A depth snapshot replaces the book; on an L1 book quotes, trades and bars move it too.
            instrument_id = getattr(data, "instrument_id", None)
            if instrument_id is None and isinstance(data, Bar):
                instrument_id = data.bar_type.instrument_id
            if instrument_id is not None:
                self._mark_stale(self._instrument(instrument_id))

    def _apply_delta(self, inst: _Instrument, delta: OrderBookDelta) -> None:
        action = delta.action
        if action == _CLEAR:
            inst.bids.clear()
            inst.asks.clear()
            self._touch_all(inst)
            return
        order = delta.order
        price = order.price.raw
        if order.side == _BUY_SIDE:
            side, sizes = BUY, inst.bids
        else:
            side, sizes = SELL, inst.asks
        if action == _DELETE:
            sizes.pop(price, None)
        else:  # ADD / UPDATE: an L2 level's size is the last size sent for its price
            sizes[price] = float(order.size)
        if inst.levels and (side, price) in inst.levels:
            inst.dirty.add((side, price))
            self._pending[inst.instrument_id] = inst

    def _touch_all(self, inst: _Instrument) -> None:
        """Re-read every level we queue at after this data item."""
        if inst.levels:
            inst.dirty.update(inst.levels)
            self._pending[inst.instrument_id] = inst

    def _mark_stale(self, inst: _Instrument) -> None:
        inst.stale = True
        self._pending[inst.instrument_id] = inst

    def _refresh(self, inst: _Instrument, book: OrderBook) -> None:
        """Rebuild the size mirror from the venue book (first use, or a book the deltas do not explain)."""
        inst.stale = False
        inst.bids = {level.price.raw: float(level.size()) for level in book.bids()}
        inst.asks = {level.price.raw: float(level.size()) for level in book.asks()}
        self._touch_all(inst)

    def _on_trade(self, data: TradeTick) -> None:
        inst = self._instrument(data.instrument_id)
        if (inst.orders_dirty or inst.stale) and self._sync(inst):
            self._touch_all(inst)
        if not self._mirror_deltas:
            self._mark_stale(inst)  # an L1 book takes the trade's price after this hook
        if not inst.levels:
            return  # none of our orders rest: nothing to hand out
        aggressor = self._aggressor(data)
        if aggressor == 0:
            return
        fills = inst.queue.on_trade(data.price.raw, float(data.size), aggressor)
        # The trade moved queue positions: re-clamp our levels after this data item.
        self._touch_all(inst)
        if not fills:
            return
        engine = self.exchange.get_matching_engine(inst.instrument_id)
        precision = engine.instrument.size_precision
        queue = inst.queue
        for order in engine.get_open_orders():
            key = order.client_order_id.value
            share = fills.get(key)
            if share is None:
                continue
            qty = _floor_qty(min(share, float(order.leaves_qty)), precision)
            if qty > 0:
                position_id, position = self._position(order)
                # A reduce-only order with nothing to reduce: the venue would not fill it either.
                if not (order.is_reduce_only and position is None):
                    fill = [(order.price, Quantity(qty, precision))]
                    engine.apply_fills(
                        order, fill, LiquiditySide.MAKER, position_id, position
                    )
            if key in queue:
                # What the venue did not fill (a fraction below the size increment, a refused
                # reduce-only fill) stays on the order, in its queue place.
                queue.set_remaining(key, float(order.leaves_qty))

    def _position(self, order: Order):
        """The venue position an order fills into, as the matching engine would look it up."""
        cache = self.exchange.cache
        position_id = cache.position_id(order.client_order_id)
        if position_id is None:
            open_positions = cache.positions_open(None, order.instrument_id)
            position_id = open_positions[0].id if open_positions else None
        return position_id, cache.position(
            position_id
        ) if position_id is not None else None

    def process(self, ts_now: int) -> None:
        if self._pending:
            pending = list(self._pending.values())
            self._pending.clear()
            for inst in pending:
                if (inst.orders_dirty or inst.stale) and self._sync(inst):
                    # New queue positions: read their levels now.
                    inst.dirty.update(inst.levels)
                if inst.dirty:
                    queue = inst.queue
                    for side, price in inst.dirty:
                        queue.on_depth(side, price, inst.size(side, price))
                    inst.dirty.clear()
        if self.verify:
            self._verify(ts_now)

    def _sync(self, inst: _Instrument) -> bool:
        """Mirror the venue's open limit orders: new ones join the back, amended ones are re-queued.

        Returns whether an order took a new queue position (its level must be read afterwards).
        """
        inst.orders_dirty = False
        engine = self.exchange.get_matching_engine(inst.instrument_id)
        if engine is None:
            return False
        if inst.stale:
            self._refresh(inst, engine.get_book())
        queue = inst.queue
        changed = False
        open_ids = set()
        for order in engine.get_open_orders():
            if order.order_type != OrderType.LIMIT:
                continue
            key = order.client_order_id.value
            open_ids.add(key)
            side, price, leaves = (
                _side(order.side),
                order.price.raw,
                float(order.leaves_qty),
            )
            tracked = queue.order(key)
            if tracked is None:
                queue.place(key, side, price, leaves, inst.size(side, price))
                changed = True
            elif tracked.price != price or leaves > tracked.remaining + 1e-12:
                queue.modify(key, price, leaves, inst.size(side, price))
                changed = True
            elif leaves < tracked.remaining:
                queue.set_remaining(key, leaves)
        for tracked in queue.orders():
            if tracked.order_id not in open_ids:
                queue.remove(tracked.order_id)
        return changed

    def _verify(self, ts_now: int) -> None:
        """Check the incremental state against a full re-read of the venue (tests only: slow)."""
        for instrument_id in list(self.exchange.instruments):
            engine = self.exchange.get_matching_engine(instrument_id)
            if engine is None:
                continue
            book = engine.get_book()
            inst = self._instrument(instrument_id)
            where = f"{instrument_id} at {ts_now}"
            if not inst.stale:
                for side, sizes in ((BUY, inst.bids), (SELL, inst.asks)):
                    levels = book.bids() if side == BUY else book.asks()
                    shown = {level.price.raw: float(level.size()) for level in levels}
                    if shown != {p: s for p, s in sizes.items() if s > 0}:
                        self.verify_errors.append(
                            f"{where}: size mirror differs from the venue book"
                        )
            for side, price in inst.queue.tracked_levels():
                level = inst.queue.level(side, price)
                if level.displayed != _level_size(book, side, price):
                    self.verify_errors.append(
                        f"{where}: level {side} {price} shows {level.displayed}"
                    )
            open_orders = {
                o.client_order_id.value: o
                for o in engine.get_open_orders()
                if o.order_type == OrderType.LIMIT
            }
            tracked = {o.order_id: o for o in inst.queue.orders()}
            if set(open_orders) != set(tracked):
                self.verify_errors.append(
                    f"{where}: queued {sorted(tracked)} vs open {sorted(open_orders)}"
                )
                continue
            for key, order in open_orders.items():
                q = tracked[key]
                leaves = float(order.leaves_qty)
                if q.price != order.price.raw or not (
                    q.remaining <= leaves <= q.remaining + 1e-12
                ):
                    self.verify_errors.append(
                        f"{where}: order {key} queued at {q.price} x {q.remaining}, venue {order.price.raw} x {leaves} ({order.status_string()})"
                    )

    def _aggressor(self, trade: TradeTick) -> int:
        if trade.aggressor_side == AggressorSide.BUYER:
            return BUY
        if trade.aggressor_side == AggressorSide.SELLER:
            return SELL
        book = self.exchange.get_book(trade.instrument_id)
        bid, ask = book.best_bid_price(), book.best_ask_price()
        if bid is not None and trade.price <= bid:
            return SELL
        if ask is not None and trade.price >= ask:
            return BUY
        return 0  # inside the spread with no aggressor: nobody's queue was consumed

    def log_diagnostics(self, logger) -> None:
        if self._fill_model is not None:
            tracked = sum(
                len(b.orders()) for b in self._fill_model.state.books.values()
            )
            logger.info(
                f"QueuePositionModule: {tracked} orders tracked, model={self._fill_model.queue_model}"
            )

    def reset(self) -> None:
        self._instruments.clear()
        self._pending.clear()
        if self._fill_model is not None:
            self._fill_model.state.books.clear()
