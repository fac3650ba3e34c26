"""``CMMStrategy``: the distilled models on NautilusTrader's L2 hot path (first cut, issue 5).

One book update, step by step: ``on_order_book_deltas`` applies the batch to ``BookLevels``; on a
complete batch (``F_LAST``) it updates ``FeatureState`` exactly as training did, runs the bundle
(numpy), turns the predictions into quotes with the pure ``quote`` function, and requotes only
when a price moved by ``requote_ticks`` or a size by ``requote_size_fraction``.

Risk and realism (METHOD.md section 8): a decision made at event time t with compute cost c
(measured, or ``decision_latency_us``) reaches the venue at t + c: the orders are sent from a clock
alert at t + c, and book updates that arrive while the strategy is still computing get no decision
of their own (a single-threaded strategy would be busy). A timer cancels the quotes when the book is
older than ``stale_book_ms``; a loss beyond ``max_loss`` cancels everything, optionally flattens,
and stops quoting for good (kill switch). NaN/inf predictions and crossed books produce no quotes
and cancel the resting ones (``quote``).

Not yet here (issue 5 continues): notional limits, the order-rate limit, multi-level order
management and the baseline strategies.
"""

from __future__ import annotations

import time

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
    decision_latency_us : float, optional
        Compute cost charged per decision in simulated time; default: the measured wall time.
    charge_latency : bool, default True
        Delay order actions by the decision's cost (False: act at the event time, for comparison).
    stale_book_ms : int, default 2000
        Cancel the quotes (and make no new ones) when the last book update is older than this.
    max_loss : float, optional
        Kill switch: total PnL (quote currency) below ``-max_loss`` cancels all orders and stops quoting.
    flatten_on_kill : bool, default True
        When the kill switch fires, also close the position with a market order.
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
    decision_latency_us: float | None = None
    charge_latency: bool = True
    stale_book_ms: int = 2000
    max_loss: float | None = None
    flatten_on_kill: bool = True


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
        self.busy_until_ns = 0
        self.last_book_ns = 0
        self.killed = False
        self.stale = False
        self.decision_costs_ns: list[int] = []
        self.order_decision_ns: dict[str, int] = {}  # client order id -> event time of its decision
        self._pending: tuple[int, object] | None = None

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
        check_ns = max(config.stale_book_ms, 1) * 1_000_000 // 4
        self.clock.set_timer_ns("cmm-stale-book", check_ns, 0, 0, self._check_stale)

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
        ts = deltas.ts_init
        self.last_book_ns = ts
        best = self.levels.best()
        if best is None:
            return
        bid, bid_size, ask, ask_size = best
        self.features.on_top(ts, bid, bid_size, ask, ask_size)
        if self.killed or ts < self.busy_until_ns:
            return  # killed, or still computing the previous decision
        self.stale = False
        started = time.perf_counter_ns()
        self.features.set_levels(*self.levels.top(self.bundle.spec.levels))
        x = self.features.write(ts, self._x)
        prediction = self.bundle.predict(x)
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
        measured = time.perf_counter_ns() - started
        cost = int(self.config.decision_latency_us * 1000) if self.config.decision_latency_us is not None else measured
        self.decisions += 1
        self.decision_costs_ns.append(measured)
        if not self.config.charge_latency or cost <= 0:
            self._act(ts, quotes)
            return
        self.busy_until_ns = ts + cost
        self._pending = (ts, quotes)
        self.clock.set_time_alert_ns(f"cmm-decision-{self.decisions}", ts + cost, self._on_decision_ready)

    def _on_decision_ready(self, event) -> None:
        if self._pending is None:
            return
        ts, quotes = self._pending
        self._pending = None
        if not self.killed and not self.stale:
            self._act(ts, quotes)  # type: ignore[arg-type]

    def _act(self, decision_ns: int, quotes) -> None:
        if self._check_kill():
            return
        if quotes.cancel_all:
            self._cancel_side(OrderSide.BUY)
            self._cancel_side(OrderSide.SELL)
            return
        self._requote(OrderSide.BUY, quotes.bids[0] if quotes.bids else None, decision_ns)
        self._requote(OrderSide.SELL, quotes.asks[0] if quotes.asks else None, decision_ns)

    # -- risk --------------------------------------------------------------------------------

    def _check_stale(self, event) -> None:
        if self.last_book_ns and self.clock.timestamp_ns() - self.last_book_ns > self.config.stale_book_ms * 1_000_000 and not self.stale:
            self.stale = True
            self._cancel_side(OrderSide.BUY)
            self._cancel_side(OrderSide.SELL)

    def _check_kill(self) -> bool:
        if self.killed:
            return True
        if self.config.max_loss is None:
            return False
        pnl = self.portfolio.total_pnl(self.config.instrument_id)
        if pnl is None or pnl.as_double() >= -self.config.max_loss:
            return False
        self.killed = True
        self.log.warning(f"kill switch: total PnL {pnl} below -{self.config.max_loss}; cancelling and stopping quotes")
        self.cancel_all_orders(self.config.instrument_id)
        if self.config.flatten_on_kill:
            self.close_all_positions(self.config.instrument_id)
        return True

    # -- order management ------------------------------------------------------------------

    def _cancel_side(self, side: OrderSide) -> None:
        order = self._orders[side]
        if order is not None and order.is_open and not order.is_pending_cancel:
            self.cancel_order(order)
        self._orders[side] = None

    def on_order_filled(self, event) -> None:
        self._check_kill()

    def _requote(self, side: OrderSide, desired: Quote | None, decision_ns: int) -> None:
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
        self.order_decision_ns[new.client_order_id.value] = decision_ns
        self.submit_order(new)

    def on_stop(self) -> None:
        self.clock.cancel_timers()
        self.cancel_all_orders(self.config.instrument_id)
        self.close_all_positions(self.config.instrument_id)
