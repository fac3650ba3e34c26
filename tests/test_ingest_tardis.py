"""Specification of the Tardis reader on NautilusTrader's real Tardis fixtures.

Each kind of file is recognised by its header; incremental L2 rows go through Nautilus' loader
(with the snapshot CLEAR it leaves out), book snapshots through our parser (every level kept,
cross-checked against the loader's 10-level ``load_depth10``), trades through the loader. Rows
the loader mishandles never reach it.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest
from nautilus_trader.adapters.tardis.loaders import TardisCSVDataLoader
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.enums import AggressorSide, BookAction, BookType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from catalog.errors import IngestError
from catalog.formats import IngestOptions, IngestResult
from catalog.staging import staged_catalog
from catalog.tardis import read_tardis
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/data/real not present: real-data tests need the shared data folder", allow_module_level=True)

pytestmark = pytest.mark.real_data

TARDIS = REAL / "nautilus_trader" / "tests" / "test_data" / "tardis"
DERIBIT = TARDIS / "deribit_incremental_book_L2_BTC-PERPETUAL.csv"
SNAPSHOT_5 = TARDIS / "binance-futures_book_snapshot_5_BTCUSDT.csv"
SNAPSHOT_25 = TARDIS / "binance-futures_book_snapshot_25_BTCUSDT.csv"
BITMEX = TARDIS / "bitmex_trades_XBTUSD.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _round_trip(result: IngestResult, directory: Path) -> ParquetDataCatalog:
    with staged_catalog(directory) as catalog:
        catalog.write_data(result.instruments)
        if result.deltas:
            catalog.write_data(result.deltas)
        if result.trades:
            catalog.write_data(result.trades)
    return ParquetDataCatalog(str(directory))


def _levels(book: OrderBook) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return (
        [(float(level.price), float(level.size())) for level in book.bids()],
        [(float(level.price), float(level.size())) for level in book.asks()],
    )


def _snapshot_levels(row: dict[str, str], levels: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    def side(name: str) -> list[tuple[float, float]]:
        out = []
        for i in range(levels):
            price, amount = row[f"{name}[{i}].price"], row[f"{name}[{i}].amount"]
            if price and float(amount) > 0:
                out.append((float(price), float(amount)))
        return out

    return side("bids"), side("asks")


def _book_after_each_batch(deltas: list, instrument_id: InstrumentId) -> list[tuple]:
    book = OrderBook(instrument_id, BookType.L2_MBP)
    states = []
    for delta in deltas:
        book.apply_delta(delta)
        if delta.flags & F_LAST:
            states.append((delta.sequence, _levels(book)))
    return states


def test_incremental_l2_snapshot_is_opened_with_a_clear_and_round_trips(tmp_path: Path) -> None:
    rows = _rows(DERIBIT)
    result = read_tardis([DERIBIT], IngestOptions())
    assert len(rows) == 15 and all(r["is_snapshot"] == "true" for r in rows)
    assert len(result.deltas) == 1 + 15  # the loader gives one delta per row; we add the CLEAR
    assert result.deltas[0].action == BookAction.CLEAR
    assert all(d.flags & F_SNAPSHOT for d in result.deltas)
    assert [bool(d.flags & F_LAST) for d in result.deltas] == [False] * 15 + [True]
    assert [str(i.id) for i in result.instruments] == ["BTC-PERPETUAL.DERIBIT"]
    assert (result.instruments[0].price_precision, result.instruments[0].size_precision) == (1, 0)
    assert result.deltas[1].ts_init == int(rows[0]["local_timestamp"]) * 1000
    assert result.deltas[1].ts_event == int(rows[0]["timestamp"]) * 1000

    catalog = _round_trip(result, tmp_path / "catalog")
    deltas = catalog.order_book_deltas(instrument_ids=["BTC-PERPETUAL.DERIBIT"])
    assert len(deltas) == len(result.deltas)
    book = OrderBook(deltas[0].instrument_id, BookType.L2_MBP)
    for delta in deltas:
        book.apply_delta(delta)
    asks = sorted((float(r["price"]), float(r["amount"])) for r in rows if r["side"] == "ask")
    bids = sorted(((float(r["price"]), float(r["amount"])) for r in rows if r["side"] == "bid"), reverse=True)
    assert _levels(book) == (bids, asks)


@pytest.mark.parametrize("path, levels", [(SNAPSHOT_5, 5), (SNAPSHOT_25, 25)])
def test_book_snapshots_keep_every_level_at_every_row(path: Path, levels: int, tmp_path: Path) -> None:
    rows = _rows(path)
    result = read_tardis([path], IngestOptions())
    assert result.extra["kinds"] == {str(path): f"book_snapshot_{levels}"}
    catalog = _round_trip(result, tmp_path / "catalog")
    deltas = catalog.order_book_deltas(instrument_ids=["BTCUSDT.BINANCE"])
    assert len(deltas) == len(result.deltas)
    states = dict(_book_after_each_batch(deltas, InstrumentId.from_str("BTCUSDT.BINANCE")))
    last_state = None
    for line, row in enumerate(rows, start=2):
        expected = _snapshot_levels(row, levels)
        # A row identical to the one before it makes no batch; the book simply stays as it was.
        state = states.get(line, last_state)
        assert state == expected, f"book differs from {path.name} line {line}"
        last_state = state
    assert len(expected[0]) == len(expected[1]) == levels


@pytest.mark.parametrize("path, levels", [(SNAPSHOT_5, 5), (SNAPSHOT_25, 25)])
def test_snapshot_top_10_matches_nautilus_load_depth10(path: Path, levels: int) -> None:
    """Our parser and Nautilus' agree on ids, timestamps and the levels the loader keeps (<= 10)."""
    depths = TardisCSVDataLoader().load_depth10(path, levels)
    result = read_tardis([path], IngestOptions())
    states = _book_after_each_batch(result.deltas, result.instruments[0].id)
    assert {d.instrument_id for d in result.deltas} == {depths[0].instrument_id}
    first_batch = [d for d in result.deltas if d.sequence == 2]
    assert (first_batch[0].ts_event, first_batch[0].ts_init) == (depths[0].ts_event, depths[0].ts_init)
    bids, asks = states[0][1]
    keep = min(levels, 10)
    assert bids[:keep] == [(float(o.price), float(o.size)) for o in depths[0].bids[:keep]]
    assert asks[:keep] == [(float(o.price), float(o.size)) for o in depths[0].asks[:keep]]


def test_trades_keep_side_price_size_and_local_time(tmp_path: Path) -> None:
    rows = _rows(BITMEX)
    result = read_tardis([BITMEX], IngestOptions())
    assert (len(result.deltas), len(result.trades)) == (0, 10)
    expected = [
        (AggressorSide.SELLER if r["side"] == "sell" else AggressorSide.BUYER, float(r["price"]), float(r["amount"]), r["id"], int(r["local_timestamp"]) * 1000)
        for r in rows
    ]
    got = [(t.aggressor_side, float(t.price), float(t.size), t.trade_id.value, t.ts_init) for t in result.trades]
    assert got == expected
    catalog = _round_trip(result, tmp_path / "catalog")
    trades = catalog.trade_ticks(instrument_ids=["XBTUSD.BITMEX"])
    assert [(t.aggressor_side, float(t.price), float(t.size), t.trade_id.value, t.ts_init) for t in trades] == expected
    assert [str(i.id) for i in catalog.instruments()] == ["XBTUSD.BITMEX"]


def test_files_of_several_venues_merge_by_ts_init(tmp_path: Path) -> None:
    result = read_tardis([DERIBIT, BITMEX, SNAPSHOT_25], IngestOptions())
    assert result.instrument_id == "BTC-PERPETUAL.DERIBIT,BTCUSDT.BINANCE,XBTUSD.BITMEX"
    assert result.files == [str(DERIBIT), str(BITMEX), str(SNAPSHOT_25)]
    alone = [read_tardis([p], IngestOptions()) for p in (DERIBIT, SNAPSHOT_25)]
    assert len(result.deltas) == sum(len(r.deltas) for r in alone)
    assert [d.ts_init for d in result.deltas] == sorted(d.ts_init for d in result.deltas)
    catalog = _round_trip(result, tmp_path / "catalog")
    assert sorted(str(i.id) for i in catalog.instruments()) == result.instrument_id.split(",")
    assert len(catalog.order_book_deltas(instrument_ids=["BTC-PERPETUAL.DERIBIT", "BTCUSDT.BINANCE"])) == len(result.deltas)
    assert len(catalog.trade_ticks(instrument_ids=["XBTUSD.BITMEX"])) == 10


def test_two_books_of_one_instrument_over_the_same_time_are_refused() -> None:
    with pytest.raises(IngestError, match="overlaps") as caught:
        read_tardis([SNAPSHOT_5, SNAPSHOT_25], IngestOptions())
    assert caught.value.file in (str(SNAPSHOT_5), str(SNAPSHOT_25))


def test_instrument_id_option_renames_every_record() -> None:
    wanted = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
    result = read_tardis([SNAPSHOT_5], IngestOptions(instrument_id=wanted))
    assert [i.id for i in result.instruments] == [wanted]
    assert {d.instrument_id for d in result.deltas} == {wanted}


def test_gzipped_files_read_the_same(tmp_path: Path) -> None:
    packed = tmp_path / f"{DERIBIT.name}.gz"
    with open(DERIBIT, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, gz = read_tardis([DERIBIT], IngestOptions()), read_tardis([packed], IngestOptions())
    assert [str(d) for d in gz.deltas] == [str(d) for d in plain.deltas]


def test_a_file_is_recognised_by_its_header_not_its_shape(tmp_path: Path) -> None:
    """The loader reads an incremental_book_L2 file as trades without complaint; we never ask it to."""
    assert len(TardisCSVDataLoader().load_trades(DERIBIT)) == 15  # the quirk we guard against
    result = read_tardis([DERIBIT], IngestOptions())
    assert result.trades == [] and result.extra["kinds"][str(DERIBIT)] == "incremental_book_L2"
    other = tmp_path / "quotes.csv"
    other.write_text("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n")
    with pytest.raises(IngestError, match="not a Tardis") as caught:
        read_tardis([other], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(other), 1)


def test_a_missing_file_is_named() -> None:
    missing = TARDIS / "no_such_file.csv"
    with pytest.raises(IngestError, match="file not found") as caught:
        read_tardis([missing], IngestOptions())
    assert caught.value.file == str(missing)


def _copy_with_line(tmp_path: Path, source: Path, line: int, text: str) -> Path:
    lines = source.read_text().splitlines()
    lines[line - 1] = text
    target = tmp_path / source.name
    target.write_text("\n".join(lines) + "\n")
    return target


def test_a_garbage_line_stops_a_strict_ingest_naming_file_and_line(tmp_path: Path) -> None:
    bad = _copy_with_line(tmp_path, BITMEX, 5, "bitmex,XBTUSD,garbage")
    with pytest.raises(IngestError) as caught:
        read_tardis([bad], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(bad), 5)
    assert "garbage" in caught.value.problem


def test_repair_drops_the_garbage_line_and_keeps_the_rest(tmp_path: Path) -> None:
    bad = _copy_with_line(tmp_path, BITMEX, 5, "bitmex,XBTUSD,garbage")
    policy = ValidationPolicy(repair=True)
    result = read_tardis([bad], IngestOptions(policy=policy))
    assert policy.counts() == {"garbage": 1}
    assert len(result.trades) == 9
    assert [r["id"] for line, r in enumerate(_rows(BITMEX), start=2) if line != 5] == [t.trade_id.value for t in result.trades]


def test_a_negative_amount_is_reported_not_handed_to_the_loader(tmp_path: Path) -> None:
    """Nautilus 1.221's Tardis loader aborts the whole process (Rust panic) on a negative amount."""
    row = "deribit,BTC-PERPETUAL,1585699200245000,1585699200355684,true,ask,6421.5,-1"
    bad = _copy_with_line(tmp_path, DERIBIT, 7, row)
    with pytest.raises(IngestError) as caught:
        read_tardis([bad], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(bad), 7)
    assert "bad_size" in caught.value.problem
    policy = ValidationPolicy(repair=True)
    result = read_tardis([bad], IngestOptions(policy=policy))
    assert policy.counts() == {"bad_size": 1}
    assert len(result.deltas) == 1 + 14


def test_a_cut_last_line_is_a_truncation(tmp_path: Path) -> None:
    cut = tmp_path / BITMEX.name
    cut.write_bytes(BITMEX.read_bytes().rstrip(b"\n")[:-30])
    with pytest.raises(IngestError) as caught:
        read_tardis([cut], IngestOptions())
    assert (caught.value.file, caught.value.line) == (str(cut), 11)
    assert "truncated" in caught.value.problem
