"""Score the L2 queue models against exact FIFO queues rebuilt from CME ES market-by-order data.

An MBO (L3) feed names every resting order, so the true position of a synthetic order dropped at
the back of a queue is known: it fills when the exchange fills an order that was *behind* it at its
price, trades through its price, or when an opposite order arrives at or through its price (that
order would have matched it). The same file, aggregated by price at each event boundary
(``F_LAST``), is what an L2 backtest sees; each model replays that view with ``QueueBook`` and its
predicted fill times are compared with the exact ones. Synthetic orders are scored one at a time
(one book each), so they never interact with each other.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn
import zstandard

from backtests.fill.queue import BUY, SELL, QueueBook, TouchBook, make_share

ES_MBO = Path(
    "nautilus_trader/tests/test_data/databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
)
F_LAST = 1 << 7
NS = 1_000_000_000

BookFactory = Callable[[], QueueBook]

# Model name -> factory of an empty book for that model. "touch" is NautilusTrader's queue-blind view.
VALIDATED_MODELS: dict[str, BookFactory] = {
    "touch": TouchBook,
    "risk_averse": lambda: QueueBook(make_share("risk_averse")),
    "power1": lambda: QueueBook(make_share("power", 1.0)),
    "power2": lambda: QueueBook(make_share("power", 2.0)),
    "power3": lambda: QueueBook(make_share("power", 3.0)),
    "log": lambda: QueueBook(make_share("log")),
}


@dataclass(frozen=True)
class Mbo:
    """The fields of one MBO record the experiment needs (prices in 1e-9 units)."""

    ts: int
    action: str
    side: int  # BUY, SELL or 0
    price: int
    size: int
    order_id: int
    flags: int


def _side(raw: object) -> int:
    value = str(getattr(raw, "value", raw))
    return BUY if value == "B" else SELL if value == "A" else 0


def load_mbo(path: Path) -> list[Mbo]:
    """Decode a (zstd) DBN MBO file into plain records, in file order."""
    decoder = databento_dbn.DBNDecoder()
    with open(path, "rb") as handle:
        decoder.write(zstandard.ZstdDecompressor().stream_reader(handle).read())
    records = []
    for rec in decoder.decode():
        if not hasattr(rec, "order_id"):
            continue  # metadata
        action = str(getattr(rec.action, "value", rec.action))
        records.append(
            Mbo(
                rec.ts_recv,
                action,
                _side(rec.side),
                rec.price,
                rec.size,
                rec.order_id,
                rec.flags,
            )
        )
    return records


class L3Book:
    """Exact order-by-order book; also serves the aggregated (L2) sizes the models see."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}  # order_id -> [side, price, size]
        self.levels: dict[tuple[int, int], int] = {}
        self.dirty: set[tuple[int, int]] = set()

    def _move(self, side: int, price: int, delta: int) -> None:
        key = (side, price)
        size = self.levels.get(key, 0) + delta
        if size > 0:
            self.levels[key] = size
        else:
            self.levels.pop(key, None)
        self.dirty.add(key)

    def apply(self, rec: Mbo) -> None:
        if rec.action == "R":
            for key in self.levels:
                self.dirty.add(key)
            self.orders.clear()
            self.levels.clear()
        elif rec.action == "A":
            self.orders[rec.order_id] = [rec.side, rec.price, rec.size]
            self._move(rec.side, rec.price, rec.size)
        elif rec.action == "C":
            order = self.orders.get(rec.order_id)
            if order is not None:
                gone = min(rec.size, order[2])
                self._move(order[0], order[1], -gone)
                order[2] -= gone
                if order[2] <= 0:
                    del self.orders[rec.order_id]
        elif rec.action == "M":
            order = self.orders.get(rec.order_id)
            if order is not None:
                self._move(order[0], order[1], -order[2])
            side = order[0] if order is not None else rec.side
            self.orders[rec.order_id] = [side, rec.price, rec.size]
            self._move(side, rec.price, rec.size)

    def size(self, side: int, price: int) -> int:
        return self.levels.get((side, price), 0)

    def best(self, side: int) -> int | None:
        prices = [p for (s, p) in self.levels if s == side]
        if not prices:
            return None
        return max(prices) if side == BUY else min(prices)


@dataclass
class Placement:
    """A synthetic passive order and its exact and per-model outcomes."""

    key: str
    ts: int
    side: int
    price: int
    qty: int
    ahead_ids: set[int]
    exact_filled: int = 0
    exact_ts: int | None = None
    books: dict[str, QueueBook] = field(default_factory=dict)
    model_ts: dict[str, int] = field(default_factory=dict)

    def better_or_equal(self, price: int) -> bool:
        """Whether an opposite order at ``price`` would have matched this one."""
        return price <= self.price if self.side == BUY else price >= self.price

    def worse(self, price: int) -> bool:
        """Whether a same-side price is behind this one (trading there trades through us)."""
        return price < self.price if self.side == BUY else price > self.price

    def exact_fill(self, qty: int, ts: int) -> None:
        if self.exact_ts is not None:
            return
        self.exact_filled += qty
        if self.exact_filled >= self.qty:
            self.exact_ts = ts


@dataclass(frozen=True)
class ModelScore:
    """How one model's predicted fills compare with the exact FIFO answer."""

    model: str
    orders: int
    exact_fills: int
    model_fills: int
    both: int
    fill_count_error_pct: float
    median_fill_time_error_ms: float | None
    agreement_pct: float
    censored_mae_s: float


@dataclass(frozen=True)
class ValidationResult:
    source: str
    every_s: float
    horizon_s: float
    depth: int
    scores: list[ModelScore]

    def closest(self) -> str:
        """The queue model nearest the exact answer: lowest censored mean absolute fill-time error."""
        return min(self.scores, key=lambda s: s.censored_mae_s).model


def _place(
    book: L3Book, ts: int, depth: int, models: dict[str, BookFactory], serial: int
) -> list[Placement]:
    """Orders at the best `depth` price levels on each side, joining the back of each queue."""
    placements = []
    for side in (BUY, SELL):
        prices = sorted(
            {p for (s, p) in book.levels if s == side}, reverse=side == BUY
        )[:depth]
        for level, price in enumerate(prices):
            ahead = {
                oid
                for oid, (s, p, _) in book.orders.items()
                if s == side and p == price
            }
            key = f"{serial}-{'B' if side == BUY else 'S'}{level}"
            placement = Placement(key, ts, side, price, 1, ahead)
            for name, factory in models.items():
                model_book = factory()
                model_book.place(key, side, price, 1, book.size(side, price))
                placement.books[name] = model_book
            placements.append(placement)
    return placements


def _exact_event(
    rec: Mbo, book: L3Book, active: list[Placement], aggressor_id: int
) -> None:
    """Exact FIFO consequences of one record (called before the record changes the book).

    ``aggressor_id`` is the order id of the last trade's taker: its own fill record says nothing
    about the resting queue (it may even still sit in the book at its old price before the modify).
    """
    if rec.action == "F":
        order = book.orders.get(rec.order_id)
        if rec.order_id == aggressor_id or order is None:
            return
        side, price = order[0], rec.price
        for p in active:
            if p.side != side:
                continue
            if (price == p.price and rec.order_id not in p.ahead_ids) or p.worse(price):
                p.exact_fill(rec.size, rec.ts)
    elif rec.action == "C":
        order = book.orders.get(rec.order_id)
        if order is not None and rec.size >= order[2]:
            for p in active:
                p.ahead_ids.discard(rec.order_id)
    elif rec.action in ("A", "M"):
        order = book.orders.get(rec.order_id)
        if (
            rec.action == "M"
            and order is not None
            and (rec.price != order[1] or rec.size > order[2])
        ):
            for p in active:
                p.ahead_ids.discard(
                    rec.order_id
                )  # lost priority: now behind any of ours
        side = order[0] if order is not None else rec.side
        for p in active:
            if side == -p.side and p.better_or_equal(rec.price):
                p.exact_fill(rec.size, rec.ts)


def _model_trade(rec: Mbo, active: list[Placement]) -> None:
    aggressor = rec.side
    if aggressor == 0:
        return  # auction prints have no aggressor and do not consume a queue front to back
    for p in active:
        if p.side != -aggressor or (rec.price != p.price and not p.worse(rec.price)):
            continue
        for name, model_book in p.books.items():
            if name in p.model_ts:
                continue
            model_book.on_trade(rec.price, rec.size, aggressor)
            if p.key not in model_book:
                p.model_ts[name] = rec.ts


def _model_boundary(ts: int, book: L3Book, active: list[Placement]) -> None:
    dirty = book.dirty
    best_bid, best_ask = book.best(BUY), book.best(SELL)
    for p in active:
        for name, model_book in p.books.items():
            if name in p.model_ts:
                continue
            if (p.side, p.price) in dirty:
                model_book.on_depth(p.side, p.price, book.size(p.side, p.price))
            if model_book.crossed(best_bid, best_ask):
                model_book.remove(p.key)
            if p.key not in model_book:
                p.model_ts[name] = ts
    dirty.clear()


def _score(name: str, placements: list[Placement], horizon_ns: int) -> ModelScore:
    exact = [p for p in placements if p.exact_ts is not None]
    model = [p for p in placements if name in p.model_ts]
    both = [p for p in placements if p.exact_ts is not None and name in p.model_ts]
    errors = [abs(p.model_ts[name] - p.exact_ts) / 1e6 for p in both]
    agree = sum(
        1 for p in placements if (p.exact_ts is not None) == (name in p.model_ts)
    )

    def censored(t: int | None, p: Placement) -> float:
        return min((t - p.ts) if t is not None else horizon_ns, horizon_ns) / NS

    mae = statistics.fmean(
        abs(censored(p.model_ts.get(name), p) - censored(p.exact_ts, p))
        for p in placements
    )
    return ModelScore(
        model=name,
        orders=len(placements),
        exact_fills=len(exact),
        model_fills=len(model),
        both=len(both),
        fill_count_error_pct=100.0 * (len(model) - len(exact)) / max(len(exact), 1),
        median_fill_time_error_ms=statistics.median(errors) if errors else None,
        agreement_pct=100.0 * agree / max(len(placements), 1),
        censored_mae_s=mae,
    )


def run_validation(
    path: Path,
    every_s: float = 15.0,
    horizon_s: float = 600.0,
    depth: int = 2,
    start_after_s: float = 10.0,
    models: dict[str, BookFactory] | None = None,
) -> ValidationResult:
    """Replay the MBO file once, placing synthetic orders every ``every_s`` seconds of the session.

    Placement starts ``start_after_s`` after the first trade (skipping the opening auction) and
    stops ``horizon_s`` before the data ends, so every order is watched for the full horizon.
    """
    models = models or VALIDATED_MODELS
    records = load_mbo(path)
    first_trade = next(r.ts for r in records if r.action == "T")
    next_place = first_trade + int(start_after_s * NS)
    last_place = records[-1].ts - int(horizon_s * NS)
    horizon_ns = int(horizon_s * NS)
    book = L3Book()
    placements: list[Placement] = []
    active: list[Placement] = []
    serial = 0
    aggressor_id = -1
    for rec in records:
        if rec.action == "T":
            aggressor_id = rec.order_id
        _exact_event(rec, book, active, aggressor_id)
        if rec.action == "T":
            _model_trade(rec, active)
        book.apply(rec)
        if not rec.flags & F_LAST:
            continue
        _model_boundary(rec.ts, book, active)
        active = [p for p in active if rec.ts - p.ts < horizon_ns]
        bid, ask = book.best(BUY), book.best(SELL)
        if (
            next_place <= rec.ts <= last_place
            and bid is not None
            and ask is not None
            and bid < ask
        ):
            new = _place(book, rec.ts, depth, models, serial)
            serial += 1
            placements.extend(new)
            active.extend(new)
            next_place = rec.ts + int(every_s * NS)
    for p in placements:  # outcomes after the horizon do not count
        if p.exact_ts is not None and p.exact_ts - p.ts >= horizon_ns:
            p.exact_ts = None
        for name in [n for n, t in p.model_ts.items() if t - p.ts >= horizon_ns]:
            del p.model_ts[name]
    scores = [_score(name, placements, horizon_ns) for name in models]
    return ValidationResult(str(path.name), every_s, horizon_s, depth, scores)


def format_table(result: ValidationResult) -> str:
    """The markdown table written into docs/fill-model.md."""
    lines = [
        (
            "| model | orders | exact fills | model fills | fill-count error | median fill-time error | "
            "fill/no-fill agreement | censored MAE |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = result.closest()
    for s in result.scores:
        median = (
            f"{s.median_fill_time_error_ms:.1f} ms"
            if s.median_fill_time_error_ms is not None
            else "n/a"
        )
        name = f"**{s.model}**" if s.model == best else s.model
        lines.append(
            f"| {name} | {s.orders} | {s.exact_fills} | {s.model_fills} | {s.fill_count_error_pct:+.1f}% | "
            f"{median} | {s.agreement_pct:.1f}% | {s.censored_mae_s:.1f} s |"
        )
    return "\n".join(lines)
