"""Queue-position bookkeeping for resting limit orders replayed against L2 (price-aggregated) data.

An L2 feed shows how much rests at a price, never where inside that queue an order sits. This module
keeps, for each of our resting orders, an estimate of the *market* quantity ahead of it and decides
how much of each trade reaches it. It knows nothing about NautilusTrader so that the same code is
driven by the backtest glue (``nautilus_model``) and by the exact-L3 validation (``l3_validation``):
what is validated is what runs.

Rules (the issue's, in order):

* On placement the order joins the back: ahead = displayed size at its price.
* A trade at the price consumes the queue front to back: first the market quantity ahead, then our
  own earlier orders at that price, and only the excess reaches the order. Our orders are part of
  one FIFO, so a trade's volume is handed out once and never fills two of our orders twice over.
* A trade *through* the price (a seller trading below our bid) would have hit us first: it fills
  our better-priced orders before any volume is counted at its own price.
* A decrease of the level that trades do not explain is a cancel; the share of it in front of the
  order is 0 (``risk_averse``), or f(front) / (f(front) + f(back)) with f(x) = x**n (``power``)
  or log(1 + x) (``log``). An increase always joins the back. Ahead never exceeds what is shown.
* A new price (or a larger size at the same price) sends the order to the back of the new queue.
"""

from __future__ import annotations

import math
from collections.abc import Callable, KeysView
from dataclasses import dataclass, field

BUY = 1
SELL = -1

FrontShare = Callable[[float, float], float]


def risk_averse_share(front: float, back: float) -> float:
    """Every cancel is assumed to come from behind: the most pessimistic queue position."""
    return 0.0


def power_share(n: float) -> FrontShare:
    """Cancels fall in front in proportion to front**n: n > 1 pushes them towards the longer side."""

    def share(front: float, back: float) -> float:
        f_front, f_back = max(front, 0.0) ** n, max(back, 0.0) ** n
        total = f_front + f_back
        return f_front / total if total > 0 else 0.0

    return share


def log_share(front: float, back: float) -> float:
    """Like ``power`` but flatter: large queues on one side do not dominate the split."""
    f_front, f_back = math.log1p(max(front, 0.0)), math.log1p(max(back, 0.0))
    total = f_front + f_back
    return f_front / total if total > 0 else 0.0


def make_share(model: str, n: float = 2.0) -> FrontShare:
    """The decrease-split function for a model name: ``risk_averse``, ``power`` or ``log``."""
    if model == "risk_averse":
        return risk_averse_share
    if model == "power":
        if n <= 0:
            raise ValueError(f"power model needs n > 0, got {n}")
        return power_share(n)
    if model == "log":
        return log_share
    raise ValueError(
        f"unknown queue model {model!r}: expected risk_averse, power or log"
    )


@dataclass
class QueuedOrder:
    """One of our orders: its remaining size and the market quantity estimated in front of it."""

    order_id: str
    side: int
    price: int
    remaining: float
    ahead: float


@dataclass
class Level:
    """Our orders resting at one (side, price) and the displayed market size they queue behind."""

    displayed: float
    orders: list[QueuedOrder] = field(default_factory=list)
    # Volume already traded here that the next depth decrease will repeat; it must not count as a cancel.
    traded_unseen: float = 0.0


class QueueBook:
    """Our resting orders across prices, with the queue rules of one decrease model."""

    def __init__(self, share: FrontShare) -> None:
        self._share = share
        self._levels: dict[tuple[int, int], Level] = {}
        self._orders: dict[str, QueuedOrder] = {}

    # -- orders -----------------------------------------------------------------------------------

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._orders

    def order(self, order_id: str) -> QueuedOrder | None:
        return self._orders.get(order_id)

    def orders(self) -> list[QueuedOrder]:
        return list(self._orders.values())

    def tracked_levels(self) -> list[tuple[int, int]]:
        return list(self._levels)

    def level_keys(self) -> KeysView[tuple[int, int]]:
        """A live, read-only view of the (side, price) levels we queue at (cheap membership tests)."""
        return self._levels.keys()

    def level(self, side: int, price: int) -> Level | None:
        return self._levels.get((side, price))

    def place(
        self, order_id: str, side: int, price: int, qty: float, displayed: float
    ) -> QueuedOrder:
        """Join the back of the queue at ``price`` (``displayed`` = market size shown there now)."""
        if order_id in self._orders:
            raise ValueError(f"order {order_id} is already queued")
        level = self._level(side, price, displayed)
        order = QueuedOrder(
            order_id, side, price, float(qty), max(float(displayed), 0.0)
        )
        level.orders.append(order)
        self._orders[order_id] = order
        return order

    def modify(
        self, order_id: str, price: int, qty: float, displayed: float
    ) -> QueuedOrder:
        """Apply an amendment: a new price or a larger size loses priority, a smaller size keeps it."""
        order = self._orders[order_id]
        if price == order.price and qty <= order.remaining:
            order.remaining = float(qty)
            return order
        self.remove(order_id)
        return self.place(order_id, order.side, price, qty, displayed)

    def remove(self, order_id: str) -> None:
        order = self._orders.pop(order_id, None)
        if order is None:
            return
        key = (order.side, order.price)
        level = self._levels[key]
        level.orders = [o for o in level.orders if o.order_id != order_id]
        if not level.orders:
            del self._levels[key]

    def set_remaining(self, order_id: str, remaining: float) -> None:
        """Align with the venue when something else (a cross, a user fill) changed the size."""
        if remaining <= 0:
            self.remove(order_id)
        else:
            self._orders[order_id].remaining = float(remaining)

    # -- market events ----------------------------------------------------------------------------

    def on_trade(self, price: int, size: float, aggressor: int) -> dict[str, float]:
        """Hand a trade's volume to our orders; ``aggressor`` is BUY or SELL (the taker's side).

        Returns the quantity each of our orders receives (removed from the book when complete).
        """
        passive = -aggressor
        volume = float(size)
        fills: dict[str, float] = {}
        # Better-priced orders of ours on the passive side are in front of the whole market at `price`.
        through = sorted(
            (
                key
                for key in self._levels
                if key[0] == passive and self._better(passive, key[1], price)
            ),
            key=lambda key: -passive * key[1],
        )
        for key in through:
            for order in list(self._levels[key].orders):
                if volume <= 0:
                    break
                take = min(order.remaining, volume)
                volume -= take
                self._fill(order, take, fills)
        level = self._levels.get((passive, price))
        if level is not None:
            self._trade_at_level(level, max(volume, 0.0), float(size), fills)
        return fills

    def on_depth(self, side: int, price: int, new_size: float) -> None:
        """The displayed market size at (side, price) is now ``new_size``."""
        level = self._levels.get((side, price))
        if level is None:
            return
        new_size = max(float(new_size), 0.0)
        decrease = level.displayed - new_size
        if decrease > 0:
            explained = min(decrease, level.traded_unseen)
            level.traded_unseen -= explained
            cancelled = decrease - explained
            if cancelled > 0:
                for order in level.orders:
                    order.ahead = self._after_cancel(
                        order.ahead, level.displayed, cancelled
                    )
        level.displayed = new_size
        self._clamp(level)

    def crossed(self, best_bid: int | None, best_ask: int | None) -> list[QueuedOrder]:
        """Our orders the opposite side has reached: a displayed ask at or below a buy, or vice versa."""
        hit = []
        for order in self._orders.values():
            if (
                order.side == BUY
                and best_ask is not None
                and best_ask <= order.price
                or order.side == SELL
                and best_bid is not None
                and best_bid >= order.price
            ):
                hit.append(order)
        return hit

    # -- internals --------------------------------------------------------------------------------

    def _level(self, side: int, price: int, displayed: float) -> Level:
        level = self._levels.get((side, price))
        if level is None:
            level = Level(displayed=max(float(displayed), 0.0))
            self._levels[(side, price)] = level
        return level

    @staticmethod
    def _better(side: int, price: int, reference: int) -> bool:
        return price > reference if side == BUY else price < reference

    def _trade_at_level(
        self, level: Level, volume: float, traded: float, fills: dict[str, float]
    ) -> None:
        ours_before = (
            0.0  # remaining size of our earlier orders here, before this trade
        )
        ours_filled = 0.0  # how much of the volume those earlier orders absorbed
        for order in list(level.orders):
            remaining = order.remaining
            reach = volume - order.ahead - ours_before
            order.ahead -= min(order.ahead, max(volume - ours_filled, 0.0))
            if reach > 0:
                take = min(remaining, reach)
                ours_filled += take
                self._fill(order, take, fills)
            ours_before += remaining
        # The data will show the whole recorded trade as a depth decrease later: it is no cancel.
        level.traded_unseen += min(traded, level.displayed)

    def _after_cancel(self, front: float, displayed: float, cancelled: float) -> float:
        back = max(displayed - front, 0.0)
        in_front = cancelled * self._share(front, back)
        behind = cancelled - in_front
        if (
            behind > back
        ):  # cannot cancel more behind than there is: the rest was in front
            in_front += behind - back
        return max(front - in_front, 0.0)

    @staticmethod
    def _clamp(level: Level) -> None:
        previous = 0.0
        for order in level.orders:
            # Ahead is market size, so it cannot exceed what is shown, and a later order of ours
            # cannot have less market in front of it than an earlier one.
            order.ahead = min(max(order.ahead, previous), level.displayed)
            previous = order.ahead

    def _fill(self, order: QueuedOrder, qty: float, fills: dict[str, float]) -> None:
        if qty <= 0:
            return
        fills[order.order_id] = fills.get(order.order_id, 0.0) + qty
        order.remaining -= qty
        if order.remaining <= 1e-12:
            self.remove(order.order_id)


def touch_share(front: float, back: float) -> float:
    """Placeholder for the queue-blind baseline, which never uses the split (see ``TouchBook``)."""
    return 1.0


class TouchBook(QueueBook):
    """Queue-blind baseline, like NautilusTrader's default: any trade at the price fills the order.

    Kept here only so the validation can score the default behaviour on the same footing.
    """

    def __init__(self) -> None:
        super().__init__(touch_share)

    def place(
        self, order_id: str, side: int, price: int, qty: float, displayed: float
    ) -> QueuedOrder:
        return super().place(order_id, side, price, qty, 0.0)

    def on_trade(self, price: int, size: float, aggressor: int) -> dict[str, float]:
        fills: dict[str, float] = {}
        for order in list(self.orders()):
            if order.side == -aggressor and (
                order.price == price or self._better(order.side, order.price, price)
            ):
                self._fill(order, order.remaining, fills)
        return fills

    def on_depth(self, side: int, price: int, new_size: float) -> None:
        return None
