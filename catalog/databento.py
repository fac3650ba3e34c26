"""Databento DBN files (CME futures) into Nautilus instruments, deltas and trades.

Owns: recognising a DBN file by the schema in its metadata; checking that the file is whole
(NautilusTrader's ``DatabentoDataLoader`` in 1.221 returns the readable prefix of a truncated
``.dbn.zst`` without a word, and reads only zstd-compressed DBN); loading records through that
loader; turning what it yields into deltas and trades:

- ``mbo`` -> L3 deltas (validated as ``L3_MBO``) and trades. Fill records are dropped: in
  Databento MBO a Fill does not change the book (the Cancel/Modify after it does), but the loader
  maps it to an UPDATE that sets the resting order's size to the *fill* size until that next
  record. Each snapshot run is opened with a CLEAR and closed with ``F_LAST``.
- ``mbp-1`` / ``tbbo`` -> top-of-book deltas through ``LevelBook`` (one level per side) + trades.
- ``mbp-10`` -> 10-level deltas through ``LevelBook``.
- ``trades`` -> trades; ``definition`` -> instruments.

Instrument ids are the loader's (``ESH4.GLBX``). Instruments come from definition files given
with the data; an ES or NQ contract without one gets a ``FuturesContract`` built from the CME
contract specs (``futures_contract``).

Must not: write catalogs, judge book soundness (``validation`` does), or use the network.
"""

from __future__ import annotations

import calendar
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import databento_dbn
import zstandard
from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import OrderBookDelta, OrderBookDepth10, QuoteTick, TradeTick
from nautilus_trader.model.enums import AssetClass, BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, Symbol
from nautilus_trader.model.instruments import FuturesContract, Instrument
from nautilus_trader.model.objects import Price, Quantity

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.streams import (
    DeltaStream,
    LevelBook,
    TradeStream,
    clear_delta,
    first_ts,
    reflag,
    validate_and_merge,
)
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DBN_MAGIC = b"DBN"
_CHUNK = 1 << 22

DATA_SCHEMAS = ("mbo", "mbp-1", "tbbo", "mbp-10", "trades")


@dataclass
class DbnFile:
    """A DBN file after the integrity pass: its schema, record count, and MBO actions if any."""

    path: Path
    schema: str
    records: int
    complete: bool
    compressed: bool
    mbo_actions: bytes = b""  # one byte per MBO record ('A', 'C', 'M', 'F', 'T', 'R', 'N')


def _action_byte(action: object) -> int:
    value = getattr(action, "value", action)
    return ord(str(value)[0])


def scan_dbn(path: Path) -> DbnFile:
    """Decode a DBN file once, streaming, to learn its schema and whether it is whole.

    The loader cannot be asked this: on a truncated file it returns what it could read. We count
    complete records, and a zstd frame that never ends or bytes left in the decoder mean the file
    is cut. Only the action byte of each MBO record is kept (to find Fill records), not the
    records, so memory stays small.
    """
    file = str(path)
    if not path.is_file():
        raise IngestError(file, 0, "file not found")
    decoder = databento_dbn.DBNDecoder()
    metadata = None
    records = 0
    actions = bytearray()

    def feed(data: bytes) -> None:
        nonlocal metadata, records
        if not data:
            return
        decoder.write(data)
        for record in decoder.decode():
            if isinstance(record, databento_dbn.Metadata):
                metadata = record
                continue
            records += 1
            if isinstance(record, databento_dbn.MBOMsg):
                actions.append(_action_byte(record.action))

    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        compressed = head == _ZSTD_MAGIC
        if not compressed and not head.startswith(_DBN_MAGIC):
            raise IngestError(file, 0, "not a DBN file (neither zstd-compressed nor starting with 'DBN')")
        frame_open = False
        try:
            if compressed:
                dobj = zstandard.ZstdDecompressor().decompressobj()
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    while chunk:
                        frame_open = True
                        feed(dobj.decompress(chunk))
                        if dobj.eof:
                            chunk = dobj.unused_data
                            dobj = zstandard.ZstdDecompressor().decompressobj()
                            frame_open = False
                        else:
                            chunk = b""
            else:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    feed(chunk)
        except (zstandard.ZstdError, databento_dbn.DBNError, ValueError) as exc:
            raise IngestError(file, records + 1, f"garbage: cannot decode DBN at or after record {records + 1}: {exc}") from exc
    if metadata is None:
        raise IngestError(file, 0, "truncated: the DBN metadata header is incomplete")
    complete = not frame_open and len(decoder.buffer()) == 0
    schema = "" if metadata.schema is None else str(getattr(metadata.schema, "value", metadata.schema))
    if not schema:
        raise IngestError(file, 0, "DBN files with mixed schemas are not supported; split it by schema")
    return DbnFile(path, schema, records, complete, compressed, bytes(actions))


def _loader_path(dbn: DbnFile, tmp: Path) -> Path:
    """The loader reads zstd-compressed DBN only; compress an uncompressed file into ``tmp``."""
    if dbn.compressed:
        return dbn.path
    out = tmp / f"{len(list(tmp.iterdir()))}_{dbn.path.name}.zst"
    with open(dbn.path, "rb") as src, open(out, "wb") as dst:
        zstandard.ZstdCompressor().copy_stream(src, dst)
    return out


# --- Instruments ----------------------------------------------------------------------------

# CME contract specs for the roots we hold data for: (tick, multiplier). Static venue facts.
CME_SPECS: dict[str, tuple[str, int]] = {"ES": ("0.25", 50), "NQ": ("0.25", 20)}
_MONTH_CODES = "FGHJKMNQUVXZ"
_FUTURE_SYMBOL = re.compile(r"^(?P<root>[A-Z0-9]{1,3}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})$")
_NEW_YORK = ZoneInfo("America/New_York")


def _third_friday_0930_ny_ns(year: int, month: int) -> int:
    """CME equity index futures expire at 09:30 New York time on the third Friday of the month."""
    fridays = [d for d in calendar.Calendar().itermonthdates(year, month) if d.month == month and d.weekday() == 4]
    moment = datetime.combine(fridays[2], time(9, 30), tzinfo=_NEW_YORK)
    return int(moment.timestamp()) * 1_000_000_000


def futures_contract(instrument_id: InstrumentId, data_ts: int) -> FuturesContract:
    """A CME quarterly equity index future (ES, NQ) when no Databento definition was given.

    The year digit is resolved to the first year not before the data. Activation is the expiry 27
    months earlier, which is how CME lists these quarterlies (ESU4's definition: activation
    2022-06-17, expiration 2024-09-20).
    """
    symbol = instrument_id.symbol.value
    match = _FUTURE_SYMBOL.match(symbol)
    spec = CME_SPECS.get(match.group("root")) if match else None
    if match is None or spec is None:
        raise ValueError(f"no instrument definition for {instrument_id}: add its Databento definition file (schema 'definition') to the paths")
    data_year = datetime.fromtimestamp(data_ts / 1e9, tz=_NEW_YORK).year if data_ts else date.today().year
    digits = match.group("year")
    modulus = 10 ** len(digits)
    year = data_year - data_year % modulus + int(digits)
    if year < data_year:
        year += modulus
    month = _MONTH_CODES.index(match.group("month")) + 1
    act_year, act_month = divmod(year * 12 + month - 1 - 27, 12)
    tick, multiplier = spec
    return FuturesContract(
        instrument_id=instrument_id,
        raw_symbol=Symbol(symbol),
        asset_class=AssetClass.INDEX,
        currency=USD,
        price_precision=2,
        price_increment=Price.from_str(tick),
        multiplier=Quantity.from_int(multiplier),
        lot_size=Quantity.from_int(1),
        underlying=match.group("root"),
        activation_ns=_third_friday_0930_ny_ns(act_year, act_month + 1),
        expiration_ns=_third_friday_0930_ny_ns(year, month),
        ts_event=data_ts,
        ts_init=data_ts,
        exchange="XCME",
        info={"source": "cmm CME_SPECS fallback (no Databento definition given)"},
    )


def _with_id(instrument: Instrument, instrument_id: InstrumentId) -> Instrument:
    """A definition renamed to the id the user asked for (``--instrument-id``)."""
    values = type(instrument).to_dict(instrument)
    values["id"] = instrument_id.value
    return type(instrument).from_dict(values)


def _instruments(
    definitions: list[Instrument],
    used: dict[str, int],
    sources: dict[str, str],
    options: IngestOptions,
) -> list[Instrument]:
    """A definition for each instrument the data uses; all definitions when there is no data.

    ``used`` maps each instrument id in the data to its first ``ts_init``; ``sources`` to a file
    holding it, named in the error when neither a definition nor a fallback spec exists.
    """
    by_id = {d.id.value: d for d in definitions}
    by_symbol = {d.raw_symbol.value: d for d in definitions}
    if not used:
        return sorted(by_id.values(), key=lambda i: i.id.value)
    out: list[Instrument] = []
    for iid, ts in sorted(used.items()):
        symbol = InstrumentId.from_str(iid).symbol.value
        if iid in by_id:
            out.append(by_id[iid])
        elif symbol in by_symbol:
            out.append(_with_id(by_symbol[symbol], InstrumentId.from_str(iid)))
        elif options.instrument_id is not None and len(by_id) == 1:
            out.append(_with_id(next(iter(by_id.values())), options.instrument_id))
        else:
            try:
                out.append(futures_contract(InstrumentId.from_str(iid), ts))
            except ValueError as exc:
                raise IngestError(sources.get(iid, ""), 0, str(exc)) from exc
    return out


# --- Records into streams -------------------------------------------------------------------


def _drop_fills(dbn: DbnFile, deltas: list[OrderBookDelta]) -> tuple[list[OrderBookDelta], int]:
    """Remove the UPDATEs the loader makes of Fill records (see the module docstring).

    Deltas are aligned with the file's non-Trade MBO records; if the counts disagree (a different
    loader version) the loader's output is kept unchanged rather than guessed at.
    """
    actions = bytes(a for a in dbn.mbo_actions if a != ord("T"))
    if len(actions) != len(deltas):
        return deltas, 0
    out: list[OrderBookDelta] = []
    dropped = 0
    for action, delta in zip(actions, deltas):
        if action != ord("F"):
            out.append(delta)
            continue
        dropped += 1
        if delta.flags & F_LAST and out and not out[-1].flags & F_LAST:
            out[-1] = reflag(out[-1], out[-1].flags | F_LAST)
    return out, dropped


def _frame_snapshots(deltas: list[OrderBookDelta]) -> list[OrderBookDelta]:
    """Open each ``F_SNAPSHOT`` run with a CLEAR (unless it has one) and end it with ``F_LAST``.

    Databento's MBO snapshot replaces the book, but the loader emits no CLEAR for it and the
    snapshot's last record carries no ``F_LAST`` in this file, so it would be batched with the
    first live event hours later.
    """
    out: list[OrderBookDelta] = []
    in_snapshot = False
    for delta in deltas:
        is_snapshot = bool(delta.flags & F_SNAPSHOT)
        if in_snapshot and not is_snapshot and out and not out[-1].flags & F_LAST:
            out[-1] = reflag(out[-1], out[-1].flags | F_LAST)
        if is_snapshot and not in_snapshot and delta.action != BookAction.CLEAR:
            if out and not out[-1].flags & F_LAST:
                out[-1] = reflag(out[-1], out[-1].flags | F_LAST)
            out.append(clear_delta(delta.instrument_id, delta.sequence, delta.ts_event, delta.ts_init))
        out.append(delta)
        in_snapshot = is_snapshot
    return out


def _group(file: str, deltas: list[OrderBookDelta], book_type: BookType) -> list[DeltaStream]:
    groups: dict[str, list[OrderBookDelta]] = {}
    for delta in deltas:
        groups.setdefault(delta.instrument_id.value, []).append(delta)
    return [DeltaStream(file, InstrumentId.from_str(i), g, book_type) for i, g in groups.items()]


def _units(value: Price | Quantity, precision: int) -> int:
    return round(float(value) * 10**precision)


def _quotes_to_deltas(quotes: list[QuoteTick]) -> list[OrderBookDelta]:
    """Top of book as deltas: a snapshot first, then a batch whenever the top changes."""
    books: dict[str, LevelBook] = {}
    out: list[OrderBookDelta] = []
    for q in quotes:
        book = books.get(q.instrument_id.value)
        if book is None:
            book = books[q.instrument_id.value] = LevelBook(q.instrument_id, q.bid_price.precision, q.bid_size.precision)
        pp, sp = book.price_precision, book.size_precision
        bids = {_units(q.bid_price, pp): _units(q.bid_size, sp)} if q.bid_size.as_double() > 0 else {}
        asks = {_units(q.ask_price, pp): _units(q.ask_size, sp)} if q.ask_size.as_double() > 0 else {}
        out.extend(book.update(bids, asks, q.ts_event, q.ts_init))
    return out


def _depths_to_deltas(depths: list[OrderBookDepth10]) -> list[OrderBookDelta]:
    """MBP-10 records as deltas: a snapshot first, then the level changes of each record."""
    books: dict[str, LevelBook] = {}
    out: list[OrderBookDelta] = []
    for depth in depths:
        book = books.get(depth.instrument_id.value)
        if book is None:
            first = depth.bids[0] if depth.bids[0].side != OrderSide.NO_ORDER_SIDE else depth.asks[0]
            book = books[depth.instrument_id.value] = LevelBook(depth.instrument_id, first.price.precision, first.size.precision)
        pp, sp = book.price_precision, book.size_precision
        bids = {_units(o.price, pp): _units(o.size, sp) for o in depth.bids if o.side != OrderSide.NO_ORDER_SIDE and o.size.as_double() > 0}
        asks = {_units(o.price, pp): _units(o.size, sp) for o in depth.asks if o.side != OrderSide.NO_ORDER_SIDE and o.size.as_double() > 0}
        out.extend(book.update(bids, asks, depth.ts_event, depth.ts_init, depth.sequence))
    return out


@dataclass
class _Loaded:
    delta_streams: list[DeltaStream]
    trades: list[TradeTick]
    definitions: list[Instrument]
    dropped_fills: int = 0


def _load(dbn: DbnFile, source: Path, options: IngestOptions) -> _Loaded:
    loader = DatabentoDataLoader()
    file = str(dbn.path)
    iid = options.instrument_id
    try:
        if dbn.schema == "definition":
            return _Loaded([], [], loader.from_dbn_file(source))
        if dbn.schema == "mbo":
            data = loader.from_dbn_file(source, instrument_id=iid, include_trades=True)
            deltas = [d for d in data if isinstance(d, OrderBookDelta)]
            deltas, dropped = _drop_fills(dbn, deltas)
            trades = [t for t in data if isinstance(t, TradeTick)]
            return _Loaded(_group(file, _frame_snapshots(deltas), BookType.L3_MBO), trades, [], dropped)
        if dbn.schema in ("mbp-1", "tbbo"):
            data = loader.from_dbn_file(source, instrument_id=iid, include_trades=True)
            quotes = [q for q in data if isinstance(q, QuoteTick)]
            trades = [t for t in data if isinstance(t, TradeTick)]
            return _Loaded(_group(file, _quotes_to_deltas(quotes), BookType.L2_MBP), trades, [])
        if dbn.schema == "mbp-10":
            depths = loader.from_dbn_file(source, instrument_id=iid)
            return _Loaded(_group(file, _depths_to_deltas(depths), BookType.L2_MBP), [], [])
        if dbn.schema == "trades":
            return _Loaded([], list(loader.from_dbn_file(source, instrument_id=iid)), [])
    except (ValueError, RuntimeError) as exc:
        raise IngestError(file, 0, f"garbage: NautilusTrader's Databento loader cannot read it: {exc}") from exc
    raise IngestError(
        file, 0, f"Databento schema {dbn.schema!r} is not ingested (supported: {', '.join(DATA_SCHEMAS)}, definition)"
    )


def _check_whole(dbn: DbnFile, policy: ValidationPolicy) -> None:
    if not dbn.complete:
        policy.problem(
            "truncated",
            dbn.path,
            dbn.records + 1,
            f"the file ends inside record {dbn.records + 1} (only {dbn.records} complete records)",
            f"keep the {dbn.records} complete records",
        )


@dataclass
class ParsedDatabento:
    """What the DBN files hold, per file, before validation and merging."""

    files: list[DbnFile]
    delta_streams: list[DeltaStream]
    trade_streams: list[TradeStream]
    definitions: list[Instrument]
    dropped_fills: int = 0


def parse_databento(paths: list[Path], options: IngestOptions) -> ParsedDatabento:
    """Check and load every file; no book validation yet (``read_databento`` adds it)."""
    scans = [scan_dbn(Path(p)) for p in paths]
    parsed = ParsedDatabento(scans, [], [], [])
    with tempfile.TemporaryDirectory(prefix="cmm-databento-") as tmp:
        for dbn in scans:
            _check_whole(dbn, options.policy)
            loaded = _load(dbn, _loader_path(dbn, Path(tmp)), options)
            parsed.delta_streams.extend(loaded.delta_streams)
            if loaded.trades:
                parsed.trade_streams.append(TradeStream(str(dbn.path), loaded.trades))
            parsed.definitions.extend(loaded.definitions)
            parsed.dropped_fills += loaded.dropped_fills
    return parsed


def read_databento(paths: list[Path], options: IngestOptions) -> IngestResult:
    """Read DBN files of any supported schema, validate each file's book, merge by ``ts_init``."""
    parsed = parse_databento(paths, options)
    merged = validate_and_merge(parsed.delta_streams, parsed.trade_streams, options.policy)
    sources = {s.instrument_id.value: s.file for s in parsed.delta_streams}
    for stream in parsed.trade_streams:
        for trade in stream.trades:
            sources.setdefault(trade.instrument_id.value, stream.file)
    instruments = _instruments(parsed.definitions, first_ts(merged.deltas, merged.trades), sources, options)
    return IngestResult(
        instruments=instruments,
        deltas=merged.deltas,
        trades=merged.trades,
        files=[str(p) for p in paths],
        crossed=merged.crossed,
        extra={
            "schemas": {str(d.path): d.schema for d in parsed.files},
            "records": {str(d.path): d.records for d in parsed.files},
            "book_types": {s.instrument_id.value: s.book_type.name for s in parsed.delta_streams},
            "dropped_fill_updates": parsed.dropped_fills,
            "duplicate_trades": merged.duplicate_trades,
        },
    )


__all__ = ["CME_SPECS", "DbnFile", "ParsedDatabento", "futures_contract", "parse_databento", "read_databento", "scan_dbn"]
