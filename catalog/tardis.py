"""Tardis.dev CSV files into Nautilus deltas and trades.

Owns: recognising a Tardis CSV by its header (``incremental_book_L2``, ``book_snapshot_N``,
``trades``, optionally gzipped); a row pre-scan that keeps unreadable or impossible rows away from
NautilusTrader's ``TardisCSVDataLoader`` (in 1.221 a negative amount makes it *abort the process*
from Rust, a NaN trade price becomes 1.7e13 and zero-size trades or non-positive delta prices
vanish silently); loading deltas and trades through that loader; and our own parser for book
snapshots, because the loader's ``load_depth10`` keeps at most 10 of 25 levels and yields
``OrderBookDepth10`` rather than deltas.

Book snapshots become deltas through ``LevelBook``: the first row of a file is a snapshot batch
(CLEAR + ADDs, ``F_SNAPSHOT``), each later row a batch of the level changes against the previous
row (DELETE / UPDATE / ADD) within the N-level view. That keeps the book exact at every row
while writing far fewer deltas than a full CLEAR + ADDs per row, and the book is never empty in
the middle of the data. The Databento (MBP-1/MBP-10) and LOBSTER readers reuse it.

The delta plumbing shared with the other readers (``LevelBook``, ``DeltaStream``,
``validate_and_merge``) lives in ``catalog.streams``.

Must not: write catalogs (the ingest command does), decide what is sound (``validation`` does,
except for rows the loader cannot be trusted with), or use the network.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from nautilus_trader.adapters.tardis.loaders import TardisCSVDataLoader
from nautilus_trader.core import nautilus_pyo3
from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.enums import BookAction
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.instruments import generic_instrument
from catalog.streams import DeltaStream, LevelBook, Merged, TradeStream, clear_delta, close_last_batch, data_precisions, first_ts, reflag, split_batches, validate_and_merge
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy

_COMMON = ["exchange", "symbol", "timestamp", "local_timestamp"]
_INCREMENTAL = [*_COMMON, "is_snapshot", "side", "price", "amount"]
_TRADES = [*_COMMON, "id", "side", "price", "amount"]
_SNAPSHOT_COLUMN = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
_LINE_IN_ERROR = re.compile(r"line: (\d+)")


@dataclass
class TardisFile:
    """A Tardis CSV and what its header says it holds."""

    path: Path
    kind: str  # "incremental_book_L2" | "book_snapshot" | "trades"
    header: list[str]
    levels: int = 0


def sniff_tardis(path: Path) -> TardisFile:
    """Recognise a Tardis CSV by its header; anything else is refused with the header quoted.

    The header is the only reliable tell: the loader happily reads an ``incremental_book_L2``
    file as trades (same column count), which would silently produce nonsense.
    """
    if not path.is_file():
        raise IngestError(str(path), 0, "file not found")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            first = fh.readline(1 << 16).decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise IngestError(str(path), 1, f"unreadable as a Tardis CSV: {exc}") from exc
    header = [c.strip() for c in first.strip().split(",")]
    if header == _INCREMENTAL:
        return TardisFile(path, "incremental_book_L2", header)
    if header == _TRADES:
        return TardisFile(path, "trades", header)
    if header[:4] == _COMMON and len(header) > 4:
        matches = [_SNAPSHOT_COLUMN.match(c) for c in header[4:]]
        if all(matches) and len(matches) % 4 == 0:
            levels = len(matches) // 4
            expected = [f"{s}[{i}].{f}" for i in range(levels) for s in ("asks", "bids") for f in ("price", "amount")]
            if header[4:] == expected:
                return TardisFile(path, "book_snapshot", header, levels)
    shown = ",".join(header)[:200]
    raise IngestError(
        str(path),
        1,
        f"not a Tardis incremental_book_L2, book_snapshot_N or trades CSV (header: {shown!r})",
    )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise IngestError(str(path), 0, f"unreadable: {exc}") from exc


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class _Scan:
    """Rows of a Tardis file that the loader may see, with their line numbers."""

    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    dropped: int = 0


def _scan_rows(tf: TardisFile, policy: ValidationPolicy) -> _Scan:
    """Check every row before the loader sees it; report bad rows through the policy.

    Garbage (wrong field count, unparsable numbers or flags) and, for the loader's sake, values
    it mishandles (NaN, non-positive prices, negative sizes, zero-size trades) are reported here;
    in repair mode the row is dropped.
    """
    file = str(tf.path)
    scan = _Scan()
    data = _read_bytes(tf.path)
    cut_last = bool(data) and not data.endswith(b"\n")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IngestError(file, line, f"garbage: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        next(reader, None)
        rows = list(enumerate(reader, start=2))
    except csv.Error as exc:
        raise IngestError(file, reader.line_num, f"garbage: unreadable as CSV: {exc}") from exc
    last_line = rows[-1][0] if rows else 0
    for line, row in rows:
        if not row:
            continue  # blank lines carry nothing and the loader skips them too
        problem = _row_problem(tf, row)
        if problem is not None:
            kind, detail = problem
            if kind == "garbage" and line == last_line and cut_last:
                kind, detail = "truncated", f"last line is cut short ({detail})"
            policy.problem(kind, file, line, detail, "drop the line")
            scan.dropped += 1
            continue
        scan.rows.append(row)
        scan.lines.append(line)
    return scan


def _row_problem(tf: TardisFile, row: list[str]) -> tuple[str, str] | None:
    if len(row) != len(tf.header):
        return "garbage", f"{len(row)} fields where the header has {len(tf.header)}"
    if not (row[2].isdigit() and row[3].isdigit()):
        return "garbage", f"timestamps {row[2]!r}, {row[3]!r} are not integer microseconds"
    if tf.kind == "book_snapshot":
        for i in range(4, len(row), 2):
            price, amount = row[i], row[i + 1]
            if price == "" and amount == "":
                continue
            p, a = _number(price), _number(amount)
            if p is None or a is None:
                return "garbage", f"level {tf.header[i]}={price!r}, amount={amount!r} is not numeric"
            if not p > 0 or p == float("inf"):
                return "bad_price", f"{tf.header[i]} {price!r} is not a positive price"
            if not a >= 0 or a == float("inf"):
                return "bad_size", f"{tf.header[i + 1]} {amount!r} is NaN, infinite or negative"
        return None
    side, price, amount = row[5], _number(row[6]), _number(row[7])
    if tf.kind == "incremental_book_L2":
        if row[4] not in ("true", "false"):
            return "garbage", f"is_snapshot {row[4]!r} is not true/false"
        if side not in ("bid", "ask"):
            return "garbage", f"side {side!r} is not bid/ask"
    elif side not in ("buy", "sell", "unknown"):
        return "garbage", f"side {side!r} is not buy/sell/unknown"
    if price is None or amount is None:
        return "garbage", f"price {row[6]!r} or amount {row[7]!r} is not numeric"
    if not price > 0 or price == float("inf"):
        return "bad_price", f"price {row[6]!r} is not positive"
    if not amount >= 0 or amount == float("inf") or (tf.kind == "trades" and amount == 0):
        return "bad_size", f"amount {row[7]!r} is not a valid size"
    return None


def _clean_copy(tf: TardisFile, scan: _Scan, tmp: Path) -> Path:
    """The file itself when every row passed; else a copy with only the rows that did."""
    if scan.dropped == 0:
        return tf.path
    out = tmp / f"{len(list(tmp.iterdir()))}_{tf.path.name.removesuffix('.gz')}"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(tf.header)
        writer.writerows(scan.rows)
    return out


def _loader_error(tf: TardisFile, scan: _Scan, exc: Exception) -> IngestError:
    """Map a loader failure on a (cleaned) file back to the line of the original file."""
    match = _LINE_IN_ERROR.search(str(exc))
    line = 0
    if match:
        index = int(match.group(1)) - 2  # loader lines count the header
        line = scan.lines[index] if 0 <= index < len(scan.lines) else int(match.group(1))
    return IngestError(str(tf.path), line, f"garbage: NautilusTrader's Tardis loader cannot read it: {str(exc).splitlines()[0]}")


def _mark_snapshots(tf: TardisFile, scan: _Scan, deltas: list[OrderBookDelta]) -> list[OrderBookDelta]:
    """Flag ``is_snapshot`` rows ``F_SNAPSHOT`` and open each snapshot run with a CLEAR.

    Tardis starts every file (and every reconnect) with a full snapshot that replaces the book; the
    1.221 loader emits neither the CLEAR nor the flag, so a second day's snapshot would pile onto
    the first day's stale levels. If a later loader emits CLEARs itself, its output is kept.
    """
    if any(d.action == BookAction.CLEAR for d in deltas):
        return deltas
    if len(deltas) != len(scan.rows):
        raise IngestError(
            str(tf.path), 0, f"NautilusTrader's Tardis loader returned {len(deltas)} deltas for {len(scan.rows)} rows; cannot align is_snapshot"
        )
    out: list[OrderBookDelta] = []
    previous_snapshot = False
    for delta, row in zip(deltas, scan.rows):
        is_snapshot = row[4] == "true"
        if is_snapshot and not previous_snapshot:
            if out and not out[-1].flags & F_LAST:
                out[-1] = reflag(out[-1], out[-1].flags | F_LAST)
            out.append(clear_delta(delta.instrument_id, delta.sequence, delta.ts_event, delta.ts_init))
        out.append(reflag(delta, delta.flags | F_SNAPSHOT) if is_snapshot else delta)
        previous_snapshot = is_snapshot
    return out


def _decimals(text: str) -> int:
    if "e" in text or "E" in text:
        exponent = Decimal(text).normalize().as_tuple().exponent
        return max(0, -int(exponent))
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


def _units(text: str, precision: int) -> int:
    """``"11657.07"`` at precision 2 -> ``1165707``, exactly (no float rounding)."""
    try:
        value = Decimal(text).scaleb(precision)
    except InvalidOperation as exc:  # pragma: no cover - the scan rejected non-numbers
        raise ValueError(text) from exc
    return int(value)


def _row_instrument(row: list[str], options: IngestOptions) -> InstrumentId:
    """Nautilus' Tardis naming (``BTCUSDT.BINANCE``), so our snapshots match the loader's deltas and trades."""
    if options.instrument_id is not None:
        return options.instrument_id
    venue = nautilus_pyo3.tardis_exchange_to_venue_str(row[0])
    return InstrumentId.from_str(f"{row[1].upper()}.{venue}")


def _value_columns(tf: TardisFile) -> list[tuple[int, int]]:
    """(price column, amount column) pairs of a file."""
    if tf.kind == "book_snapshot":
        return [(i, i + 1) for i in range(4, len(tf.header), 2)]
    return [(6, 7)]


def _precisions(scans: list[tuple[TardisFile, _Scan]], options: IngestOptions) -> dict[str, tuple[int, int]]:
    """Price and size decimals per instrument over *all* files.

    The loader would infer them per file; one instrument must have one precision in the catalog,
    so we infer once and pass it to every load.
    """
    out: dict[str, list[int]] = {}
    for tf, scan in scans:
        columns = _value_columns(tf)
        for row in scan.rows:
            pp_sp = out.setdefault(_row_instrument(row, options).value, [0, 0])
            for price, amount in columns:
                if row[price]:
                    pp_sp[0] = max(pp_sp[0], _decimals(row[price]))
                    pp_sp[1] = max(pp_sp[1], _decimals(row[amount]))
    return {iid: (pp, sp) for iid, (pp, sp) in out.items()}


def _read_snapshots(tf: TardisFile, scan: _Scan, options: IngestOptions, precisions: dict[str, tuple[int, int]]) -> list[DeltaStream]:
    """Our parser for ``book_snapshot_N`` rows: every level kept, one ``LevelBook`` per instrument."""
    books: dict[str, LevelBook] = {}
    streams: dict[str, list[OrderBookDelta]] = {}
    for row, line in zip(scan.rows, scan.lines):
        iid = _row_instrument(row, options)
        book = books.get(iid.value)
        if book is None:
            book = books[iid.value] = LevelBook(iid, *precisions[iid.value])
            streams[iid.value] = []
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for price, amount in _value_columns(tf):
            if not row[price]:
                continue
            size = _units(row[amount], book.size_precision)
            if size > 0:
                levels = asks if tf.header[price].startswith("asks") else bids
                levels[_units(row[price], book.price_precision)] = size
        ts_event, ts_init = int(row[2]) * 1000, int(row[3]) * 1000
        streams[iid.value].extend(book.update(bids, asks, ts_event, ts_init, sequence=line))
    return [DeltaStream(str(tf.path), books[iid].instrument_id, deltas) for iid, deltas in streams.items()]


def _by_instrument(file: str, deltas: list[OrderBookDelta]) -> list[DeltaStream]:
    """Split one file's deltas per instrument (a Tardis file may hold several symbols)."""
    groups: dict[str, list[OrderBookDelta]] = {}
    for delta in deltas:
        groups.setdefault(delta.instrument_id.value, []).append(delta)
    return [DeltaStream(file, InstrumentId.from_str(iid), group) for iid, group in groups.items()]


def _iter_loaded(files: list[TardisFile], options: IngestOptions, tmp: Path) -> Iterator[tuple[TardisFile, list[DeltaStream], list[TradeTick]]]:
    scans = [(tf, _scan_rows(tf, options.policy)) for tf in files]
    precisions = _precisions(scans, options)
    for tf, scan in scans:
        if tf.kind == "book_snapshot":
            yield tf, _read_snapshots(tf, scan, options, precisions), []
            continue
        if not scan.rows:
            yield tf, [], []
            continue
        in_file = {_row_instrument(row, options).value for row in scan.rows}
        loader = TardisCSVDataLoader(
            price_precision=max(precisions[i][0] for i in in_file),
            size_precision=max(precisions[i][1] for i in in_file),
            instrument_id=options.instrument_id,
        )
        source = _clean_copy(tf, scan, tmp)
        try:
            if tf.kind == "trades":
                trades = loader.load_trades(source)
                deltas: list[OrderBookDelta] = []
            else:
                trades, deltas = [], _mark_snapshots(tf, scan, loader.load_deltas(source))
        except ValueError as exc:
            raise _loader_error(tf, scan, exc) from exc
        yield tf, _by_instrument(str(tf.path), deltas), trades


def read_tardis(paths: list[Path], options: IngestOptions) -> IngestResult:
    """Read Tardis CSVs (kinds recognised per file), validate each file's book, merge by ``ts_init``.

    Instruments are ``generic_instrument``s with the precisions found in the data; Tardis carries
    no instrument definitions. With ``options.instrument_id`` every record is given that id.
    """
    files = [sniff_tardis(Path(p)) for p in paths]
    delta_streams: list[DeltaStream] = []
    trade_streams: list[TradeStream] = []
    with tempfile.TemporaryDirectory(prefix="cmm-tardis-") as tmp:
        for tf, streams, trades in _iter_loaded(files, options, Path(tmp)):
            delta_streams.extend(streams)
            if trades:
                trade_streams.append(TradeStream(str(tf.path), trades))
    merged = validate_and_merge(delta_streams, trade_streams, options.policy)
    instruments: list[Instrument] = []
    starts = first_ts(merged.deltas, merged.trades)
    for iid, (pp, sp) in sorted(data_precisions(merged.deltas, merged.trades).items()):
        instruments.append(generic_instrument(InstrumentId.from_str(iid), pp, sp, ts=starts[iid]))
    return IngestResult(
        instruments=instruments,
        deltas=merged.deltas,
        trades=merged.trades,
        files=[str(p) for p in paths],
        crossed=merged.crossed,
        extra={
            "kinds": {str(tf.path): tf.kind + (f"_{tf.levels}" if tf.levels else "") for tf in files},
            "book_type": "L2_MBP",
            "duplicate_trades": merged.duplicate_trades,
        },
    )


__all__ = [
    "DeltaStream",
    "LevelBook",
    "Merged",
    "TardisFile",
    "TradeStream",
    "clear_delta",
    "close_last_batch",
    "data_precisions",
    "first_ts",
    "read_tardis",
    "reflag",
    "sniff_tardis",
    "split_batches",
    "validate_and_merge",
]
