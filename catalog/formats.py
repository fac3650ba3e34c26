"""The contract between the ingest command and the per-format readers.

A reader takes the input paths and options and returns an ``IngestResult``: instruments, deltas
(batched with ``F_LAST``, non-decreasing ``ts_init``) and trades, already validated. The ingest
command only writes what a reader returns, atomically; the format knowledge lives in the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument

from catalog.validation import ValidationPolicy


@dataclass
class IngestOptions:
    """What the user asked for on the command line."""

    instrument_id: InstrumentId | None = None
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)


@dataclass
class IngestResult:
    """Everything one ingest produces, before it is written."""

    instruments: list[Instrument]
    deltas: list[OrderBookDelta]
    trades: list[TradeTick]
    files: list[str]
    gaps: int = 0
    crossed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def instrument_id(self) -> str:
        ids = sorted({str(i.id) for i in self.instruments})
        return ids[0] if len(ids) == 1 else ",".join(ids)


Reader = Callable[[list[Path], IngestOptions], IngestResult]
