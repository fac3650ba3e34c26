"""Specification of the Databento reader on real CME files (ES futures, DBN).

The MBO file is the main one: 68,792 records (29,216 Add, 17,999 Cancel, 12,233 Modify, 6,371
Fill, 2,973 Trade per its SOURCES.md). Trades become trades, Fills are dropped (they do not change
the book), everything else is one delta each, plus the CLEAR that opens the snapshot.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import databento_dbn
import pytest
import zstandard
from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import OrderBookDelta, QuoteTick
from nautilus_trader.model.enums import AggressorSide, BookAction, BookType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import FuturesContract
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from catalog.databento import ParsedDatabento, futures_contract, parse_databento, read_databento
from catalog.errors import IngestError
from catalog.formats import IngestOptions
from catalog.staging import staged_catalog
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/data/real not present: real-data tests need the shared data folder", allow_module_level=True)

pytestmark = pytest.mark.real_data

DATABENTO = REAL / "nautilus_trader" / "tests" / "test_data" / "databento"
MBO = DATABENTO / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESU4_DIR = DATABENTO / "historical_bars_catalog" / "databento"
DEFINITION = ESU4_DIR / "futures_definition.dbn.zst"
MBP1 = ESU4_DIR / "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"
TRADES = ESU4_DIR / "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"
MBP10 = REAL / "nautilus_trader" / "crates" / "adapters" / "databento" / "test_data" / "test_data.mbp-10.dbn.zst"
ESH4 = InstrumentId.from_str("ESH4.GLBX")
ESU4 = InstrumentId.from_str("ESU4.GLBX")
AGGRESSOR = {"B": AggressorSide.BUYER, "A": AggressorSide.SELLER, "N": AggressorSide.NO_AGGRESSOR}


def _raw_records(path: Path) -> list:
    decoder = databento_dbn.DBNDecoder()
    decoder.write(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")).read())
    return decoder.decode()[1:]


def _action(record: object) -> str:
    return str(getattr(record.action, "value", record.action))


def _round_trip(instruments: list, deltas: list, trades: list, directory: Path) -> ParquetDataCatalog:
    with staged_catalog(directory) as catalog:
        catalog.write_data(instruments)
        if deltas:
            catalog.write_data(deltas)
        if trades:
            catalog.write_data(trades)
    return ParquetDataCatalog(str(directory))


def _top(book: OrderBook) -> tuple:
    return (book.best_bid_price(), book.best_bid_size(), book.best_ask_price(), book.best_ask_size())


def _state_per_ts(deltas: list[OrderBookDelta], book_type: BookType) -> dict[int, tuple]:
    """Top of book after the last complete batch of each ``ts_init``."""
    book = OrderBook(deltas[0].instrument_id, book_type)
    states: dict[int, tuple] = {}
    for delta in deltas:
        book.apply_delta(delta)
        if delta.flags & F_LAST:
            states[delta.ts_init] = _top(book)
    return states


@pytest.fixture(scope="module")
def mbo() -> ParsedDatabento:
    return parse_databento([MBO], IngestOptions())


def test_mbo_records_become_trades_and_one_delta_per_book_event(mbo: ParsedDatabento) -> None:
    (scan,) = mbo.files
    assert (scan.schema, scan.records, scan.complete) == ("mbo", 68_792, True)
    assert Counter(chr(a) for a in scan.mbo_actions) == {"A": 29_216, "C": 17_999, "M": 12_233, "F": 6_371, "T": 2_973}
    (stream,) = mbo.delta_streams
    assert (stream.instrument_id, stream.book_type) == (ESH4, BookType.L3_MBO)
    assert len(mbo.trade_streams[0].trades) == 2_973
    assert mbo.dropped_fills == 6_371
    # 68,792 records - 2,973 trades - 6,371 fills + 1 CLEAR opening the snapshot
    assert len(stream.deltas) == 59_449
    assert Counter(d.action.name for d in stream.deltas) == {"ADD": 29_216, "DELETE": 17_999, "UPDATE": 12_233, "CLEAR": 1}


def test_mbo_snapshot_is_cleared_and_closed_as_its_own_batch(mbo: ParsedDatabento) -> None:
    deltas = mbo.delta_streams[0].deltas
    snapshot = [d for d in deltas if d.flags & F_SNAPSHOT]
    assert deltas[: len(snapshot)] == snapshot
    assert snapshot[0].action == BookAction.CLEAR and len(snapshot) == 1 + 8_725
    assert [bool(d.flags & F_LAST) for d in snapshot].count(True) == 1 and snapshot[-1].flags & F_LAST
    ts = [d.ts_init for d in deltas]
    assert ts == sorted(ts)


def test_dropping_fills_never_changes_the_book_between_events(mbo: ParsedDatabento) -> None:
    """Fill UPDATEs only disturb the book inside a batch: the book after every event is the same."""
    raw = [d for d in DatabentoDataLoader().from_dbn_file(MBO) if isinstance(d, OrderBookDelta)]
    ours = _state_per_ts(mbo.delta_streams[0].deltas, BookType.L3_MBO)
    loaders = _state_per_ts(raw, BookType.L3_MBO)
    snapshot_ts = mbo.delta_streams[0].deltas[0].ts_init
    assert set(ours) - set(loaders) == {snapshot_ts}  # we close the snapshot as its own batch
    assert set(loaders) - set(ours) == set()
    assert {ts: ours[ts] for ts in loaders} == loaders
    assert len(ours) > 40_000
    # SOURCES.md: the book ends at bid 4810.00 / ask 4810.25.
    last = ours[max(ours)]
    assert (str(last[0]), str(last[2])) == ("4810.00", "4810.25")


def test_mbo_trade_aggressor_is_the_trade_record_side(mbo: ParsedDatabento) -> None:
    raw_trades = [r for r in _raw_records(MBO) if _action(r) == "T"]
    trades = mbo.trade_streams[0].trades
    assert [t.aggressor_side for t in trades] == [AGGRESSOR[str(getattr(r.side, "value", r.side))] for r in raw_trades]
    assert Counter(t.aggressor_side.name for t in trades) == {"BUYER": 1_542, "SELLER": 1_430, "NO_AGGRESSOR": 1}
    assert [float(t.price) for t in trades[:3]] == [r.price / 1e9 for r in raw_trades[:3]]


def test_mbo_round_trips_through_the_catalog(mbo: ParsedDatabento, tmp_path: Path) -> None:
    deltas, trades = mbo.delta_streams[0].deltas, mbo.trade_streams[0].trades
    contract = futures_contract(ESH4, deltas[0].ts_init)
    catalog = _round_trip([contract], deltas, trades, tmp_path / "catalog")
    back = catalog.order_book_deltas(instrument_ids=[str(ESH4)])
    back_trades = catalog.trade_ticks(instrument_ids=[str(ESH4)])
    assert (len(back), len(back_trades)) == (59_449, 2_973)
    for i in (0, 1, 8_726, 30_000, -1):
        got, want = back[i], deltas[i]
        assert (got.action, got.order.side, got.order.price, got.order.size, got.order.order_id, got.flags, got.ts_init) == (
            want.action, want.order.side, want.order.price, want.order.size, want.order.order_id, want.flags, want.ts_init,
        )
    (instrument,) = catalog.instruments()
    assert instrument.id == ESH4 and str(instrument.price_increment) == "0.25"


def test_the_mbo_book_crosses_only_in_the_pre_open_auction(mbo: ParsedDatabento) -> None:
    """CME accepts crossing orders before the open; the 23:00 UTC opening trade uncrosses the book."""
    book = OrderBook(ESH4, BookType.L3_MBO)
    crossed_at = []
    for delta in mbo.delta_streams[0].deltas:
        book.apply_delta(delta)
        if delta.flags & F_LAST:
            bid, ask = book.best_bid_price(), book.best_ask_price()
            if bid is not None and ask is not None and bid >= ask:
                crossed_at.append(delta.ts_init)
    first_trade = mbo.trade_streams[0].trades[0].ts_init
    assert len(crossed_at) == 891
    assert max(crossed_at) < first_trade
    assert datetime.fromtimestamp(first_trade / 1e9, tz=timezone.utc).strftime("%H:%M:%S") == "23:00:00"


def test_the_mbo_file_ingests_strictly_counting_the_pre_open_crossings() -> None:
    """An L3 book may cross in the pre-open auction: counted, not refused, not 'repaired'."""
    result = read_databento([MBO], IngestOptions())
    assert len(result.deltas) == 59_449
    assert result.crossed == 891


def test_repair_on_mbo_leaves_the_legitimate_crossings_alone() -> None:
    policy = ValidationPolicy(repair=True)
    result = read_databento([MBO], IngestOptions(policy=policy))
    assert len(result.deltas) == 59_449 and policy.problems == []


def test_mbp1_with_definition_and_trades_file(tmp_path: Path) -> None:
    result = read_databento([DEFINITION, MBP1, TRADES], IngestOptions())
    assert result.extra["schemas"] == {str(DEFINITION): "definition", str(MBP1): "mbp-1", str(TRADES): "trades"}
    assert result.extra["records"][str(MBP1)] == 2_288 and result.extra["records"][str(TRADES)] == 120
    # The definition file also holds NQU4; only the instrument the data uses is kept.
    (instrument,) = result.instruments
    assert isinstance(instrument, FuturesContract) and instrument.id == ESU4
    assert (str(instrument.price_increment), str(instrument.multiplier), instrument.info) == ("0.25", "50", {})
    # MBP-1 carries the same 120 trades as the trades file: each is kept once.
    assert len(result.trades) == 120 and result.extra["duplicate_trades"] == 120
    raw_trades = _raw_records(TRADES)
    assert [t.aggressor_side for t in result.trades] == [AGGRESSOR[str(getattr(r.side, "value", r.side))] for r in raw_trades]

    # The top of book after each batch is the loader's quote at that time.
    quotes = [q for q in DatabentoDataLoader().from_dbn_file(MBP1) if isinstance(q, QuoteTick)]
    expected = {q.ts_init: (q.bid_price, q.bid_size, q.ask_price, q.ask_size) for q in quotes}
    catalog = _round_trip(result.instruments, result.deltas, result.trades, tmp_path / "catalog")
    deltas = catalog.order_book_deltas(instrument_ids=[str(ESU4)])
    assert len(deltas) == len(result.deltas) == 2_266
    states = _state_per_ts(deltas, BookType.L2_MBP)
    assert states == {ts: expected[ts] for ts in states}
    # A batch for the first quote and for every quote that moves the top; none for the others.
    tops = [(q.bid_price, q.bid_size, q.ask_price, q.ask_size) for q in quotes]
    changes = 1 + sum(1 for a, b in zip(tops, tops[1:]) if a != b)
    assert sum(1 for d in deltas if d.flags & F_LAST) == changes
    assert len(catalog.trade_ticks(instrument_ids=[str(ESU4)])) == 120


def test_mbp10_levels_become_a_snapshot_then_level_changes(tmp_path: Path) -> None:
    depths = DatabentoDataLoader().from_dbn_file(MBP10)
    result = read_databento([MBP10], IngestOptions())
    assert len(depths) == 2 and result.extra["records"][str(MBP10)] == 2
    assert result.instrument_id == "ESH1.GLBX"
    catalog = _round_trip(result.instruments, result.deltas, result.trades, tmp_path / "catalog")
    deltas = catalog.order_book_deltas(instrument_ids=["ESH1.GLBX"])
    assert len(deltas) == len(result.deltas) == 22
    book = OrderBook(deltas[0].instrument_id, BookType.L2_MBP)
    depth_iter = iter(depths)
    for delta in deltas:
        book.apply_delta(delta)
        if delta.flags & F_LAST:
            depth = next(depth_iter)
            assert [(lv.price, lv.size()) for lv in book.bids()] == [(o.price, o.size) for o in depth.bids]
            assert [(lv.price, lv.size()) for lv in book.asks()] == [(o.price, o.size) for o in depth.asks]


def test_fallback_contract_matches_the_databento_definition() -> None:
    """Without a definition file, ES gets CME's specs; for ESU4 they equal Databento's definition."""
    (definition,) = [i for i in DatabentoDataLoader().from_dbn_file(DEFINITION) if i.id == ESU4]
    built = futures_contract(ESU4, 1_719_878_281_218_485_389)
    fields = ("price_increment", "multiplier", "lot_size", "underlying", "activation_ns", "expiration_ns", "exchange")
    assert {f: str(getattr(built, f)) for f in fields} == {f: str(getattr(definition, f)) for f in fields}
    esh4 = futures_contract(ESH4, 1_703_462_400_000_000_000)
    assert datetime.fromtimestamp(esh4.expiration_ns / 1e9, tz=timezone.utc).isoformat() == "2024-03-15T13:30:00+00:00"
    with pytest.raises(ValueError, match="no instrument definition"):
        futures_contract(InstrumentId.from_str("ZNH4.GLBX"), 0)


def _truncated_copy(source: Path, tmp_path: Path, keep: float) -> Path:
    data = source.read_bytes()
    target = tmp_path / source.name
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def test_a_truncated_file_stops_a_strict_ingest_naming_it(tmp_path: Path) -> None:
    cut = _truncated_copy(MBO, tmp_path, 0.5)
    with pytest.raises(IngestError) as caught:
        read_databento([cut], IngestOptions())
    assert caught.value.file == str(cut)
    assert caught.value.problem.startswith("truncated")
    assert 30_000 < caught.value.line < 40_000  # the first record that is not whole


def test_repair_keeps_the_whole_records_of_a_truncated_file(tmp_path: Path) -> None:
    cut = _truncated_copy(MBP1, tmp_path, 0.5)
    policy = ValidationPolicy(repair=True)
    result = read_databento([cut], IngestOptions(policy=policy))
    assert policy.counts() == {"truncated": 1}
    kept = result.extra["records"][str(cut)]
    assert 0 < kept < 2_288
    assert policy.problems[0].line == kept + 1
    assert 0 < len(result.deltas) < 2_266 and 0 < len(result.trades) <= 120


def test_uncompressed_dbn_reads_like_the_compressed_file(tmp_path: Path) -> None:
    plain = tmp_path / MBP1.name.removesuffix(".zst")
    plain.write_bytes(zstandard.ZstdDecompressor().stream_reader(open(MBP1, "rb")).read())
    a, b = read_databento([MBP1], IngestOptions()), read_databento([plain], IngestOptions())
    assert [str(d) for d in a.deltas] == [str(d) for d in b.deltas]
    assert [str(t) for t in a.trades] == [str(t) for t in b.trades]


def test_files_that_are_not_dbn_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.dbn.zst"
    text.write_text("hello")
    with pytest.raises(IngestError, match="not a DBN file") as caught:
        read_databento([text], IngestOptions())
    assert caught.value.file == str(text)
    missing = tmp_path / "missing.dbn.zst"
    with pytest.raises(IngestError, match="file not found") as caught:
        read_databento([missing], IngestOptions())
    assert caught.value.file == str(missing)


def test_instrument_id_option_renames_records_and_the_definition() -> None:
    wanted = InstrumentId.from_str("ESU4.XCME")
    result = read_databento([DEFINITION, TRADES], IngestOptions(instrument_id=wanted))
    assert {t.instrument_id for t in result.trades} == {wanted}
    (instrument,) = result.instruments
    assert instrument.id == wanted and instrument.info == {}  # ESU4's definition, renamed
