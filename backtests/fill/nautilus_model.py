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
"""

from __future__ import annotations

import math

from nautilus_trader.backtest.config import SimulationModuleConfig
from nautilus_trader.backtest.models import FillModel
from nautilus_trader.backtest.modules import SimulationModule
from nautilus_trader.config import FillModelConfig
from nautilus_trader.core.data import Data
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import (
    AggressorSide,
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


class QueuePositionModule(SimulationModule):
    """Keeps queue positions in step with the venue and fills orders from trades past their queue."""

    def __init__(self, config: QueueModuleConfig | None = None) -> None:
        super().__init__(config or QueueModuleConfig())
        self._fill_model: QueuePositionFillModel | None = None

    def register_venue(self, exchange) -> None:
        super().register_venue(exchange)
        fill_model = exchange.fill_model
        if not isinstance(fill_model, QueuePositionFillModel):
            raise TypeError(
                f"QueuePositionModule needs the venue fill model to be QueuePositionFillModel, got {type(fill_model).__name__}"
            )
        fill_model.exchange = exchange
        self._fill_model = fill_model

    def pre_process(self, data: Data) -> None:
        if not isinstance(data, TradeTick) or self._fill_model is None:
            return
        instrument_id = data.instrument_id
        self._sync(instrument_id)
        aggressor = self._aggressor(data)
        if aggressor == 0:
            return
        state = self._fill_model.state
        fills = state.book(instrument_id).on_trade(
            data.price.raw, float(data.size), aggressor
        )
        if not fills:
            return
        engine = self.exchange.get_matching_engine(instrument_id)
        precision = engine.instrument.size_precision
        for order in engine.get_open_orders():
            qty = _floor_qty(
                min(
                    fills.get(order.client_order_id.value, 0.0), float(order.leaves_qty)
                ),
                precision,
            )
            if qty <= 0:
                continue
            position_id, position = self._position(order)
            if order.is_reduce_only and position is None:
                continue  # nothing to reduce: the venue would not fill it either
            fill = [(order.price, Quantity(qty, precision))]
            engine.apply_fills(order, fill, LiquiditySide.MAKER, position_id, position)

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
        if self._fill_model is None:
            return
        for instrument_id in list(self.exchange.instruments):
            self._sync(instrument_id)
            queue = self._fill_model.state.book(instrument_id)
            book = self.exchange.get_book(instrument_id)
            for side, price in queue.tracked_levels():
                queue.on_depth(side, price, _level_size(book, side, price))

    def _sync(self, instrument_id: InstrumentId) -> None:
        """Mirror the venue's open limit orders: new ones join the back, amended ones are re-queued."""
        queue = self._fill_model.state.book(instrument_id)
        engine = self.exchange.get_matching_engine(instrument_id)
        if engine is None:
            return
        book = engine.get_book()
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
                queue.place(key, side, price, leaves, _level_size(book, side, price))
            elif tracked.price != price or leaves > tracked.remaining + 1e-12:
                queue.modify(key, price, leaves, _level_size(book, side, price))
            elif leaves < tracked.remaining:
                queue.set_remaining(key, leaves)
        for tracked in queue.orders():
            if tracked.order_id not in open_ids:
                queue.remove(tracked.order_id)

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
        if self._fill_model is not None:
            self._fill_model.state.books.clear()
