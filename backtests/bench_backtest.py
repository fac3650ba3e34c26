"""``cmm bench``: backtest throughput of ``CMMStrategy`` against a strategy that does nothing.

Both run in this process on the same data through the same engine set-up (``BacktestEngine``, one
margin venue on ``L2_MBP`` with the default fill model, the instrument, the deltas then the trades),
alternating no-op / CMM so that drift on a shared machine hits both alike; only ``engine.run()`` is
timed (building the engine and sorting the data are the same for both and not the strategy's cost).
events = deltas + trades fed to the engine.
"""

from __future__ import annotations

import gc
import statistics
import time

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy

from backtests.l2_engine import build_l2_engine
from cmm_strategy.strategy import CMMStrategy, CMMStrategyConfig



class NoopConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId


class NoopStrategy(Strategy):
    """Subscribes to what ``CMMStrategy`` subscribes to (L2_MBP deltas, trade ticks) and does nothing:
    the engine's own cost of delivering the data."""

    def __init__(self, config: NoopConfig) -> None:
        super().__init__(config)

    def on_start(self) -> None:
        self.subscribe_order_book_deltas(self.config.instrument_id, BookType.L2_MBP)
        self.subscribe_trade_ticks(self.config.instrument_id)

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        pass

    def on_trade_tick(self, tick: TradeTick) -> None:
        pass


def timed_run(kind: str, data, bundle_path: str | None) -> tuple[float, dict[str, int]]:
    """Seconds of ``engine.run()`` for one fresh engine with the ``kind`` ("cmm" or "noop") strategy."""
    instrument = data.instruments[0]
    if kind == "cmm":
        strategy = CMMStrategy(CMMStrategyConfig(instrument_id=instrument.id, bundle_path=str(bundle_path)))
    else:
        strategy = NoopStrategy(NoopConfig(instrument_id=instrument.id))
    engine = build_l2_engine(strategy, instrument, data.deltas, data.trades)
    gc.collect()
    started = time.perf_counter()
    engine.run()
    elapsed = time.perf_counter() - started
    info = {}
    if kind == "cmm":
        costs = [c / 1000.0 for c in strategy.decision_costs_ns]
        info = {
            "decisions": strategy.decisions,
            "orders": len(engine.cache.orders()),
            "cost_p50": statistics.median(costs) if costs else None,
            "cost_p99": float(sorted(costs)[int(0.99 * (len(costs) - 1))]) if costs else None,
        }
    engine.dispose()
    return elapsed, info


def bench_backtest(data, bundle_path: str, repeats: int) -> dict[str, object]:
    """Median events/s of each strategy over ``repeats`` alternating runs after one warm-up run each."""
    events = len(data.deltas) + len(data.trades)
    timed_run("noop", data, None)
    timed_run("cmm", data, bundle_path)
    times: dict[str, list[float]] = {"noop": [], "cmm": []}
    ratios, info, cost_p50, cost_p99 = [], {}, [], []
    for i in range(repeats):
        order = ("noop", "cmm") if i % 2 == 0 else ("cmm", "noop")
        run = {}
        for kind in order:
            run[kind], extra = timed_run(kind, data, bundle_path)
            if extra:
                info = extra
                cost_p50.append(extra["cost_p50"])
                cost_p99.append(extra["cost_p99"])
            times[kind].append(run[kind])
        ratios.append(run["noop"] / run["cmm"])
    cmm, noop = statistics.median(times["cmm"]), statistics.median(times["noop"])
    return {
        "backtest_events_per_s_cmm": round(events / cmm),
        "backtest_events_per_s_noop": round(events / noop),
        "throughput_ratio": round(noop / cmm, 3),
        "throughput_ratio_runs": [round(r, 3) for r in ratios],
        "backtest_events": events,
        "backtest_deltas": len(data.deltas),
        "backtest_trades": len(data.trades),
        "backtest_repeats": repeats,
        "backtest_cmm_decisions": info.get("decisions"),
        "backtest_cmm_orders": info.get("orders"),
        "backtest_cmm_decision_cost_us_p50": round(statistics.median(cost_p50), 2) if cost_p50 and None not in cost_p50 else None,
        "backtest_cmm_decision_cost_us_p99": round(statistics.median(cost_p99), 2) if cost_p99 and None not in cost_p99 else None,
    }
