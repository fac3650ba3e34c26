"""Specification of the LOBSTER reader on the real AAPL 2012-06-21 sample (first 999 events).

The orderbook file is the truth: after each event the book rebuilt from our deltas (through the
catalog) must equal that row's 10 levels. Trades are message types 4/5 with the aggressor on the
side opposite to the resting order's direction.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.enums import AggressorSide, BookType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Equity
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.lobster import read_lobster
from catalog.staging import staged_catalog
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/data/real not present: real-data tests need the shared data folder", allow_module_level=True)

pytestmark = pytest.mark.real_data

FOLDER = REAL / "lobster-sample-truncated"
STEM = "AAPL_2012-06-21_34200000_57600000"
MESSAGE = FOLDER / f"{STEM}_message_10.csv"
ORDERBOOK = FOLDER / f"{STEM}_orderbook_10.csv"
AAPL = InstrumentId.from_str("AAPL.XNAS")
ROWS = 999  # SOURCES.md says 998: it counts newlines, and neither file ends with one
# 2012-06-21 is in daylight saving time: midnight New York = 04:00 UTC.
MIDNIGHT_UTC_NS = 1_340_251_200_000_000_000


def _csv(path: Path) -> list[list[int | str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def _expected_levels(row: list[str]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(bids, asks) of one orderbook row as (price USD, size), dummy levels left out."""
    values = [int(v) for v in row]
    asks = [(values[i] / 10_000, values[i + 1]) for i in range(0, 40, 4) if values[i] != 9_999_999_999]
    bids = [(values[i] / 10_000, values[i + 1]) for i in range(2, 40, 4) if values[i] != -9_999_999_999]
    return bids, asks


def _book_levels(book: OrderBook) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    bids = [(float(level.price), float(level.size())) for level in book.bids()]
    asks = [(float(level.price), float(level.size())) for level in book.asks()]
    return bids, asks


def _round_trip(result: IngestResult, directory: Path) -> ParquetDataCatalog:
    with staged_catalog(directory) as catalog:
        catalog.write_data(result.instruments)
        catalog.write_data(result.deltas)
        catalog.write_data(result.trades)
    return ParquetDataCatalog(str(directory))


def _states_by_row(deltas: list, rows: list[int]) -> dict[int, tuple]:
    """Book levels after each wanted row: the state after the last batch with sequence <= row."""
    book = OrderBook(AAPL, BookType.L2_MBP)
    wanted = sorted(rows)
    states: dict[int, tuple] = {}
    for delta in deltas:
        while wanted and delta.sequence > wanted[0]:
            states[wanted.pop(0)] = _book_levels(book)
        book.apply_delta(delta)
    for row in wanted:
        states[row] = _book_levels(book)
    return states


@pytest.fixture(scope="module")
def result() -> IngestResult:
    return read_lobster([MESSAGE, ORDERBOOK], IngestOptions())


def test_the_sample_gives_one_aapl_equity_and_every_trade(result: IngestResult) -> None:
    messages = _csv(MESSAGE)
    assert len(messages) == ROWS
    assert [str(i.id) for i in result.instruments] == ["AAPL.XNAS"]
    equity = result.instruments[0]
    assert isinstance(equity, Equity)
    assert (str(equity.price_increment), str(equity.lot_size), equity.quote_currency.code) == ("0.01", "1", "USD")
    assert len(result.trades) == sum(1 for m in messages if m[1] in ("4", "5")) == 159
    assert result.files == [str(MESSAGE), str(ORDERBOOK)]
    assert result.crossed == 0


def test_deltas_are_batches_opened_by_one_snapshot(result: IngestResult) -> None:
    first_batch_end = next(i for i, d in enumerate(result.deltas) if d.flags & F_LAST)
    snapshot = result.deltas[: first_batch_end + 1]
    assert snapshot[0].action.name == "CLEAR"
    assert all(d.flags & F_SNAPSHOT and d.sequence == 1 for d in snapshot)
    assert len(snapshot) == 1 + 20  # CLEAR + 10 bids + 10 asks of row 1
    assert not any(d.flags & F_SNAPSHOT for d in result.deltas[first_batch_end + 1 :])
    assert result.deltas[-1].flags & F_LAST
    ts = [d.ts_init for d in result.deltas]
    assert ts == sorted(ts)
    # Each visible-book event (types 1-4) changes the 10-level view; hidden executions (type 5) do not.
    batches = sum(1 for d in result.deltas if d.flags & F_LAST)
    assert batches + result.extra["unchanged_rows"] == ROWS
    assert result.extra["unchanged_rows"] == 61


@pytest.mark.parametrize("row", [1, 2, 36, 250, 500, 777, ROWS])
def test_rebuilt_top_10_equals_the_orderbook_row_after_the_catalog_round_trip(result: IngestResult, tmp_path: Path, row: int) -> None:
    catalog = _round_trip(result, tmp_path / "catalog")
    deltas = catalog.order_book_deltas(instrument_ids=[str(AAPL)])
    assert len(deltas) == len(result.deltas)
    states = _states_by_row(deltas, [row])
    assert states[row] == _expected_levels(_csv(ORDERBOOK)[row - 1])


def test_catalog_round_trip_keeps_counts_and_fields(result: IngestResult, tmp_path: Path) -> None:
    catalog = _round_trip(result, tmp_path / "catalog")
    trades = catalog.trade_ticks(instrument_ids=[str(AAPL)])
    deltas = catalog.order_book_deltas(instrument_ids=[str(AAPL)])
    assert [str(i.id) for i in catalog.instruments()] == ["AAPL.XNAS"]
    assert (len(deltas), len(trades)) == (len(result.deltas), len(result.trades))
    for got, want in [(deltas[0], result.deltas[0]), (deltas[777], result.deltas[777]), (deltas[-1], result.deltas[-1])]:
        assert (got.action, got.order.side, got.order.price, got.order.size, got.flags, got.ts_init) == (
            want.action, want.order.side, want.order.price, want.order.size, want.flags, want.ts_init,
        )
    assert [(t.price, t.size, t.aggressor_side, t.trade_id, t.ts_init) for t in trades[:5]] == [
        (t.price, t.size, t.aggressor_side, t.trade_id, t.ts_init) for t in result.trades[:5]
    ]


def test_aggressor_is_opposite_to_the_resting_order_direction(result: IngestResult) -> None:
    executions = [m for m in _csv(MESSAGE) if m[1] in ("4", "5")]
    expected = [AggressorSide.SELLER if m[5] == "1" else AggressorSide.BUYER for m in executions]
    assert [t.aggressor_side for t in result.trades] == expected
    # Line 36: "34200.275016159,4,5740544,40,5857400,-1": a resting sell hit by a buyer at 09:30:00.275016159 EDT.
    first = result.trades[0]
    assert (str(first.price), str(first.size), first.aggressor_side) == ("585.74", "40", AggressorSide.BUYER)
    assert first.ts_event == first.ts_init == MIDNIGHT_UTC_NS + 34_200_275_016_159


def test_timestamps_are_new_york_time_with_daylight_saving(tmp_path: Path) -> None:
    """The same events dated in January (EST, UTC-5) land one hour later in UTC than in June (EDT)."""
    winter = "AAPL_2012-01-05_34200000_57600000"
    shutil.copy(MESSAGE, tmp_path / f"{winter}_message_10.csv")
    shutil.copy(ORDERBOOK, tmp_path / f"{winter}_orderbook_10.csv")
    result = read_lobster(sorted(tmp_path.glob("*.csv")), IngestOptions())
    jan_5_midnight_est_ns = 1_325_739_600_000_000_000  # 2012-01-05T05:00:00Z
    assert result.deltas[0].ts_init == jan_5_midnight_est_ns + 34_200_004_241_176


def _corrupt_copy(tmp_path: Path, which: str, line: int, text: str | None) -> tuple[Path, Path]:
    """Copy the pair into tmp_path with one line of one file replaced (or everything after it cut)."""
    message, orderbook = tmp_path / MESSAGE.name, tmp_path / ORDERBOOK.name
    shutil.copy(MESSAGE, message)
    shutil.copy(ORDERBOOK, orderbook)
    target = message if which == "message" else orderbook
    lines = target.read_text().splitlines()
    if text is None:
        target.write_text("\n".join(lines[: line - 1]) + "\n")
    else:
        lines[line - 1] = text
        target.write_text("\n".join(lines) + "\n")
    return message, orderbook


def test_a_garbage_line_stops_a_strict_ingest_naming_file_and_line(tmp_path: Path) -> None:
    message, orderbook = _corrupt_copy(tmp_path, "message", 500, "34249.0,1,oops,100")
    with pytest.raises(IngestError) as caught:
        read_lobster([message, orderbook], IngestOptions())
    assert caught.value.file == str(message)
    assert caught.value.line == 500
    assert "garbage" in str(caught.value) and f"{message}:500" in str(caught.value)


def test_repair_drops_the_garbage_pair_and_the_book_stays_exact(tmp_path: Path) -> None:
    message, orderbook = _corrupt_copy(tmp_path, "orderbook", 500, "not,a,book,row")
    policy = ValidationPolicy(repair=True)
    result = read_lobster([message, orderbook], IngestOptions(policy=policy))
    assert policy.counts() == {"garbage": 1}
    assert (policy.problems[0].file, policy.problems[0].line) == (str(orderbook), 500)
    assert 500 not in {d.sequence for d in result.deltas}
    states = _states_by_row(result.deltas, [501, ROWS])
    rows = _csv(ORDERBOOK)
    assert states[501] == _expected_levels(rows[500])
    assert states[ROWS] == _expected_levels(rows[ROWS - 1])


def test_a_short_orderbook_file_is_a_truncation_naming_it(tmp_path: Path) -> None:
    message, orderbook = _corrupt_copy(tmp_path, "orderbook", 901, None)
    with pytest.raises(IngestError) as caught:
        read_lobster([message, orderbook], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(orderbook), 901)
    assert "truncated" in caught.value.problem


def test_a_cut_last_line_is_a_truncation(tmp_path: Path) -> None:
    message, orderbook = tmp_path / MESSAGE.name, tmp_path / ORDERBOOK.name
    shutil.copy(ORDERBOOK, orderbook)
    message.write_bytes(MESSAGE.read_bytes()[:-12])  # cut inside the last line, no newline
    with pytest.raises(IngestError) as caught:
        read_lobster([message, orderbook], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(message), ROWS)
    assert "truncated" in caught.value.problem


def test_a_message_file_without_its_orderbook_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="orderbook_10.csv was not given") as caught:
        read_lobster([MESSAGE], IngestOptions())
    assert caught.value.file == str(MESSAGE)


def test_a_file_not_named_like_lobster_is_refused(tmp_path: Path) -> None:
    stray = tmp_path / "aapl.csv"
    shutil.copy(MESSAGE, stray)
    with pytest.raises(IngestError, match="not a LOBSTER file name") as caught:
        read_lobster([stray], IngestOptions())
    assert caught.value.file == str(stray)


def test_instrument_id_option_renames_every_record() -> None:
    other = InstrumentId.from_str("AAPL.NASDAQ")
    result = read_lobster([MESSAGE, ORDERBOOK], IngestOptions(instrument_id=other))
    assert [i.id for i in result.instruments] == [other]
    assert {d.instrument_id for d in result.deltas} | {t.instrument_id for t in result.trades} == {other}
