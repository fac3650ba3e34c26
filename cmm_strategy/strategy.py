"""``CMMStrategy``: the distilled models on NautilusTrader's L2 hot path (first cut, issue 5).

One book update, step by step: ``on_order_book_deltas`` applies the batch to ``BookLevels``; on a
complete batch (``F_LAST``) it updates ``FeatureState`` exactly as training did, runs the bundle
(numpy), turns the predictions into quotes with the pure ``quote`` function, and requotes only
when a price moved by ``requote_ticks`` or a size by ``requote_size_fraction``.

Not yet here (issue 5 continues): latency charging, the kill switch and notional limits, the
order-rate limit, multi-level order management and the baseline strategies.
"""

from __future__ import annotations

import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookType, OrderSide, RecordFlag, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.model.orders import LimitOrder
from nautilus_trader.trading.strategy import Strategy

from cmm_strategy.book_levels import BookLevels
from cmm_strategy.bundle import CMMBundle, load_bundle
from cmm_strategy.features import FeatureState
from cmm_strategy.quoting import Quote, QuoteParams, quote

F_LAST = int(RecordFlag.F_LAST)


class CMMStrategyConfig(StrategyConfig, frozen=True):
    """Configuration of ``CMMStrategy``.

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument to make a market in.
    bundle_path : str
        Folder of a bundle written by ``cmm distill`` (verified on load).
    horizon : str, default "1s"
        Which horizon's predictions drive the quotes (``mid_{h}``, ``spread_{h}``, ``volume_{h}``).
    order_step : float, optional
        Order quantity step (lot) in base units; default: the instrument's ``info["order_step"]`` or
        ``min_quantity``.
    alpha, skew, eta, q_max, min_size, max_size, size_fraction
        Quoting parameters, see ``cmm_strategy.quoting.QuoteParams`` (units there).
    requote_ticks : int, default 1
        Replace a resting order only when the desired price moved by at least this many ticks.
    requote_size_fraction : float, default 0.5
        ... or when the desired size differs by more than this fraction.
    """

    instrument_id: InstrumentId
    bundle_path: str
    horizon: str = "1s"
    order_step: float | None = None
    alpha: float = 1.0
    skew: float = 0.5
    eta: float = 1.0
    q_max: float = 0.05
    min_size: float = 0.001
    max_size: float = 0.01
    size_fraction: float = 0.05
    requote_ticks: int = 1
    requote_size_fraction: float = 0.5


class CMMStrategy(Strategy):
    """Quotes both sides from the bundle's predictions on every complete L2 batch."""

    def __init__(self, config: CMMStrategyConfig) -> None:
        super().__init__(config)
        self.instrument: Instrument | None = None
        self.bundle: CMMBundle | None = None
        self.levels = BookLevels()
        self.features: FeatureState | None = None
        self._x: np.ndarray | None = None
        self._orders: dict[OrderSide, LimitOrder | None] = {OrderSide.BUY: None, OrderSide.SELL: None}
        self.decisions = 0
        self.quote_updates = 0

    def on_start(self) -> None:
        config = self.config
        self.instrument = self.cache.instrument(config.instrument_id)
        if self.instrument is None:
            self.log.error(f"Could not find instrument {config.instrument_id}")
            self.stop()
            return
        self.bundle = load_bundle(config.bundle_path)
        tick = float(self.instrument.price_increment)
        from catalog.instruments import order_step

        self.lot = config.order_step or order_step(self.instrument)
        self.tick = tick
        self.features = FeatureState(self.bundle.spec, tick=tick, lot=self.lot)
        self._x = np.empty(self.bundle.spec.dim)
        names = self.bundle.target_names
        self._cols = [names.index(f"{task}_{config.horizon}") for task in ("mid", "spread", "volume")]
        self.params = QuoteParams(
            alpha=config.alpha,
            skew=config.skew,
            eta=config.eta,
            q_max=config.q_max,
            min_size=config.min_size,
            max_size=config.max_size,
            size_fraction=config.size_fraction,
        )
        self.subscribe_order_book_deltas(config.instrument_id, BookType.L2_MBP)
        self.subscribe_trade_ticks(config.instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        if self.features is None:
            return
        side = tick.aggressor_side
        sign = 1 if side == AggressorSide.BUYER else -1 if side == AggressorSide.SELLER else 0
        self.features.on_trade(tick.ts_init, tick.size.as_double(), sign)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        if self.features is None or self.bundle is None:
            return
        complete = False
        for delta in deltas.deltas:
            self.levels.apply(delta)
            complete = bool(delta.flags & F_LAST)
        if not complete:
            return
        best = self.levels.best()
        if best is None:
            return
        ts = deltas.ts_init
        bid, bid_size, ask, ask_size = best
        self.features.on_top(ts, bid, bid_size, ask, ask_size)
        self.features.set_levels(*self.levels.top(self.bundle.spec.levels))
        x = self.features.write(ts, self._x)
        prediction = self.bundle.predict(x)
        self.decisions += 1
        position = self.portfolio.net_position(self.config.instrument_id)
        quotes = quote(
            0.5 * (bid + ask),
            bid,
            ask,
            self.tick,
            self.lot,
            float(prediction[self._cols[0]]),
            float(prediction[self._cols[1]]),
            float(prediction[self._cols[2]]),
            float(position),
            self.params,
        )
        if quotes.cancel_all:
            self._cancel_side(OrderSide.BUY)
            self._cancel_side(OrderSide.SELL)
            return
        self._requote(OrderSide.BUY, quotes.bids[0] if quotes.bids else None)
        self._requote(OrderSide.SELL, quotes.asks[0] if quotes.asks else None)

    # -- order management ------------------------------------------------------------------

    def _cancel_side(self, side: OrderSide) -> None:
        order = self._orders[side]
        if order is not None and order.is_open and not order.is_pending_cancel:
            self.cancel_order(order)
        self._orders[side] = None

    def _requote(self, side: OrderSide, desired: Quote | None) -> None:
        order = self._orders[side]
        if order is not None and order.is_closed:
            order = self._orders[side] = None
        if desired is None:
            self._cancel_side(side)
            return
        if order is not None:
            moved = abs(order.price.as_double() - desired.price) >= self.config.requote_ticks * self.tick - 1e-12
            resized = abs(order.leaves_qty.as_double() - desired.size) > self.config.requote_size_fraction * desired.size
            if not (moved or resized) or order.is_pending_cancel or not order.is_open:
                return
            self._cancel_side(side)
        assert self.instrument is not None
        new = self.order_factory.limit(
            instrument_id=self.config.instrument_id,
            order_side=side,
            quantity=Quantity(desired.size, self.instrument.size_precision),
            price=Price(desired.price, self.instrument.price_precision),
            time_in_force=TimeInForce.GTC,
            post_only=True,
        )
        self._orders[side] = new
        self.quote_updates += 1
        self.submit_order(new)

    def on_stop(self) -> None:
        self.cancel_all_orders(self.config.instrument_id)
        self.close_all_positions(self.config.instrument_id)
