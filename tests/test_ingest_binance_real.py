"""binance-ws ingestion of the four real Binance captures in ../shared/data/real."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from nautilus_trader.model.enums import BookAction
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from backtests.cli import main as cmm
from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.realdata import BINANCE_CAPTURES, capture_paths, missing_reason
from catalog.validation import F_LAST, F_SNAPSHOT

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

# Trade counts from ../shared/data/real/hftbacktest-binance/SOURCES.md (both days where chained).
EXPECTED_TRADES = {
    "BTCUSDT-PERP.BINANCE": 21_313,
    "ETHUSDT-PERP.BINANCE": 14_076,
    "BTCUSDT.BINANCE": 9_757 + 10_147,
    "BTCUSD-PERP.BINANCE": 2_286 + 2_949,
}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Each capture ingested once through the command line, with its --json summary."""
    out = {}
    for instrument_id in BINANCE_CAPTURES:
        catalog = tmp_path_factory.mktemp("catalog")
        paths = [str(p) for p in capture_paths(instrument_id)]
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = cmm(["catalog", "ingest", "binance-ws", *paths, "--catalog", str(catalog), "--json"])
        assert code == 0
        out[instrument_id] = (catalog, json.loads(buffer.getvalue().strip().splitlines()[-1]))
    return out


@pytest.mark.parametrize("instrument_id", list(BINANCE_CAPTURES))
def test_capture_ingests_with_no_gap_and_no_crossed_book(ingested, instrument_id):
    _, summary = ingested[instrument_id]
    assert summary["instrument_id"] == instrument_id
    assert summary["trades"] == EXPECTED_TRADES[instrument_id]
    assert summary["gaps"] == 0
    assert summary["crossed"] == 0
    assert summary["deltas"] > 100_000
    assert set(summary) >= {"instrument_id", "deltas", "trades", "start", "end", "gaps", "crossed", "files"}
    assert summary["start"] < summary["end"]


@pytest.mark.parametrize("instrument_id", list(BINANCE_CAPTURES))
def test_catalog_round_trip_keeps_every_delta_and_trade(ingested, instrument_id):
    catalog_dir, summary = ingested[instrument_id]
    catalog = ParquetDataCatalog(str(catalog_dir))
    deltas = catalog.order_book_deltas(instrument_ids=[instrument_id])
    trades = catalog.trade_ticks(instrument_ids=[instrument_id])
    assert len(deltas) == summary["deltas"] and len(trades) == summary["trades"]
    assert deltas[0].action == BookAction.CLEAR and deltas[0].flags & F_SNAPSHOT
    assert deltas[-1].flags & F_LAST
    assert all(a.ts_init <= b.ts_init for a, b in zip(deltas[:5000], deltas[1:5001]))


def test_rebuilt_top_of_book_equals_the_book_ticker_at_the_end_of_each_file():
    """For every file, the book at its end equals the last bookTicker not newer than the last diff.

    On the named captures that is also simply the last bookTicker in the file, except for the spot
    day 1 file, whose last bookTicker (update id) runs ahead of its last 100 ms depth diff.
    """
    ahead_of_depth = {"btcusdt_20240808.gz@BTCUSDT.BINANCE"}
    for instrument_id in BINANCE_CAPTURES:
        result = read_binance_ws(capture_paths(instrument_id), IngestOptions())
        for path, end in result.extra["file_ends"].items():
            book = {k: end[k] for k in ("best_bid", "best_ask", "best_bid_size", "best_ask_size")}
            matching = {k: end["matching_book_ticker"][k] for k in book}
            assert book == matching, path
            last = {k: end["last_book_ticker"][k] for k in book}
            key = f"{path.rsplit('/', 1)[-1]}@{instrument_id}"
            if key not in ahead_of_depth:
                assert book == last, path
            else:
                assert end["last_book_ticker"]["update_id"] > end["last_update_id"]


def test_instruments_have_the_venue_filters():
    expected = {
        # id: (tick, size increment, order lot, multiplier, inverse, quote, settlement)
        "BTCUSDT-PERP.BINANCE": ("0.1", "0.001", "0.001", "1", False, "USDT", "USDT"),
        "ETHUSDT-PERP.BINANCE": ("0.01", "0.001", "0.001", "1", False, "USDT", "USDT"),
        "BTCUSDT.BINANCE": ("0.01", "0.000001", "0.00001", "1", False, "USDT", None),
        "BTCUSD-PERP.BINANCE": ("0.1", "1", "1", "100", True, "USD", "BTC"),
    }
    for instrument_id, (tick, size_inc, lot, mult, inverse, quote, settle) in expected.items():
        # Read only the first file of each capture: enough to build the instrument.
        result = read_binance_ws(capture_paths(instrument_id)[:1], IngestOptions())
        inst = result.instruments[0]
        assert inst.id == InstrumentId.from_str(instrument_id)
        assert Decimal(str(inst.price_increment)) == Decimal(tick)
        assert Decimal(str(inst.size_increment)) == Decimal(size_inc)
        assert Decimal(str(inst.lot_size)) == Decimal(lot)
        assert Decimal(str(inst.multiplier)) == Decimal(mult)
        assert inst.is_inverse is inverse
        assert inst.quote_currency.code == quote
        if settle is not None:
            assert inst.settlement_currency.code == settle


def test_instrument_id_override_applies_to_every_record(tmp_path):
    result = read_binance_ws(capture_paths("ETHUSDT-PERP.BINANCE"), IngestOptions(instrument_id=InstrumentId.from_str("ETH-TEST.SIM")))
    assert str(result.instruments[0].id) == "ETH-TEST.SIM"
    assert {str(d.instrument_id) for d in result.deltas[:1000]} == {"ETH-TEST.SIM"}
    assert {str(t.instrument_id) for t in result.trades[:1000]} == {"ETH-TEST.SIM"}
