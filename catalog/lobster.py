"""LOBSTER message + orderbook CSV pairs (NASDAQ equities) into Nautilus deltas and trades.

Owns: pairing ``TICKER_DATE_START_END_message_N.csv`` with ``..._orderbook_N.csv`` by name; the
parser of both files (no header; prices in USD x 10000; dummy prices +-9999999999 mark an empty
level); timestamps (seconds after midnight America/New_York on the date in the file name, to
UTC nanoseconds, exactly); the N-level book as deltas (row i of the orderbook file is the book
after message i: the first row is a snapshot batch, each later row a batch of the level changes
against the row before, via ``LevelBook``); trades (message types 4 and 5: direction 1 means a
resting *buy* order was hit, so the aggressor was a SELLER; -1 means BUYER); and the ``Equity``
definition (``lobster_equity``).

Must not: write catalogs, judge book soundness (``validation`` does), or use the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookType
from nautilus_trader.model.identifiers import InstrumentId, Symbol, TradeId
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import Price, Quantity

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.streams import DeltaStream, LevelBook, TradeStream, first_ts, validate_and_merge
from catalog.validation import ValidationPolicy

VENUE = "XNAS"
PRICE_SCALE = 10_000  # LOBSTER prices are USD x 10000
DUMMY_ASK = 9_999_999_999
DUMMY_BID = -9_999_999_999
TRADE_TYPES = (4, 5)  # execution of a visible / hidden limit order

_NAME = re.compile(
    r"^(?P<ticker>[A-Za-z0-9.^-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)
_NEW_YORK = ZoneInfo("America/New_York")


def lobster_equity(instrument_id: InstrumentId, price_precision: int = 2, ts: int = 0) -> Equity:
    """A NASDAQ-listed share: USD, tick 0.01 (0.0001 when the data holds sub-penny prices), lot 1 share."""
    return Equity(
        instrument_id=instrument_id,
        raw_symbol=Symbol(instrument_id.symbol.value),
        currency=USD,
        price_precision=price_precision,
        price_increment=Price(Decimal(1).scaleb(-price_precision), price_precision),
        lot_size=Quantity.from_int(1),
        ts_event=ts,
        ts_init=ts,
    )


@dataclass
class LobsterPair:
    """A message file and its orderbook file, with what their names say."""

    message: Path
    orderbook: Path
    ticker: str
    day: date
    start_ms: int
    levels: int

    def midnight_ns(self) -> int:
        """UTC nanoseconds of midnight New York time on the file's date (DST-aware)."""
        return int(datetime.combine(self.day, time(0), tzinfo=_NEW_YORK).timestamp()) * 1_000_000_000


def pair_files(paths: list[Path]) -> list[LobsterPair]:
    """Match each message file with its orderbook file; refuse strays with the name they lack."""
    groups: dict[tuple[str, ...], dict[str, Path]] = {}
    for path in paths:
        path = Path(path)
        match = _NAME.match(path.name)
        if match is None:
            raise IngestError(
                str(path), 0, "not a LOBSTER file name (TICKER_YYYY-MM-DD_START_END_message|orderbook_N.csv); the date in it is needed for timestamps"
            )
        if not path.is_file():
            raise IngestError(str(path), 0, "file not found")
        key = (str(path.parent), match["ticker"], match["date"], match["start"], match["end"], match["levels"])
        groups.setdefault(key, {})[match["kind"]] = path
    pairs: list[LobsterPair] = []
    for (_, ticker, day, start, _end, levels), files in groups.items():
        for have, lack in (("message", "orderbook"), ("orderbook", "message")):
            if have in files and lack not in files:
                missing = files[have].name.replace(f"_{have}_", f"_{lack}_")
                raise IngestError(str(files[have]), 0, f"its LOBSTER partner {missing} was not given")
        pairs.append(LobsterPair(files["message"], files["orderbook"], ticker, date.fromisoformat(day), int(start), int(levels)))
    return sorted(pairs, key=lambda p: (p.ticker, p.day, p.start_ms))


def _seconds_to_ns(text: str) -> int:
    """``"34200.004241176"`` -> 34200004241176000 ns, without float rounding."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        raise ValueError(f"time {text!r} is not seconds after midnight")
    return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


@dataclass
class _Message:
    ts: int
    type: int
    order_id: int
    size: int
    price: int
    direction: int


def _parse_message(line: str) -> _Message:
    fields = line.strip().split(",")
    if len(fields) != 6:
        raise ValueError(f"{len(fields)} fields where a message has 6")
    ts = _seconds_to_ns(fields[0])
    kind, order_id, size, price, direction = (int(f) for f in fields[1:])
    if direction not in (1, -1):
        raise ValueError(f"direction {direction} is not 1 or -1")
    return _Message(ts, kind, order_id, size, price, direction)


def _parse_book(line: str, levels: int) -> list[int]:
    fields = line.strip().split(",")
    if len(fields) != 4 * levels:
        raise ValueError(f"{len(fields)} fields where a {levels}-level book row has {4 * levels}")
    return [int(f) for f in fields]


@dataclass
class _Rows:
    """The line pairs of one LOBSTER pair that parsed, with their (shared) line numbers."""

    lines: list[int] = field(default_factory=list)
    messages: list[_Message] = field(default_factory=list)
    books: list[list[int]] = field(default_factory=list)


def _read_lines(path: Path) -> tuple[list[str], bool]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), 0, f"unreadable: {exc}") from exc
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise IngestError(str(path), 0, f"not a LOBSTER CSV (non-ASCII bytes at offset {exc.start})") from exc
    return text.splitlines(), bool(data) and not data.endswith(b"\n")


def _read_pair(pair: LobsterPair, policy: ValidationPolicy) -> _Rows:
    """Parse both files in lockstep; a bad line drops its pair (repair) or stops the ingest.

    A cut last line, or one file longer than the other, is a truncation: the row without its
    partner cannot be used, so in repair mode it is dropped.
    """
    messages, message_cut = _read_lines(pair.message)
    books, book_cut = _read_lines(pair.orderbook)
    rows = _Rows()
    for index in range(min(len(messages), len(books))):
        line = index + 1
        try:
            message = _parse_message(messages[index])
        except ValueError as exc:
            last = line == len(messages) and message_cut
            kind = "truncated" if last else "garbage"
            policy.problem(kind, pair.message, line, f"unreadable message: {exc}", "drop this event and its book row")
            continue
        try:
            book = _parse_book(books[index], pair.levels)
        except ValueError as exc:
            last = line == len(books) and book_cut
            kind = "truncated" if last else "garbage"
            policy.problem(kind, pair.orderbook, line, f"unreadable book row: {exc}", "drop this event and its book row")
            continue
        rows.lines.append(line)
        rows.messages.append(message)
        rows.books.append(book)
    if len(messages) != len(books):
        short, long_ = (pair.message, pair.orderbook) if len(messages) < len(books) else (pair.orderbook, pair.message)
        n_short, n_long = sorted((len(messages), len(books)))
        policy.problem(
            "truncated",
            short,
            n_short + 1,
            f"{short.name} ends after {n_short} lines but {long_.name} has {n_long}",
            f"drop the last {n_long - n_short} lines of {long_.name}",
        )
    return rows


def _levels(book: list[int], offset: int, dummy: int, scale: int) -> dict[int, int]:
    """One side of a book row as ``{price_units: size}``; dummy prices and empty sizes are no level."""
    out: dict[int, int] = {}
    for i in range(offset, len(book), 4):
        price, size = book[i], book[i + 1]
        if price != dummy and size > 0:
            out[price // scale] = size
    return out


def _precision(rows: _Rows) -> int:
    """Whole cents (2) unless some price is sub-penny (then 4, LOBSTER's own resolution)."""
    prices = [m.price for m in rows.messages if m.type in TRADE_TYPES]
    prices += [p for b in rows.books for p in b[0::2] if p not in (DUMMY_ASK, DUMMY_BID)]
    return 2 if all(p % 100 == 0 for p in prices) else 4


def _pair_streams(pair: LobsterPair, rows: _Rows, instrument_id: InstrumentId, precision: int) -> tuple[DeltaStream, TradeStream, int]:
    scale = PRICE_SCALE // 10**precision
    midnight = pair.midnight_ns()
    book = LevelBook(instrument_id, precision, 0)
    deltas: list[OrderBookDelta] = []
    trades: list[TradeTick] = []
    unchanged = 0
    for line, message, row in zip(rows.lines, rows.messages, rows.books):
        ts = midnight + message.ts
        batch = book.update(_levels(row, 2, DUMMY_BID, scale), _levels(row, 0, DUMMY_ASK, scale), ts, ts, sequence=line)
        unchanged += not batch
        deltas.extend(batch)
        if message.type in TRADE_TYPES:
            trades.append(
                TradeTick(
                    instrument_id,
                    Price(message.price / PRICE_SCALE, precision),
                    Quantity.from_int(message.size),
                    AggressorSide.SELLER if message.direction == 1 else AggressorSide.BUYER,
                    TradeId(f"{pair.day:%Y%m%d}-{pair.start_ms}-{line}"),
                    ts,
                    ts,
                )
            )
    return DeltaStream(str(pair.orderbook), instrument_id, deltas, BookType.L2_MBP), TradeStream(str(pair.message), trades), unchanged


def read_lobster(paths: list[Path], options: IngestOptions) -> IngestResult:
    """Read LOBSTER pairs (several days or tickers may be given), validate, merge by ``ts_init``."""
    pairs = pair_files([Path(p) for p in paths])
    parsed = [(pair, _read_pair(pair, options.policy)) for pair in pairs]
    ids = {pair.ticker: options.instrument_id or InstrumentId.from_str(f"{pair.ticker}.{VENUE}") for pair in pairs}
    precision = {iid.value: 2 for iid in ids.values()}
    for pair, rows in parsed:
        key = ids[pair.ticker].value
        precision[key] = max(precision[key], _precision(rows))
    delta_streams: list[DeltaStream] = []
    trade_streams: list[TradeStream] = []
    unchanged = 0
    for pair, rows in parsed:
        iid = ids[pair.ticker]
        deltas, trades, n_unchanged = _pair_streams(pair, rows, iid, precision[iid.value])
        delta_streams.append(deltas)
        trade_streams.append(trades)
        unchanged += n_unchanged
    merged = validate_and_merge(delta_streams, trade_streams, options.policy)
    starts = first_ts(merged.deltas, merged.trades)
    instruments = [lobster_equity(InstrumentId.from_str(k), precision[k], starts.get(k, 0)) for k in sorted(precision)]
    return IngestResult(
        instruments=instruments,
        deltas=merged.deltas,
        trades=merged.trades,
        files=[str(p) for p in paths],
        crossed=merged.crossed,
        extra={"book_type": "L2_MBP", "levels": sorted({p.levels for p in pairs}), "unchanged_rows": unchanged},
    )


__all__ = ["LobsterPair", "lobster_equity", "pair_files", "read_lobster"]
