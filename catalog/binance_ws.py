"""Raw Binance WebSocket captures -> Nautilus ``OrderBookDelta`` batches and ``TradeTick``s.

Owns the Binance format knowledge and nothing else: line layout (``<recv_ts_ns> <json>``), the
REST depth snapshot, ``depthUpdate`` diffs and their update-id sequence, ``trade`` messages and
``bookTicker``. It rebuilds the book with Binance's documented procedure:

1. buffer diffs from the start of the capture until the REST snapshot line arrives;
2. drop buffered diffs with ``u <= lastUpdateId``; the first diff applied must follow on from the
   snapshot (futures: ``pu <= lastUpdateId < u``, since futures ids skip between events; spot:
   ``U <= lastUpdateId + 1 <= u``);
3. afterwards every diff must continue the previous one (futures: ``pu == previous u``;
   spot: ``U == previous u + 1``), across files too: several files given in order continue one
   another (``*_20240809.gz`` continues ``*_20240808.gz``); a later snapshot line resets the book.

The snapshot becomes one batch (CLEAR, then ADDs, all flagged ``F_SNAPSHOT``), each diff one batch
whose last delta carries ``F_LAST``. Timestamps: ``ts_event`` is the exchange time (``T`` where the
venue sends it, else ``E``), ``ts_init`` the local receive time, so a backtest sees events in the
order and at the time the capture saw them. Diffs buffered before the snapshot can only be known
once the snapshot is applied, so they carry the snapshot's ``ts_init``.

It must not decide whether data is sound: problems are handed to ``catalog.validation``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import FIXED_PRECISION

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.instruments import BinanceMarket, binance_instrument
from catalog.validation import F_LAST, F_SNAPSHOT, BookValidator, ValidationPolicy

_MS = 1_000_000


@dataclass
class _Line:
    file: str
    number: int
    recv_ns: int
    message: dict


@dataclass
class _Diff:
    line: _Line
    first_id: int
    last_id: int
    prev_id: int | None
    ts_event: int
    bids: list[list[str]]
    asks: list[list[str]]


@dataclass
class _Book:
    """Levels as integers in units of the instrument's last price / size decimal."""

    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def side(self, side: OrderSide) -> dict[int, int]:
        return self.bids if side == OrderSide.BUY else self.asks

    def top(self) -> tuple[int | None, int | None]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


def parse_fixed(text: str, decimals: int) -> int:
    """``"61800.20"`` with 1 decimal -> ``618002``; raises ``ValueError`` if precision would be lost."""
    negative = text.startswith("-")
    whole, _, frac = (text[1:] if negative else text).partition(".")
    kept, dropped = frac[:decimals], frac[decimals:]
    if dropped.strip("0"):
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    if not (whole or kept) or not (whole or "0").isdigit() or not (kept or "0").isdigit():
        raise ValueError(f"{text!r} is not a decimal number")
    value = int(whole or "0") * 10**decimals + (int(kept.ljust(decimals, "0")) if decimals else 0)
    return -value if negative else value


def _read_lines(path: Path, policy: ValidationPolicy) -> Iterator[_Line]:
    """Yield parsed lines; garbage lines and a truncated gzip tail go to the validation policy."""
    if not path.is_file():
        raise IngestError(str(path), 0, "file not found")
    number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                head, sep, body = raw.partition(" ")
                try:
                    if not sep:
                        raise ValueError("expected '<recv_ts_ns> <json>'")
                    recv_ns = int(head)
                    message = json.loads(body)
                    if not isinstance(message, dict):
                        raise ValueError("JSON is not an object")
                except ValueError as exc:
                    policy.problem("garbage", path, number, f"unreadable line ({exc}): {raw[:80]!r}", "drop the line")
                    continue
                yield _Line(str(path), number, recv_ns, message)
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        policy.problem(
            "truncated",
            path,
            number + 1,
            f"the file cannot be read past line {number} ({type(exc).__name__}: {exc})",
            "drop the unreadable tail of the file",
        )


def _detect_market(message: dict) -> BinanceMarket:
    if "ps" in message:
        return BinanceMarket.COINM
    if "pu" in message:
        return BinanceMarket.USDM
    return BinanceMarket.SPOT


class _Rebuilder:
    """The Binance book-rebuild state machine; emits Nautilus objects as it goes."""

    def __init__(self, options: IngestOptions) -> None:
        self.options = options
        self.policy = options.policy
        self.instrument: Instrument | None = None
        self.instrument_id: InstrumentId | None = None
        self.market: BinanceMarket | None = None
        self.symbol: str | None = None
        self.validator: BookValidator | None = None
        self.book = _Book()
        self.snapshot_id: int | None = None
        self.last_update_id: int | None = None
        self.buffer: list[_Diff] = []
        self.deltas: list[OrderBookDelta] = []
        self.trades: list[TradeTick] = []
        self.last_trade_ts = 0
        self.pending_trades: list[tuple[_Line, dict]] = []
        self.file_ends: dict[str, dict] = {}
        self.tickers: dict[str, list[dict]] = {}

    # -- instrument -------------------------------------------------------------------------

    def _ensure_instrument(self, line: _Line, data: dict) -> None:
        symbol = str(data.get("s", "")).upper()
        if self.instrument is None:
            if data.get("e") != "depthUpdate":
                return
            self.market = _detect_market(data)
            self.symbol = symbol
            self.instrument = binance_instrument(self.market, symbol, self.options.instrument_id, ts=line.recv_ns)
            self.instrument_id = self.instrument.id
            self.price_dec = self.instrument.price_precision
            self.size_dec = self.instrument.size_precision
            self.price_scale = 10 ** (FIXED_PRECISION - self.price_dec)
            self.size_scale = 10 ** (FIXED_PRECISION - self.size_dec)
            self.validator = BookValidator(self.instrument_id, self.policy)
            for pending_line, pending in self.pending_trades:
                self._trade(pending_line, pending)
            self.pending_trades.clear()
        elif symbol and symbol != self.symbol:
            raise IngestError(line.file, line.number, f"symbol {symbol} differs from {self.symbol} earlier in the capture; ingest one instrument per call")

    # -- dispatch ----------------------------------------------------------------------------

    def feed(self, line: _Line) -> None:
        message = line.message
        if "lastUpdateId" in message:
            self._snapshot(line, message)
            return
        data = message.get("data")
        if not isinstance(data, dict):
            self.policy.problem("garbage", line.file, line.number, "neither a snapshot nor a stream message", "drop the line")
            return
        event = data.get("e")
        self._ensure_instrument(line, data)
        if event == "depthUpdate":
            self._diff(line, data)
        elif event == "trade":
            if self.instrument is None:
                self.pending_trades.append((line, data))
            else:
                self._trade(line, data)
        elif "bookTicker" in str(message.get("stream", "")) or event == "bookTicker":
            self.tickers.setdefault(line.file, []).append(data)

    # -- depth -------------------------------------------------------------------------------

    def _diff(self, line: _Line, data: dict) -> None:
        try:
            diff = _Diff(
                line,
                int(data["U"]),
                int(data["u"]),
                int(data["pu"]) if "pu" in data else None,
                int(data.get("T") or data["E"]) * _MS,
                data.get("b") or [],
                data.get("a") or [],
            )
        except (KeyError, TypeError, ValueError) as exc:
            self.policy.problem("garbage", line.file, line.number, f"depthUpdate without a valid {exc}", "drop the line")
            return
        if self.snapshot_id is None:
            self.buffer.append(diff)
            return
        self._apply_diff(diff, line.recv_ns)

    def _snapshot(self, line: _Line, message: dict) -> None:
        if self.instrument is None:
            # A capture always starts with diffs before the REST snapshot; without them we cannot
            # tell the market, so the snapshot cannot be the very first message.
            raise IngestError(line.file, line.number, "depth snapshot before any depthUpdate: cannot tell the market (spot, USD-M, COIN-M)")
        assert self.validator is not None and self.instrument_id is not None
        snapshot_id = int(message["lastUpdateId"])
        ts_init = self.validator.check_timestamp(line.recv_ns, line.file, line.number)
        ts_event = int(message.get("T") or message.get("E") or 0) * _MS or ts_init
        self.book = _Book()
        batch = [
            OrderBookDelta.clear(self.instrument_id, snapshot_id, ts_event, ts_init),
        ]
        for key, side in (("bids", OrderSide.BUY), ("asks", OrderSide.SELL)):
            levels = self.book.side(side)
            for price_text, size_text in message.get(key, []):
                price, size = self._level(line, price_text, size_text)
                if price is None or not size:
                    continue
                levels[price] = size
                batch.append(self._delta(BookAction.ADD, side, price, size, F_SNAPSHOT, snapshot_id, ts_event, ts_init))
        batch = [self._with_flag(d, F_SNAPSHOT) for d in batch]
        batch[-1] = self._with_flag(batch[-1], F_SNAPSHOT | F_LAST)
        self._emit(batch, line)
        self.snapshot_id = snapshot_id
        self.last_update_id = None
        pending, self.buffer = self.buffer, []
        for diff in pending:
            if diff.last_id <= snapshot_id:
                continue
            self._apply_diff(diff, ts_init)

    def _continuity_error(self, diff: _Diff) -> str | None:
        spot = self.market is BinanceMarket.SPOT
        if self.last_update_id is None:
            assert self.snapshot_id is not None
            if spot and not (diff.first_id <= self.snapshot_id + 1 <= diff.last_id):
                return f"first diff after snapshot {self.snapshot_id} covers U={diff.first_id}..u={diff.last_id}, not {self.snapshot_id + 1}"
            # Futures update ids are shared across symbols and skip; the diff must follow on from
            # the snapshot: its predecessor (pu) must not be later than the snapshot.
            if not spot and not (diff.prev_id is not None and diff.prev_id <= self.snapshot_id < diff.last_id):
                return f"first diff after snapshot {self.snapshot_id} has pu={diff.prev_id}, u={diff.last_id}: updates in between are missing"
            return None
        if spot and diff.first_id != self.last_update_id + 1:
            return f"U={diff.first_id} does not follow previous u={self.last_update_id}"
        if not spot and diff.prev_id != self.last_update_id:
            return f"pu={diff.prev_id} does not equal previous u={self.last_update_id}"
        return None

    def _apply_diff(self, diff: _Diff, recv_ns: int) -> None:
        assert self.validator is not None
        line = diff.line
        problem = self._continuity_error(diff)
        if problem is not None:
            self.policy.problem("gap", line.file, line.number, f"sequence gap: {problem}", "keep the book and continue")
        self.last_update_id = diff.last_id
        ts_init = self.validator.check_timestamp(max(recv_ns, self.validator.last_ts_init), line.file, line.number)
        batch: list[OrderBookDelta] = []
        for levels, side in ((diff.bids, OrderSide.BUY), (diff.asks, OrderSide.SELL)):
            book_side = self.book.side(side)
            for price_text, size_text in levels:
                price, size = self._level(line, price_text, size_text)
                if price is None:
                    continue
                if size == 0:
                    if book_side.pop(price, None) is None:
                        continue  # deleting a level we never saw (outside the snapshot depth)
                    action = BookAction.DELETE
                else:
                    action = BookAction.UPDATE if price in book_side else BookAction.ADD
                    book_side[price] = size
                batch.append(self._delta(action, side, price, size, 0, diff.last_id, diff.ts_event, ts_init))
        if batch:
            batch[-1] = self._with_flag(batch[-1], F_LAST)
            self._emit(batch, line)

    def _emit(self, batch: list[OrderBookDelta], line: _Line) -> None:
        assert self.validator is not None
        checked = self.validator.apply_batch(batch, line.file, line.number)
        for repair in checked[len(batch):]:  # deletes added by a repair: keep our levels in sync
            self.book.side(repair.order.side).pop(round(repair.order.price.as_double() * 10**self.price_dec), None)
        self.deltas.extend(checked)

    def _level(self, line: _Line, price_text: str, size_text: str) -> tuple[int | None, int]:
        try:
            price = parse_fixed(price_text, self.price_dec)
            size = parse_fixed(size_text, self.size_dec)
        except ValueError as exc:
            self.policy.problem("bad_price", line.file, line.number, f"level [{price_text}, {size_text}]: {exc}", "drop the level")
            return None, 0
        if price <= 0:
            self.policy.problem("bad_price", line.file, line.number, f"price {price_text} is not positive", "drop the level")
            return None, 0
        if size < 0:
            self.policy.problem("bad_size", line.file, line.number, f"size {size_text} is negative", "drop the level")
            return None, 0
        return price, size

    def _delta(self, action: BookAction, side: OrderSide, price: int, size: int, flags: int, sequence: int, ts_event: int, ts_init: int) -> OrderBookDelta:
        return OrderBookDelta.from_raw(
            self.instrument_id,
            action,
            side,
            price * self.price_scale,
            self.price_dec,
            size * self.size_scale,
            self.size_dec,
            0,
            flags,
            sequence,
            ts_event,
            ts_init,
        )

    @staticmethod
    def _with_flag(delta: OrderBookDelta, flags: int) -> OrderBookDelta:
        return OrderBookDelta(delta.instrument_id, delta.action, delta.order, delta.flags | flags, delta.sequence, delta.ts_event, delta.ts_init)

    # -- trades ------------------------------------------------------------------------------

    def _trade(self, line: _Line, data: dict) -> None:
        try:
            price_text, size_text = data["p"], data["q"]
            price = parse_fixed(price_text, self.price_dec)
            size = parse_fixed(size_text, self.size_dec)
            ts_event = int(data.get("T") or data["E"]) * _MS
            aggressor = AggressorSide.SELLER if data["m"] else AggressorSide.BUYER
            trade_id = TradeId(str(data["t"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.policy.problem("garbage", line.file, line.number, f"trade message unreadable ({exc})", "drop the trade")
            return
        if price <= 0 or size <= 0:
            kind = "bad_price" if price <= 0 else "bad_size"
            self.policy.problem(kind, line.file, line.number, f"trade {price_text} x {size_text}", "drop the trade")
            return
        ts_init = line.recv_ns
        if ts_init < self.last_trade_ts:
            self.policy.problem("non_monotonic_ts", line.file, line.number, f"trade at {ts_init} before {self.last_trade_ts}", "clamp it")
            ts_init = self.last_trade_ts
        self.last_trade_ts = ts_init
        self.trades.append(
            TradeTick.from_raw(
                self.instrument_id,
                price * self.price_scale,
                self.price_dec,
                size * self.size_scale,
                self.size_dec,
                aggressor,
                trade_id,
                ts_event,
                ts_init,
            ),
        )

    # -- end of file -------------------------------------------------------------------------

    def end_of_file(self, path: Path) -> None:
        bid, ask = self.book.top()
        unit = 10**self.price_dec if self.instrument is not None else 1
        tickers = self.tickers.pop(str(path), [])
        last_id = self.last_update_id or 0
        matching = [t for t in tickers if int(t.get("u", 0)) <= last_id]
        self.file_ends[str(path)] = {
            "best_bid": None if bid is None else bid / unit,
            "best_ask": None if ask is None else ask / unit,
            "best_bid_size": None if bid is None else self.book.bids[bid] / 10**self.size_dec,
            "best_ask_size": None if ask is None else self.book.asks[ask] / 10**self.size_dec,
            "last_update_id": self.last_update_id,
            "last_book_ticker": _ticker_view(tickers[-1]) if tickers else None,
            # The last ticker not newer than the book: bookTicker runs ahead of 100 ms diffs.
            "matching_book_ticker": _ticker_view(matching[-1]) if matching else None,
        }


def _ticker_view(data: dict) -> dict:
    return {
        "best_bid": float(data["b"]),
        "best_ask": float(data["a"]),
        "best_bid_size": float(data["B"]),
        "best_ask_size": float(data["A"]),
        "update_id": int(data.get("u", 0)),
    }


def read_binance_ws(paths: list[Path], options: IngestOptions) -> IngestResult:
    """Read one instrument's capture files, in the order given, into validated Nautilus objects."""
    if not paths:
        raise IngestError("<none>", 0, "no input files given")
    rebuilder = _Rebuilder(options)
    for path in paths:
        for line in _read_lines(Path(path), options.policy):
            rebuilder.feed(line)
        rebuilder.end_of_file(Path(path))
    first = str(paths[0])
    if rebuilder.instrument is None:
        raise IngestError(first, 0, "no depthUpdate message found: is this a Binance WebSocket capture?")
    if rebuilder.snapshot_id is None:
        raise IngestError(
            first,
            0,
            "no REST depth snapshot line ({\"lastUpdateId\": ...}) in the capture: give the first file of the capture first",
        )
    return IngestResult(
        instruments=[rebuilder.instrument],
        deltas=rebuilder.deltas,
        trades=rebuilder.trades,
        files=[str(p) for p in paths],
        gaps=options.policy.count("gap"),
        crossed=rebuilder.validator.crossed if rebuilder.validator else 0,
        extra={"file_ends": rebuilder.file_ends, "market": rebuilder.market.value if rebuilder.market else None},
    )
