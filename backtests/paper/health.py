"""The health view of a paper session: one log line and one JSON line per interval.

A paper session runs unattended for hours; the question "is it alive and sane?" needs an answer
without reading the order log: how old is the book (feed alive?), how many quotes rest (quoting or
stood down?), the position, PnL marked to mid, fills, and the decision latency over the last
interval. The JSON lines (``health.jsonl``) are for machines: tests and dashboards read them.

Strategy figures are read duck-typed (``decisions``, ``stale``, ``decision_costs_ns``...) so any
registry strategy works; the ones that lack an attribute get ``null``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, TextIO

import numpy as np
from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import InstrumentId

from backtests.paper.replay_client import REPLAY_TOPIC
from backtests.paper.report import FillLedger, fill_from_event


class HealthActorConfig(ActorConfig, frozen=True, kw_only=True):
    """``interval_s``: seconds between lines; ``json_path``: where the JSON lines go (None: log only)."""

    instrument_id: str
    interval_s: float = 5.0
    json_path: str | None = None
    multiplier: float = 1.0


class HealthActor(Actor):
    """Samples the session every ``interval_s`` on the node's clock; the last sample stays in ``last``."""

    def __init__(self, config: HealthActorConfig, strategy: Any = None) -> None:
        super().__init__(config)
        self.strategy = strategy
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.ledger = FillLedger(multiplier=config.multiplier)
        self.replay_status: dict[str, Any] | None = None
        self.last_book_ns = 0
        self.stale_episodes = 0
        self.last: dict[str, Any] | None = None
        self._was_stale = False
        self._costs_seen = 0
        self._file: TextIO | None = None

    def on_start(self) -> None:
        self.subscribe_order_book_deltas(self.instrument_id, BookType.L2_MBP)
        self.subscribe_order_fills(self.instrument_id)
        self.msgbus.subscribe(REPLAY_TOPIC, self._on_replay_status)
        if self.config.json_path:
            # Open for the actor's lifetime (closed in on_stop); line-buffered so readers see each line live.
            self._file = open(self.config.json_path, "a", buffering=1)  # noqa: SIM115
        self.clock.set_timer("cmm-health", timedelta(seconds=self.config.interval_s), callback=self._on_timer)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        self.last_book_ns = deltas.ts_init

    def on_order_filled(self, event: OrderFilled) -> None:
        self.ledger.add(fill_from_event(event))

    def _on_replay_status(self, status: dict[str, Any]) -> None:
        self.replay_status = status

    def _mid(self) -> float | None:
        book = self.cache.order_book(self.instrument_id)
        if book is None or book.best_bid_price() is None or book.best_ask_price() is None:
            return None
        return (book.best_bid_price().as_double() + book.best_ask_price().as_double()) / 2

    def _recent_latency(self) -> tuple[float | None, float | None]:
        costs = getattr(self.strategy, "decision_costs_ns", None)
        if not costs or len(costs) <= self._costs_seen:
            return None, None
        recent = np.asarray(costs[self._costs_seen :], dtype=np.float64) / 1000.0
        self._costs_seen = len(costs)
        return round(float(np.percentile(recent, 50)), 1), round(float(np.percentile(recent, 99)), 1)

    def sample(self) -> dict[str, Any]:
        """The current figures (also advances the latency window)."""
        now = self.clock.timestamp_ns()
        stale = getattr(self.strategy, "stale", None)
        if stale and not self._was_stale:
            self.stale_episodes += 1
        self._was_stale = bool(stale)
        pnl = self.ledger.pnl(self._mid())
        p50, p99 = self._recent_latency()
        record: dict[str, Any] = {
            "ts_ns": now,
            "book_age_ms": round((now - self.last_book_ns) / 1e6, 1) if self.last_book_ns else None,
            "quotes_live": self.cache.orders_open_count(instrument_id=self.instrument_id),
            "position": round(self.ledger.position, 12),
            "pnl_mid": None if pnl is None else round(pnl, 6),
            "fills": len(self.ledger.fills),
            "decisions": getattr(self.strategy, "decisions", None),
            "quote_updates": getattr(self.strategy, "quote_updates", None),
            "stale": stale,
            "stale_episodes": self.stale_episodes,
            "latency_p50_us": p50,
            "latency_p99_us": p99,
        }
        if self.replay_status is not None:
            record["market_s"] = round(self.replay_status["market_s"], 3)
            record["replay_lag_s"] = round(self.replay_status["lag_s"], 3)
            record["replay_state"] = self.replay_status["state"]
        self.last = record
        return record

    def _on_timer(self, event: Any) -> None:
        record = self.sample()
        self.log.info(format_line(record))
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")

    def on_stop(self) -> None:
        self.clock.cancel_timers()
        self._on_timer(None)
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def format_line(record: dict[str, Any]) -> str:
    """The human log line of one sample."""
    line = (
        f"HEALTH book_age={_fmt(record['book_age_ms'], '.0f')}ms quotes={record['quotes_live']} "
        f"pos={record['position']:g} pnl_mid={_fmt(record['pnl_mid'], '.4f')} fills={record['fills']} "
        f"decisions={_fmt(record['decisions'])} stale={_fmt(record['stale'])} "
        f"latency_p50={_fmt(record['latency_p50_us'])}us p99={_fmt(record['latency_p99_us'])}us"
    )
    if "market_s" in record:
        line += f" market={record['market_s']:.1f}s lag={record['replay_lag_s']:.2f}s"
    return line
