"""CMMStrategy through NautilusTrader's BacktestEngine on the real BTCUSDT-PERP capture."""

from __future__ import annotations

import math

import pytest
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.enums import AccountType, BookType, OmsType
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money

from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.realdata import capture_paths, missing_reason
from catalog.validation import F_LAST
from cmm_strategy.strategy import CMMStrategy, CMMStrategyConfig
from tests.quick_bundle import build_quick_bundle

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

START = 100_000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    bundle = build_quick_bundle(tmp_path_factory.mktemp("bundle"))
    data = read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions())
    engine = BacktestEngine(config=BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(
        venue=Venue("BINANCE"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USDT,
        starting_balances=[Money(START, USDT)],
        book_type=BookType.L2_MBP,
    )
    instrument = data.instruments[0]
    engine.add_instrument(instrument)
    engine.add_data(data.deltas)
    engine.add_data(data.trades)
    strategy = CMMStrategy(CMMStrategyConfig(instrument_id=instrument.id, bundle_path=str(bundle)))
    engine.add_strategy(strategy)
    engine.run()
    batches = sum(1 for d in data.deltas if d.flags & F_LAST)
    yield engine, strategy, instrument, batches
    engine.dispose()


def test_one_decision_per_complete_batch(run):
    _, strategy, _, batches = run
    assert strategy.decisions == batches


def test_quotes_are_post_only_on_the_grid_and_fill(run):
    engine, strategy, instrument, _ = run
    quotes = [o for o in engine.cache.orders() if o.is_post_only]
    assert strategy.quote_updates == len(quotes) > 100
    tick = float(instrument.price_increment)
    for order in quotes:
        assert math.isclose(round(order.price.as_double() / tick) * tick, order.price.as_double(), abs_tol=1e-9)
    fills = engine.trader.generate_order_fills_report()
    assert len(fills) > 10
    assert (fills["liquidity_side"] == "MAKER").sum() >= len(fills) - 1  # the last one may be the closing market order


def test_fills_and_positions_reconcile_with_the_account(run):
    engine, _, _, _ = run
    fills = engine.trader.generate_order_fills_report()
    signed = sum((1 if side == "BUY" else -1) * float(qty) for side, qty in zip(fills["side"], fills["filled_qty"]))
    net = sum(float(p.signed_qty) for p in engine.cache.positions())
    assert math.isclose(signed, net, abs_tol=1e-9)
    cash = sum((-1 if side == "BUY" else 1) * float(qty) * float(px) for side, qty, px in zip(fills["side"], fills["filled_qty"], fills["avg_px"]))
    commissions = sum(float(str(c[0]).split()[0]) for c in fills["commissions"] if c)
    account = engine.cache.account_for_venue(Venue("BINANCE"))
    change = account.balance_total(USDT).as_double() - START
    assert net == 0  # on_stop flattens
    assert math.isclose(change, cash - commissions, abs_tol=1e-6)
