"""The market-making skeleton every strategy of ours shares: book, latency, risk, order management.

A subclass only says what it predicts (``predict``): CMM runs the distilled bundle, the baselines
run their formulas. Everything that makes a backtest honest and a live run safe lives here once:

- **Book and decisions.** Deltas go into ``BookLevels``; a decision is made on each complete batch
  (``F_LAST``) with a two-sided book. Predictions become quotes only through the pure ``quote``.
- **Latency charging (METHOD.md section 8).** A decision at event time t with compute cost c
  (measured wall time, or ``decision_latency_us``) acts at t + c from a clock alert; book updates
  that arrive while busy get no decision of their own.
- **Order management.** A ladder of ``levels`` orders per side; an order is replaced only when its
  price moved by ``requote_ticks`` or its size by ``requote_size_fraction``; replaced by a modify
  (``use_modify``) or cancel + new. At most ``max_orders_per_s`` order actions (submits and
  modifies; cancels always pass, they only reduce risk) in any one-second window. Rejects,
  modify-rejects, partial fills and cancels in flight are handled; ``max_rejects_per_s`` rejects
  in one second pause quoting for ``reject_backoff_ms``.
- **Risk.** Hard caps checked on every new order against the worst case (position plus every open or
  in-flight order on that side, pending cancels included): ``q_max`` on |position| and
  ``max_notional`` on its notional. Kill switch on ``max_loss`` (cancel all, optionally flatten,
  stop for good); stale-book guard (timer: no quotes while the book is older than
  ``stale_book_ms``); NaN/inf predictions and crossed books cancel the resting quotes (``quote``).
"""

from __future__ import annotations

import math
import time
from collections import deque

from nautilus_trader.common.component import LiveClock
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookType, OrderSide, RecordFlag, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.model.orders import LimitOrder
from nautilus_trader.trading.strategy import Strategy

from cmm_strategy.book_levels import BookLevels
from cmm_strategy.quoting import Quote, QuoteParams, Quotes, quote

F_LAST = int(RecordFlag.F_LAST)
_SECOND_NS = 1_000_000_000


class MarketMakerConfig(StrategyConfig, frozen=True):
    """Parameters shared by every market maker of ours (units in brackets).

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument to make a market in.
    order_step : float, optional
        Order quantity step (lot) [base units or contracts]; default: the instrument's
        ``info["order_step"]`` (Binance LOT_SIZE) or its ``size_increment``.
    alpha, skew, eta, size_fraction
        Quoting parameters, see ``cmm_strategy.quoting.QuoteParams``. Baselines that compute their
        own reservation price and spread fix some of them (documented on each baseline).
    q_max : float, default 0.05
        Hard limit on |position| [base units / contracts].
    min_size, max_size : float
        Order size bounds [base units / contracts]; sizes are lot multiples.
    order_size : float, default 0.001
        Size of every order of the fixed-size baselines (also their inventory unit); CMM and
        teacher-direct size from the predicted volume instead and ignore it.
    levels : int, default 1
        Orders per side (ladder); ``level_spacing_ticks`` apart.
    requote_ticks : int, default 1
        Replace a resting order only when its desired price moved by at least this many ticks ...
    requote_size_fraction : float, default 0.5
        ... or its desired size differs by more than this fraction.
    use_modify : bool, default True
        Replace by modifying the resting order (one action, keeps the order id) instead of cancel +
        new (two actions, loses nothing in a backtest but risks both filling with live latency).
    max_orders_per_s : int, default 20
        At most this many submits + modifies in any one-second window (cancels are never limited).
    max_rejects_per_s : int, default 5
        This many rejects within one second pause quoting ...
    reject_backoff_ms : int, default 1000
        ... for this long (all quotes cancelled).
    max_notional : float, optional
        Hard limit on |position| x price x multiplier [quote currency], worst case over open orders.
    decision_latency_us : float, optional
        Compute cost charged per decision in simulated time [us]; default: the measured wall time.
    charge_latency : bool, default True
        Delay order actions by the decision's cost (False: act at the event time, for comparison).
        Ignored on a live clock (paper/live trading), where the cost is paid in real time.
    stale_book_ms : int, default 2000
        No quotes while the last book update is older than this [ms]; checked by a timer every
        quarter of it.
    max_loss : float, optional
        Kill switch: total PnL [quote currency] below ``-max_loss`` cancels all orders and stops quoting.
    flatten_on_kill : bool, default True
        When the kill switch fires, also close the position with a market order.
    active_from_ns : int, optional
        No decisions before this time [ns since epoch]; the book and the features still update, so a
        backtest of the last 40 % of a capture starts from the true book and warm features.
    record_mids : bool, default True
        Keep (ts, mid) of every complete batch (``mid_ts``, ``mid_px``) for the run's metrics
        (PnL marked to mid, markouts); two list appends per batch.
    """

    instrument_id: InstrumentId
    order_step: float | None = None
    alpha: float = 1.0
    skew: float = 0.5
    eta: float = 1.0
    q_max: float = 0.05
    min_size: float = 0.001
    max_size: float = 0.01
    size_fraction: float = 0.05
    order_size: float = 0.001
    levels: int = 1
    level_spacing_ticks: int = 1
    requote_ticks: int = 1
    requote_size_fraction: float = 0.5
    use_modify: bool = True
    max_orders_per_s: int = 20
    max_rejects_per_s: int = 5
    reject_backoff_ms: int = 1000
    max_notional: float | None = None
    decision_latency_us: float | None = None
    charge_latency: bool = True
    stale_book_ms: int = 2000
    max_loss: float | None = None
    flatten_on_kill: bool = True
    active_from_ns: int | None = None
    record_mids: bool = True


class MarketMaker(Strategy):
    """Quotes a ladder on both sides from ``predict`` on every complete L2 batch; see module doc."""

    #: QuoteParams fields a subclass fixes regardless of the config (e.g. A-S sets alpha=1, skew=0).
    fixed_quote_params: dict[str, float] = {}

    def __init__(self, config: MarketMakerConfig) -> None:
        super().__init__(config)
        self.instrument: Instrument | None = None
        self.levels = BookLevels()
        self.tick = 0.0
        self.lot = 0.0
        self._ladders: dict[OrderSide, list[LimitOrder | None]] = {
            OrderSide.BUY: [None] * config.levels,
            OrderSide.SELL: [None] * config.levels,
        }
        self._order_level: dict[str, tuple[OrderSide, int]] = {}
        self._action_times: deque[int] = deque()
        self._reject_times: deque[int] = deque()
        self._pending: tuple[int, Quotes] | None = None
        self.decisions = 0
        self.quote_updates = 0
        self.modifies = 0
        self.rejects = 0
        self.rate_limited = 0
        self.risk_trimmed = 0
        self.busy_until_ns = 0
        self.paused_until_ns = 0
        self.last_book_ns = 0
        self.killed = False
        self.stale = False
        self.decision_costs_ns: list[int] = []
        self.mid_ts: list[int] = []
        self.mid_px: list[float] = []
        self.order_decision_ns: dict[str, int] = {}  # client order id -> event time of its decision

    # -- subclass interface ------------------------------------------------------------------

    def setup(self) -> None:
        """Load models / reset estimators; called from ``on_start`` once the instrument is known."""

    def on_book_top(self, ts: int, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
        """Every complete batch, busy or not (keep online state current)."""

    def on_trade(self, ts: int, price: float, size: float, sign: int) -> None:
        """Every trade tick (sign +1 buyer-initiated, -1 seller, 0 unknown)."""

    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float] | None:
        """(mid move [ticks], spread [ticks], log(1 + volume [base units])) for ``quote``, or None to
        make no decision at this batch (e.g. no new information)."""
        raise NotImplementedError

    def volume_log_in_order_units(self, volume_log_base: float, mid: float) -> float:
        """Predicted log(1 + volume) is in base units (training targets convert contracts to base);
        inverse instruments quote in contracts of ``multiplier`` quote units: convert."""
        if not self._inverse:
            return volume_log_base
        if not math.isfinite(volume_log_base):
            return volume_log_base  # quote() cancels on non-finite predictions
        # a regression may predict log(1 + v) < 0, i.e. v < 0: no volume
        return math.log1p(max(math.expm1(volume_log_base), 0.0) * mid / self._multiplier)

    def decision_cost_ns(self, measured_ns: int) -> int:
        """Simulated compute time charged for a decision; the config's fixed value or the measured one."""
        if self.config.decision_latency_us is not None:
            return int(self.config.decision_latency_us * 1000)
        return measured_ns

    # -- lifecycle -----------------------------------------------------------------------------

    def on_start(self) -> None:
        config = self.config
        self.instrument = self.cache.instrument(config.instrument_id)
        if self.instrument is None:
            self.log.error(f"Could not find instrument {config.instrument_id}")
            self.stop()
            return
        from catalog.instruments import order_step

        self.tick = float(self.instrument.price_increment)
        self.lot = config.order_step or order_step(self.instrument)
        self._multiplier = float(self.instrument.multiplier)
        self._inverse = bool(getattr(self.instrument, "is_inverse", False))
        values = dict(
            alpha=config.alpha,
            skew=config.skew,
            eta=config.eta,
            q_max=config.q_max,
            min_size=config.min_size,
            max_size=config.max_size,
            size_fraction=config.size_fraction,
            levels=config.levels,
            level_spacing_ticks=config.level_spacing_ticks,
        )
        values.update(self.fixed_quote_params)
        self.params = QuoteParams(**values)
        # On a live clock the compute time has already passed when the orders go out: charging it
        # again would count it twice. In a backtest the clock stands still while we compute.
        self.charge_latency = config.charge_latency and not isinstance(self.clock, LiveClock)
        self._active_from = config.active_from_ns or 0
        self._record_mids = config.record_mids
        self.setup()
        self.subscribe_order_book_deltas(config.instrument_id, BookType.L2_MBP)
        self.subscribe_trade_ticks(config.instrument_id)
        check_ns = max(config.stale_book_ms, 1) * 1_000_000 // 4
        self.clock.set_timer_ns(f"{self.id}-stale-book", check_ns, 0, 0, self._check_stale)

    def on_stop(self) -> None:
        self.clock.cancel_timers()
        self.cancel_all_orders(self.config.instrument_id)
        self.close_all_positions(self.config.instrument_id)

    # -- market data ---------------------------------------------------------------------------

    def on_trade_tick(self, tick: TradeTick) -> None:
        side = tick.aggressor_side
        sign = 1 if side == AggressorSide.BUYER else -1 if side == AggressorSide.SELLER else 0
        self.on_trade(tick.ts_init, tick.price.as_double(), tick.size.as_double(), sign)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        if self.instrument is None:
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
        self.on_book_top(ts, bid, bid_size, ask, ask_size)
        if self._record_mids and bid < ask:
            self.mid_ts.append(ts)
            self.mid_px.append(0.5 * (bid + ask))
        if self.killed or ts < self.busy_until_ns or ts < self._active_from:
            return  # killed, still computing the previous decision, or before the trading window
        self.stale = False
        started = time.perf_counter_ns()
        position = float(self.portfolio.net_position(self.config.instrument_id))
        prediction = self.predict(ts, bid, ask, position)
        if prediction is None:
            return
        quotes = quote(0.5 * (bid + ask), bid, ask, self.tick, self.lot, *prediction, position, self.params)
        measured = time.perf_counter_ns() - started
        self.decisions += 1
        self.decision_costs_ns.append(measured)
        cost = self.decision_cost_ns(measured)
        if not self.charge_latency or cost <= 0:
            self._act(ts, quotes)
            return
        self.busy_until_ns = ts + cost
        self._pending = (ts, quotes)
        self.clock.set_time_alert_ns(f"{self.id}-decision-{self.decisions}", ts + cost, self._on_decision_ready)

    def _on_decision_ready(self, event) -> None:
        if self._pending is None:
            return
        ts, quotes = self._pending
        self._pending = None
        if not self.killed and not self.stale:
            self._act(ts, quotes)

    def _act(self, decision_ns: int, quotes: Quotes) -> None:
        if self._check_kill():
            return
        if quotes.cancel_all or self.clock.timestamp_ns() < self.paused_until_ns:
            self.cancel_quotes()
            return
        # Move the side that gets out of the way first, so our own bid and ask never cross.
        ask_first = bool(quotes.bids) and quotes.bids[0].price >= self._own_best(OrderSide.SELL)
        for side in (OrderSide.SELL, OrderSide.BUY) if ask_first else (OrderSide.BUY, OrderSide.SELL):
            self._reconcile(side, quotes.bids if side == OrderSide.BUY else quotes.asks, decision_ns)

    def _own_best(self, side: OrderSide) -> float:
        """Best price among our resting orders on ``side`` (+inf / -inf when none): a new order on the
        other side must stay strictly behind it."""
        prices = [o.price.as_double() for o in self._ladders[side] if o is not None and (o.is_open or o.is_inflight) and not o.is_pending_cancel]
        if side == OrderSide.SELL:
            return min(prices, default=math.inf)
        return max(prices, default=-math.inf)

    def _crosses_own(self, side: OrderSide, price: float) -> bool:
        if side == OrderSide.BUY:
            return price >= self._own_best(OrderSide.SELL)
        return price <= self._own_best(OrderSide.BUY)

    # -- risk ----------------------------------------------------------------------------------

    def _check_stale(self, event) -> None:
        age = self.clock.timestamp_ns() - self.last_book_ns
        if self.last_book_ns and age > self.config.stale_book_ms * 1_000_000 and not self.stale:
            self.stale = True
            self.log.warning(f"book stale for {age / 1e6:.0f} ms: quotes cancelled until it updates")
            self.cancel_quotes()

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

    def _notional(self, qty: float, price: float) -> float:
        return qty * self._multiplier if self._inverse else qty * price * self._multiplier

    def _allowed_size(self, side: OrderSide, size: float, price: float, replacing: LimitOrder | None) -> float:
        """``size`` cut (to whole lots) so that the worst case — position plus every open or in-flight
        order on this side, pending cancels included, ``replacing`` excluded — stays within q_max
        and max_notional."""
        exposure = 0.0
        iid = self.config.instrument_id
        seen = {replacing.client_order_id} if replacing is not None else set()
        for order in self.cache.orders_open(instrument_id=iid, strategy_id=self.id, side=side) + self.cache.orders_inflight(
            instrument_id=iid, strategy_id=self.id, side=side
        ):  # open and in-flight overlap (pending update / cancel): count each order once
            if order.client_order_id not in seen:
                seen.add(order.client_order_id)
                exposure += order.leaves_qty.as_double()
        position = float(self.portfolio.net_position(iid))
        sign = 1.0 if side == OrderSide.BUY else -1.0
        worst = sign * position + exposure  # how far this side could take the position
        room = self.config.q_max - worst
        if self.config.max_notional is not None:
            unit = self._notional(1.0, price)
            room = min(room, self.config.max_notional / unit - worst) if unit > 0 else room
        allowed = math.floor(max(room, 0.0) / self.lot + 1e-9) * self.lot
        if allowed < size - 1e-12:
            self.risk_trimmed += 1
            return allowed
        return size

    # -- order management ---------------------------------------------------------------------

    def cancel_quotes(self) -> None:
        for side in (OrderSide.BUY, OrderSide.SELL):
            for level in range(self.config.levels):
                self._cancel_level(side, level)

    def _cancel_level(self, side: OrderSide, level: int) -> None:
        order = self._ladders[side][level]
        if order is not None and (order.is_open or order.is_inflight) and not order.is_pending_cancel:
            self.cancel_order(order)
        self._ladders[side][level] = None

    def _take_action_token(self) -> bool:
        now = self.clock.timestamp_ns()
        times = self._action_times
        while times and times[0] <= now - _SECOND_NS:
            times.popleft()
        if len(times) >= self.config.max_orders_per_s:
            self.rate_limited += 1
            return False
        times.append(now)
        return True

    def _reconcile(self, side: OrderSide, desired: tuple[Quote, ...], decision_ns: int) -> None:
        ladder = self._ladders[side]
        for level in range(self.config.levels):
            order = ladder[level]
            if order is not None and order.is_closed:
                order = ladder[level] = None
            want = desired[level] if level < len(desired) else None
            if want is None:
                self._cancel_level(side, level)
                continue
            if order is None:
                self._submit(side, level, want, decision_ns)
                continue
            if order.is_pending_cancel or order.is_pending_update or order.is_inflight:
                continue  # wait for the venue's answer
            moved = abs(order.price.as_double() - want.price) >= self.config.requote_ticks * self.tick - 1e-12
            resized = abs(order.leaves_qty.as_double() - want.size) > self.config.requote_size_fraction * want.size
            if not (moved or resized):
                continue
            if self.config.use_modify:
                self._modify(order, want)
            else:
                self._cancel_level(side, level)
                self._submit(side, level, want, decision_ns)

    def _submit(self, side: OrderSide, level: int, want: Quote, decision_ns: int) -> None:
        size = self._allowed_size(side, want.size, want.price, None)
        if size < max(self.config.min_size, self.lot) - 1e-12 or self._crosses_own(side, want.price) or not self._take_action_token():
            return
        assert self.instrument is not None
        order = self.order_factory.limit(
            instrument_id=self.config.instrument_id,
            order_side=side,
            quantity=Quantity(size, self.instrument.size_precision),
            price=Price(want.price, self.instrument.price_precision),
            time_in_force=TimeInForce.GTC,
            post_only=True,
        )
        self._ladders[side][level] = order
        self._order_level[order.client_order_id.value] = (side, level)
        self.quote_updates += 1
        self.order_decision_ns[order.client_order_id.value] = decision_ns
        self.submit_order(order)

    def _modify(self, order: LimitOrder, want: Quote) -> None:
        size = self._allowed_size(order.side, want.size, want.price, order)
        if size < max(self.config.min_size, self.lot) - 1e-12:
            side, level = self._order_level.get(order.client_order_id.value, (order.side, 0))
            self._cancel_level(side, level)
            return
        if self._crosses_own(order.side, want.price) or not self._take_action_token():
            return
        assert self.instrument is not None
        total = order.filled_qty.as_double() + size  # a modify sets the order's total quantity
        self.modifies += 1
        self.quote_updates += 1
        self.modify_order(order, Quantity(total, self.instrument.size_precision), Price(want.price, self.instrument.price_precision))

    # -- venue answers -------------------------------------------------------------------------

    def _forget(self, client_order_id) -> None:
        where = self._order_level.pop(client_order_id.value, None)
        if where is not None:
            side, level = where
            order = self._ladders[side][level]
            if order is not None and order.client_order_id == client_order_id:
                self._ladders[side][level] = None

    def _note_reject(self) -> None:
        self.rejects += 1
        now = self.clock.timestamp_ns()
        times = self._reject_times
        times.append(now)
        while times and times[0] <= now - _SECOND_NS:
            times.popleft()
        if len(times) >= self.config.max_rejects_per_s and now >= self.paused_until_ns:
            self.paused_until_ns = now + self.config.reject_backoff_ms * 1_000_000
            self.log.warning(f"{len(times)} rejects within 1 s: quoting paused for {self.config.reject_backoff_ms} ms")
            self.cancel_quotes()

    def on_order_rejected(self, event) -> None:
        self._forget(event.client_order_id)
        self._note_reject()

    def on_order_denied(self, event) -> None:
        self._forget(event.client_order_id)
        self._note_reject()

    def on_order_modify_rejected(self, event) -> None:
        # The resting order is unchanged but no longer what we want (often: the new price would
        # cross). Cancel it; the next decision quotes afresh. A modify that lost the race against a
        # fill ("already closed") is normal with live latency and is not a venue reject.
        order = self.cache.order(event.client_order_id)
        if order is not None and order.is_closed:
            self._forget(event.client_order_id)
            return
        where = self._order_level.get(event.client_order_id.value)
        if where is not None:
            self._cancel_level(*where)
        self._note_reject()

    def on_order_cancel_rejected(self, event) -> None:
        # Usually the order filled or was already cancelled while our cancel was in flight; the
        # order's own events settle its state, nothing to undo here.
        self._forget(event.client_order_id)

    def on_order_canceled(self, event) -> None:
        self._forget(event.client_order_id)

    def on_order_expired(self, event) -> None:
        self._forget(event.client_order_id)

    def on_order_filled(self, event) -> None:
        order = self.cache.order(event.client_order_id)
        if order is not None and order.is_closed:
            self._forget(event.client_order_id)
        self._check_kill()
