"""``cmm paper`` live configuration: the real Binance data client is built (no network), the paper
block and command line refuse bad input clearly, and the replay's pure parts behave."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta
from nautilus_trader.model.enums import BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from backtests.cli import main
from backtests.config import ConfigError, load_run_config
from backtests.paper.node import (
    PUBLIC_ONLY_KEY,
    PaperOptions,
    binance_data_config,
    build_session,
    parse_paper_settings,
)
from backtests.paper.recorder import F_LAST, split_flushable
from backtests.paper.replay_client import F_SNAPSHOT, build_events
from backtests.paper.report import Fill, FillLedger, mean_abs_position

EXAMPLE = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "paper-binance-btcusdt-perp.yaml"
IID = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")


@pytest.fixture
def example_spec(tmp_path):
    """The shipped live example, pointed at an empty catalog and a stub bundle (construction only)."""
    (tmp_path / "catalog").mkdir()
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    return load_run_config(EXAMPLE, overrides={"catalog": str(tmp_path / "catalog"), "bundle": str(tmp_path / "bundle")})


@pytest.fixture
def fresh_loop():
    """TradingNode takes the current event loop and closes it on dispose: give it its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(asyncio.new_event_loop())


def test_live_config_builds_the_real_binance_client_without_network(example_spec, tmp_path, monkeypatch, fresh_loop):
    from nautilus_trader.adapters.binance.futures.data import BinanceFuturesDataClient

    monkeypatch.delenv("BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("BINANCE_API_SECRET", raising=False)
    session = build_session(example_spec, PaperOptions(out=tmp_path / "out", log_level="ERROR"))
    try:
        client = session.data_client
        assert isinstance(client, BinanceFuturesDataClient)
        assert str(client.id) == "BINANCE" and str(client.venue) == "BINANCE"
        assert client._http_client.base_url == "https://fapi.binance.com"
        assert "X-MBX-APIKEY" not in client._http_client.headers  # public data: no placeholder key is sent
        assert not client.is_connected  # built, never connected
        node = session.node
        assert [str(c) for c in node.kernel.data_engine.registered_clients] == ["BINANCE"]
        assert [str(c) for c in node.kernel.exec_engine.registered_clients] == ["BINANCE"]  # the sandbox
        assert node.cache.instrument(IID) is not None  # from the built-in definition: the catalog is empty
        assert type(session.strategy).__name__ == "CMMStrategy"
        assert session.strategy.config.charge_latency is False  # the wall clock charges compute in a live node
        assert [str(a.id) for a in node.trader.actors()] == ["PaperHealth"]
    finally:
        session.node.dispose()


@pytest.mark.parametrize(
    ("instrument_id", "account_type"),
    [("BTCUSDT-PERP.BINANCE", "USDT_FUTURES"), ("BTCUSD-PERP.BINANCE", "COIN_FUTURES"), ("BTCUSDT.BINANCE", "SPOT")],
)
def test_binance_market_follows_the_instrument_id(instrument_id, account_type, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", "k")
    monkeypatch.setenv("BINANCE_API_SECRET", "s")
    config = binance_data_config(instrument_id, parse_paper_settings({}, "x"))
    assert config.account_type.value == account_type
    assert config.api_key == "k"  # real credentials are used when present
    monkeypatch.delenv("BINANCE_API_KEY")
    assert binance_data_config(instrument_id, parse_paper_settings({}, "x")).api_key == PUBLIC_ONLY_KEY


def test_live_paper_refuses_other_venues():
    with pytest.raises(ConfigError, match="Binance instruments"):
        binance_data_config("BTC-USDT.OKX", parse_paper_settings({}, "x"))


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"speed": "fast"}, "paper.speed: expected a number"),
        ({"speed": 0}, "paper.speed: must be positive"),
        ({"sped": 2}, "paper.sped: unknown key"),
        ({"cuts": [{"at_s": 1}]}, r"paper.cuts\[0\]: expected a mapping with exactly at_s and for_s"),
        ({"cuts": [{"at_s": 1, "for_s": -1}]}, r"paper.cuts\[0\].for_s: expected a non-negative number"),
        ({"binance": {"testnet": "yes"}}, "paper.binance.testnet: expected true or false"),
        ({"record_flush_rows": 1.5}, "paper.record_flush_rows: expected an integer"),
    ],
)
def test_paper_block_errors_name_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        parse_paper_settings(block, "cfg.yaml")


def test_cli_help_and_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["paper", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage: cmm paper" in help_text and "--replay CATALOG" in help_text and "--record DIR" in help_text
    assert main(["paper", str(EXAMPLE), "--speed", "5"]) == 2  # --speed without --replay
    assert "only with --replay" in capsys.readouterr().err
    assert main(["paper", str(tmp_path / "missing.yaml")]) == 2


# -- the pure parts of replay, recorder and report ----------------------------------------------------


def _delta(action, side, price, size, ts, flags=0):
    return OrderBookDelta(IID, action, BookOrder(side, Price(price, 1), Quantity(size, 3), 0), flags, 0, ts, ts)


def _market():
    """A snapshot, then updates at ts 2, 3, 4 (one delta each, F_LAST)."""
    snap = [OrderBookDelta.clear(IID, 0, 1, 1), _delta(BookAction.ADD, OrderSide.BUY, 100.0, 1.0, 1, F_SNAPSHOT),
            _delta(BookAction.ADD, OrderSide.SELL, 101.0, 1.0, 1, F_SNAPSHOT | F_LAST)]
    updates = [_delta(BookAction.UPDATE, OrderSide.BUY, 100.0, 2.0, 2, F_LAST),
               _delta(BookAction.ADD, OrderSide.SELL, 100.5, 0.5, 3, F_LAST),
               _delta(BookAction.DELETE, OrderSide.BUY, 100.0, 0.0, 4, F_LAST)]
    return snap + updates


def test_a_replay_starting_inside_the_data_begins_with_the_true_book():
    deltas = _market()
    events = build_events(deltas, [], start_ns=3, end_ns=10, size_precision=3)
    first = events[0].batch
    assert first[0].action == BookAction.CLEAR and all(d.flags & F_SNAPSHOT for d in first) and first[-1].flags & F_LAST
    replayed, truth = OrderBook(IID, BookType.L2_MBP), OrderBook(IID, BookType.L2_MBP)
    for event in events[:2]:  # the synthetic snapshot then the batch at ts 3
        for delta in event.batch:
            replayed.apply_delta(delta)
    for delta in deltas[:5]:
        truth.apply_delta(delta)
    levels = lambda book: [(lv.price, lv.size()) for lv in book.bids()] + [(lv.price, lv.size()) for lv in book.asks()]
    assert levels(replayed) == levels(truth) == [(Price(100.0, 1), 2.0), (Price(100.5, 1), 0.5), (Price(101.0, 1), 1.0)]
    assert [e.ts for e in events] == [3, 3, 4]


def test_recorder_chunks_never_share_a_timestamp():
    deltas = _market() + [_delta(BookAction.UPDATE, OrderSide.SELL, 101.0, 3.0, 4, 0)]  # ts 4 batch still open
    written, kept, _, _ = split_flushable(deltas, [])
    assert written and kept
    assert written[-1].flags & F_LAST
    assert max(d.ts_init for d in written) < min(d.ts_init for d in kept)


def test_ledger_pnl_and_map_on_a_one_second_grid():
    fills = [Fill(1_000_000_000, 1.0, 100.0, 0.01, True), Fill(3_000_000_000, -1.0, 102.0, 0.01, True)]
    ledger = FillLedger()
    for fill in fills:
        ledger.add(fill)
    assert ledger.position == 0 and ledger.pnl(None) == pytest.approx(2.0 - 0.02)
    # grid 0..4 s: position 0, 1, 1, 0, 0
    assert mean_abs_position(fills, 0, 4_000_000_000) == pytest.approx(2 / 5)
