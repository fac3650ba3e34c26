"""Validation of a market-data stream, kept apart from the format parsers.

Parsers turn bytes into Nautilus objects; this module decides whether the result is sound. The
checks are the same for every format: sequence gaps (reported by the parser, which alone knows the
venue's sequence numbers), crossed or locked books after a complete batch (``F_LAST``),
non-monotonic timestamps, zero or negative prices, NaN or negative sizes.

Policy: by default the first problem stops the ingest with an ``IngestError`` naming file, line and
problem. With ``repair=True`` each problem is fixed in a documented way and written to the report:

- ``gap``: the book keeps going from its last state (a live client would re-snapshot; an offline
  file has no later snapshot); any crossing this causes is repaired by the next rule;
- ``crossed`` / ``locked``: the levels of the side that did *not* change in this batch and that
  cross the changed side are stale, so they are deleted (DELETE deltas appended to the batch);
- ``non_monotonic_ts``: the timestamp is clamped to the previous one;
- ``bad_price`` / ``bad_size``: the level or trade is dropped;
- ``garbage`` / ``truncated``: the unreadable line, or the unreadable tail of a file, is dropped.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta, TradeTick
from nautilus_trader.model.enums import BookAction, BookType, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from catalog.errors import IngestError

PROBLEM_KINDS = (
    "gap",
    "crossed",
    "locked",
    "non_monotonic_ts",
    "bad_price",
    "bad_size",
    "garbage",
    "truncated",
)

F_LAST = int(RecordFlag.F_LAST)
F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)


@dataclass
class Problem:
    """One problem found in the input and what was done about it."""

    kind: str
    file: str
    line: int
    detail: str
    action: str


@dataclass
class ValidationPolicy:
    """Strict (raise on the first problem) or repairing (fix, record, continue)."""

    repair: bool = False
    problems: list[Problem] = field(default_factory=list)

    def problem(self, kind: str, file: str | Path, line: int, detail: str, repair_action: str) -> None:
        """Record a problem; raises ``IngestError`` unless repairing."""
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        if not self.repair:
            raise IngestError(str(file), line, f"{kind}: {detail} (re-run with --repair to {repair_action})")
        self.problems.append(Problem(kind, str(file), line, detail, repair_action))

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def write_report(self, path: str | Path) -> None:
        """Write every problem and the action taken, as JSON, for a person to review."""
        payload = {"counts": self.counts(), "problems": [asdict(p) for p in self.problems]}
        Path(path).write_text(json.dumps(payload, indent=2))


class BookValidator:
    """Applies each complete batch to a Nautilus ``OrderBook`` and checks the book after it.

    Using Nautilus' own book means we validate exactly what the backtest engine will rebuild.
    An L3 (market-by-order) book may legitimately cross: during CME's pre-open auction orders rest
    on both sides of each other until the open uncrosses them. For L3 books crossings are counted
    (``crossed``) but are not a problem; for aggregated L2/L1 books they are.
    """

    def __init__(self, instrument_id: InstrumentId, policy: ValidationPolicy, book_type: BookType = BookType.L2_MBP) -> None:
        self.instrument_id = instrument_id
        self.policy = policy
        self.book = OrderBook(instrument_id, book_type)
        self.last_ts_init = 0
        self.crossed = 0
        self.batches = 0
        self.crossing_allowed = book_type == BookType.L3_MBO

    def check_timestamp(self, ts_init: int, file: str | Path, line: int) -> int:
        """Return a usable ``ts_init`` (clamped when repairing) for the next record."""
        if ts_init < self.last_ts_init:
            self.policy.problem(
                "non_monotonic_ts",
                file,
                line,
                f"ts_init {ts_init} is before the previous {self.last_ts_init}",
                "clamp it to the previous timestamp",
            )
            ts_init = self.last_ts_init
        self.last_ts_init = ts_init
        return ts_init

    def check_level(self, price: float, size: float, file: str | Path, line: int) -> bool:
        """True if a level can be applied; False if it must be dropped (repair mode)."""
        if not math.isfinite(price) or price <= 0:
            self.policy.problem("bad_price", file, line, f"price {price!r} is not positive", "drop the level")
            return False
        if not math.isfinite(size) or size < 0:
            self.policy.problem("bad_size", file, line, f"size {size!r} is NaN, infinite or negative", "drop the level")
            return False
        return True

    def apply_batch(self, deltas: list[OrderBookDelta], file: str | Path, line: int) -> list[OrderBookDelta]:
        """Apply one complete batch, check the book, and return the batch (with repair deletes, if any)."""
        for delta in deltas:
            self.book.apply_delta(delta)
        self.batches += 1
        bid = self.book.best_bid_price()
        ask = self.book.best_ask_price()
        if bid is None or ask is None or bid < ask:
            return deltas
        kind = "crossed" if bid > ask else "locked"
        self.crossed += 1
        if self.crossing_allowed:
            return deltas
        self.policy.problem(
            kind,
            file,
            line,
            f"best bid {bid} >= best ask {ask} after the batch ending here",
            "delete the stale crossing levels",
        )
        repairs = self._uncross(deltas)
        if not repairs:
            return deltas
        # Move F_LAST from the old tail to the new tail of the batch.
        last = deltas[-1]
        head = deltas[:-1] + [_with_flags(last, last.flags & ~F_LAST)]
        repairs[-1] = _with_flags(repairs[-1], repairs[-1].flags | F_LAST)
        return head + repairs

    def _uncross(self, deltas: list[OrderBookDelta]) -> list[OrderBookDelta]:
        touched_bid = any(d.order.side == OrderSide.BUY for d in deltas if d.action != BookAction.CLEAR)
        touched_ask = any(d.order.side == OrderSide.SELL for d in deltas if d.action != BookAction.CLEAR)
        # The side that did not move in this batch holds the stale levels; if both moved, trust bids
        # less than asks symmetrically by removing from the side whose best level is older: asks.
        stale_side = OrderSide.SELL if touched_bid and not touched_ask else OrderSide.BUY if touched_ask and not touched_bid else OrderSide.SELL
        template = deltas[-1]
        repairs: list[OrderBookDelta] = []
        while True:
            bid, ask = self.book.best_bid_price(), self.book.best_ask_price()
            if bid is None or ask is None or bid < ask:
                return repairs
            level = ask if stale_side == OrderSide.SELL else bid
            delete = OrderBookDelta(
                self.instrument_id,
                BookAction.DELETE,
                BookOrder(stale_side, level, Quantity.zero(template.order.size.precision), 0),
                0,
                template.sequence,
                template.ts_event,
                template.ts_init,
            )
            self.book.apply_delta(delete)
            repairs.append(delete)
            after = self.book.best_ask_price() if stale_side == OrderSide.SELL else self.book.best_bid_price()
            if after == level:  # the delete had no effect: stop rather than loop
                return repairs


def _with_flags(delta: OrderBookDelta, flags: int) -> OrderBookDelta:
    return OrderBookDelta(
        delta.instrument_id,
        delta.action,
        delta.order,
        flags,
        delta.sequence,
        delta.ts_event,
        delta.ts_init,
    )


def validate_deltas(
    deltas: list[OrderBookDelta],
    policy: ValidationPolicy,
    file: str | Path,
    book_type: BookType = BookType.L2_MBP,
) -> tuple[list[OrderBookDelta], int]:
    """Validate a whole delta stream from a Nautilus loader; returns (possibly repaired deltas, crossed count).

    Used by the formats read through NautilusTrader's own loaders (Tardis, Databento), where our
    parser never sees lines: the record index stands in for the line number. A stream whose last
    batch lacks ``F_LAST`` is validated as if it had it.
    """
    if not deltas:
        return [], 0
    validator = BookValidator(deltas[0].instrument_id, policy, book_type)
    out: list[OrderBookDelta] = []
    batch: list[OrderBookDelta] = []
    for index, delta in enumerate(deltas, start=1):
        ts_init = validator.check_timestamp(delta.ts_init, file, index)
        if delta.action in (BookAction.ADD, BookAction.UPDATE):
            if not validator.check_level(float(delta.order.price), float(delta.order.size), file, index):
                continue
        if ts_init != delta.ts_init:
            delta = OrderBookDelta(delta.instrument_id, delta.action, delta.order, delta.flags, delta.sequence, delta.ts_event, ts_init)
        batch.append(delta)
        if delta.flags & F_LAST:
            out.extend(validator.apply_batch(batch, file, index))
            batch = []
    if batch:
        out.extend(validator.apply_batch(batch, file, len(deltas)))
    return out, validator.crossed


def validate_trades(trades: list[TradeTick], policy: ValidationPolicy, file: str | Path) -> list[TradeTick]:
    """Drop (repair) or refuse (strict) trades with bad prices, sizes or timestamps."""
    out: list[TradeTick] = []
    last_ts = 0
    for index, trade in enumerate(trades, start=1):
        price, size = float(trade.price), float(trade.size)
        if not math.isfinite(price) or price <= 0:
            policy.problem("bad_price", file, index, f"trade price {price!r} is not positive", "drop the trade")
            continue
        if not math.isfinite(size) or size <= 0:
            policy.problem("bad_size", file, index, f"trade size {size!r} is not positive", "drop the trade")
            continue
        if trade.ts_init < last_ts:
            policy.problem("non_monotonic_ts", file, index, f"trade ts_init {trade.ts_init} before {last_ts}", "clamp it")
            trade = TradeTick(trade.instrument_id, trade.price, trade.size, trade.aggressor_side, trade.trade_id, trade.ts_event, last_ts)
        last_ts = trade.ts_init
        out.append(trade)
    return out


__all__ = [
    "F_LAST",
    "F_SNAPSHOT",
    "BookValidator",
    "Price",
    "Problem",
    "ValidationPolicy",
    "validate_deltas",
    "validate_trades",
]
