"""Order latency for the simulated venue: order-entry and response latency, fixed or replayed.

What NautilusTrader 1.221 offers: ``LatencyModel`` (configured through ``ImportableLatencyModelConfig``
with ``LatencyModelConfig``) delays each command by ``base + insert/update/cancel`` nanoseconds before
the venue sees it, read from C-level attributes on every command. There is no response latency:
acks and fills reach the strategy the instant the venue produces them.

Here:

* ``EntryResponseLatencyModel`` keeps the two latencies apart. Entry latency is what NautilusTrader
  applies (insert, modify and cancel reach the venue ``entry`` ns late, which is what decides queue
  position). Response latency is carried for reporting and for ``round_trip_ns`` but cannot be
  applied to venue events in 1.221 without intercepting the message bus: the strategy still hears
  about fills early, which remains optimistic.
* ``RecordedLatency`` reads a file of (ts, entry_ns[, response_ns]) rows (CSV or parquet) and answers
  the latency in force at a time (the last row at or before it).
* ``LatencyReplayModule`` swaps the venue's latency model at each data item to the recorded value,
  because the attributes NautilusTrader reads are fixed per model object.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from pathlib import Path

from nautilus_trader.backtest.config import SimulationModuleConfig
from nautilus_trader.backtest.models import LatencyModel
from nautilus_trader.backtest.modules import SimulationModule
from nautilus_trader.config import LatencyModelConfig
from nautilus_trader.core.data import Data


class EntryResponseLatencyConfig(LatencyModelConfig, frozen=True):
    """``entry_latency_nanos`` delays every command; ``response_latency_nanos`` is the way back."""

    base_latency_nanos: int = 0
    entry_latency_nanos: int = 0
    response_latency_nanos: int = 0


class EntryResponseLatencyModel(LatencyModel):
    """A latency model whose insert, update and cancel delays are one order-entry latency."""

    def __init__(self, config: EntryResponseLatencyConfig | None = None) -> None:
        config = config or EntryResponseLatencyConfig()
        if config.entry_latency_nanos < 0 or config.response_latency_nanos < 0:
            raise ValueError("latencies must be >= 0 ns")
        entry = config.base_latency_nanos + config.entry_latency_nanos
        super().__init__(
            base_latency_nanos=0,
            insert_latency_nanos=entry,
            update_latency_nanos=entry,
            cancel_latency_nanos=entry,
        )
        self.entry_latency_nanos = entry
        self.response_latency_nanos = config.response_latency_nanos

    @property
    def round_trip_ns(self) -> int:
        return self.entry_latency_nanos + self.response_latency_nanos


@dataclass(frozen=True)
class RecordedLatency:
    """Latencies measured over time; the value in force at ``ts`` is the last one recorded at or before it."""

    ts: list[int]
    entry_ns: list[int]
    response_ns: list[int]

    def __post_init__(self) -> None:
        if not self.ts:
            raise ValueError("a latency recording needs at least one row")
        if any(b < a for a, b in zip(self.ts, self.ts[1:], strict=False)):
            raise ValueError("latency recording timestamps must be sorted")
        if min(self.entry_ns) < 0 or min(self.response_ns) < 0:
            raise ValueError("recorded latencies must be >= 0 ns")

    def at(self, ts: int) -> tuple[int, int]:
        """(entry, response) in force at ``ts``; before the first row the first row applies."""
        i = max(bisect.bisect_right(self.ts, ts) - 1, 0)
        return self.entry_ns[i], self.response_ns[i]

    @classmethod
    def read(cls, path: str | Path) -> RecordedLatency:
        """Columns ``ts`` and ``entry_ns`` (or ``latency_ns``), optional ``response_ns`` (else = entry)."""
        path = Path(path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path).to_pydict()
            rows = [
                dict(zip(table, values, strict=True))
                for values in zip(*table.values(), strict=True)
            ]
        else:
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError(f"{path}: no latency rows")
        entry_key = "entry_ns" if "entry_ns" in rows[0] else "latency_ns"
        if "ts" not in rows[0] or entry_key not in rows[0]:
            raise ValueError(
                f"{path}: expected columns ts and entry_ns (or latency_ns), got {sorted(rows[0])}"
            )
        rows.sort(key=lambda r: int(r["ts"]))
        entry = [int(r[entry_key]) for r in rows]
        response = [
            int(r["response_ns"]) if r.get("response_ns") not in (None, "") else e
            for r, e in zip(rows, entry, strict=True)
        ]
        return cls([int(r["ts"]) for r in rows], entry, response)


class LatencyReplayConfig(SimulationModuleConfig, frozen=True):
    path: str


class LatencyReplayModule(SimulationModule):
    """Puts the recorded latency in force before the strategy sees each data item."""

    def __init__(self, config: LatencyReplayConfig) -> None:
        super().__init__(config)
        self.recording = RecordedLatency.read(config.path)
        self._current: tuple[int, int] | None = None

    def pre_process(self, data: Data) -> None:
        self.apply(data.ts_init)

    def apply(self, ts: int) -> None:
        """Install the latency in force at ``ts`` (a new model object only when the value changes)."""
        value = self.recording.at(ts)
        if value == self._current or self.exchange is None:
            return
        self._current = value
        entry, response = value
        self.exchange.set_latency_model(
            EntryResponseLatencyModel(
                EntryResponseLatencyConfig(
                    entry_latency_nanos=entry, response_latency_nanos=response
                )
            )
        )

    def process(self, ts_now: int) -> None:
        return None  # the latency is switched in pre_process, before the strategy reacts to data

    def log_diagnostics(self, logger) -> None:
        logger.info(
            f"LatencyReplayModule: {len(self.recording.ts)} recorded latencies, now {self._current}"
        )

    def reset(self) -> None:
        self._current = None
