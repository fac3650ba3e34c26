"""A BacktestEngine with one L2 margin venue, one instrument and in-memory data.

The benchmark and the engine tests need the same minimal set-up, without a catalog or a YAML config;
``cmm backtest`` (``backtests.runner``) builds its engines from configs through ``BacktestNode``.
"""

from __future__ import annotations

from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.enums import AccountType, BookType, OmsType
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money

START_BALANCE = 100_000


def build_l2_engine(strategy, instrument, deltas, trades, **venue) -> BacktestEngine:
    """Engine ready to ``run()``: NETTING margin venue in USDT with an L2_MBP book; ``venue`` adds
    ``add_venue`` arguments (fill model, modules, latency model, trade_execution)."""
    engine = BacktestEngine(config=BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(
        venue=Venue(instrument.id.venue.value),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USDT,
        starting_balances=[Money(START_BALANCE, USDT)],
        book_type=BookType.L2_MBP,
        **venue,
    )
    engine.add_instrument(instrument)
    engine.add_data(list(deltas))
    if trades:
        engine.add_data(list(trades))
    engine.add_strategy(strategy)
    return engine
