"""``cmm backtest``: a run config -> NautilusTrader ``BacktestRunConfig`` -> ``BacktestNode`` -> results.

Everything that can be wrong with a config (strategy, bundle, instrument, time range, fill model) is
checked before the engine starts. The data streams from the catalog in chunks (``chunk_size``) so
memory stays flat on long data. The trading window is honest about the book: the data starts at the
capture (snapshot) that contains the window's start, the strategy rebuilds the book and warms its
features from there, and makes no decision before the window (``active_from_ns``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from nautilus_trader.backtest.config import BacktestDataConfig, BacktestEngineConfig, BacktestRunConfig, BacktestVenueConfig
from nautilus_trader.backtest.node import BacktestNode
from nautilus_trader.config import ImportableStrategyConfig, LoggingConfig
from nautilus_trader.model.data import OrderBookDelta
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from backtests.config import ConfigError, RunSpec, load_run_config, strategy_config
from backtests.fees import importable_fee_model
from backtests.metrics import RunRecord, compute_metrics, metric_units

RESULTS_VERSION = 1
CHUNK_SIZE = 200_000


@dataclass(frozen=True)
class Window:
    data_start_ns: int  # where the engine starts reading (a capture start: snapshot)
    start_ns: int  # trading window
    end_ns: int


def _to_ns(value: str | int, where: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(pd.Timestamp(value, tz="UTC").value) if pd.Timestamp(value).tzinfo is None else int(pd.Timestamp(value).value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a time: {value!r} ({exc})") from None


def resolve_window(spec: RunSpec, catalog: ParquetDataCatalog) -> Window:
    """The trading window in ns and where the data must start; refuses ranges with no data."""
    where = str(spec.source)
    known = sorted(str(i.id) for i in catalog.instruments())
    if spec.instrument_id not in known:
        raise ConfigError(f"{where}: instrument_id: {spec.instrument_id} not in catalog {spec.catalog} (it holds: {', '.join(known) or 'nothing'})")
    intervals = sorted(catalog.get_intervals(OrderBookDelta, spec.instrument_id))
    if not intervals:
        raise ConfigError(f"{where}: instrument_id: no order book deltas for {spec.instrument_id} in {spec.catalog}")
    first, last = intervals[0][0], intervals[-1][1]
    tr = spec.time_range
    if tr.start is not None or tr.end is not None:
        start = _to_ns(tr.start, f"{where}: time_range.start") if tr.start is not None else first
        end = _to_ns(tr.end, f"{where}: time_range.end") if tr.end is not None else last
    else:
        span = last - first
        start = first + int(span * (tr.start_fraction or 0.0))
        end = first + int(span * (tr.end_fraction if tr.end_fraction is not None else 1.0))
    start, end = max(start, first), min(end, last)
    if start >= end:
        iso = lambda ns: pd.Timestamp(ns, tz="UTC").isoformat()  # noqa: E731
        raise ConfigError(f"{where}: time_range: no data in the requested range (the catalog has {spec.instrument_id} from {iso(first)} to {iso(last)})")
    data_start = max((lo for lo, _ in intervals if lo <= start), default=first)
    return Window(data_start, start, end)


def build_run_config(spec: RunSpec, window: Window) -> BacktestRunConfig:
    """The NautilusTrader run config: venue (book, fills, latency, fees), streamed data, strategy."""
    from backtests.fill.registry import venue_setup
    from nautilus_trader.model.identifiers import InstrumentId

    try:
        fills = venue_setup(spec.venue.fill_model, spec.venue.latency_model)
    except ValueError as exc:
        raise ConfigError(f"{spec.source}: venue.{exc}") from None
    queue_model = bool(fills.modules) and "Queue" in (fills.fill_model.fill_model_path if fills.fill_model else "")
    venue_name = InstrumentId.from_str(spec.instrument_id).venue.value
    venue = BacktestVenueConfig(
        name=venue_name,
        oms_type=spec.venue.oms_type,
        account_type=spec.venue.account_type,
        starting_balances=list(spec.venue.starting_balances),
        default_leverage=spec.venue.leverage if spec.venue.account_type == "MARGIN" else 1.0,
        book_type=spec.venue.book_type,
        fee_model=importable_fee_model(spec.venue.maker_fee, spec.venue.taker_fee) if spec.venue.maker_fee is not None else None,
        trade_execution=queue_model,
        **fills.venue_kwargs(),
    )
    data = [
        BacktestDataConfig(
            catalog_path=str(spec.catalog),
            data_cls=f"nautilus_trader.model.data:{cls}",
            instrument_id=InstrumentId.from_str(spec.instrument_id),
            start_time=window.data_start_ns,
            end_time=window.end_ns,
        )
        for cls in ("OrderBookDelta", "TradeTick")
    ]
    strategy = strategy_config(spec)
    strategy = ImportableStrategyConfig(
        strategy_path=strategy.strategy_path,
        config_path=strategy.config_path,
        config={**strategy.config, "active_from_ns": window.start_ns},
    )
    # Under a queue model the matching engine logs an ERROR each time the fill model refuses a
    # queue-blind fill ("no fills from book when fills were expected"): expected, and hundreds per
    # run, so that one component is silenced (docs/fill-model.md).
    quiet = {f"OrderMatchingEngine({venue_name})": "OFF"} if queue_model else None
    engine = BacktestEngineConfig(strategies=[strategy], logging=LoggingConfig(log_level="ERROR", log_component_levels=quiet))
    return BacktestRunConfig(venues=[venue], data=[*data], engine=engine, chunk_size=CHUNK_SIZE, dispose_on_completion=False, raise_exception=True)


def _check_strategy_builds(run_config: BacktestRunConfig, spec: RunSpec) -> None:
    """Instantiate the strategy once (config types, bundle loading) so mistakes surface before data loads."""
    from nautilus_trader.config import StrategyFactory

    try:
        StrategyFactory.create(run_config.engine.strategies[0])
    except Exception as exc:  # noqa: BLE001 - any failure here is a config problem, reported with the file
        raise ConfigError(f"{spec.source}: strategy.params: {type(exc).__name__}: {exc}") from None


def record_from_engine(engine, strategy, instrument, window: Window) -> RunRecord:
    """Fills (NautilusTrader's own report), the strategy's mids and counters, for the window."""
    fills = engine.trader.generate_fills_report()  # one row per fill (not per order)
    quote_orders = [o for o in engine.cache.orders() if o.is_post_only]
    if len(fills):
        fills = fills.sort_values("ts_event", kind="stable")
        ts = np.array([pd.Timestamp(t).value for t in fills["ts_event"]], dtype=np.int64)
        fees = np.array([float(str(c).split()[0]) for c in fills["commission"]])
        side = np.where(fills["order_side"].astype(str).to_numpy() == "BUY", 1.0, -1.0)
        qty = fills["last_qty"].astype(float).to_numpy()
        px = fills["last_px"].astype(float).to_numpy()
        maker = fills["liquidity_side"].astype(str).to_numpy() == "MAKER"
    else:
        ts, fees, side, qty, px, maker = (np.zeros(0, dtype=np.int64), *(np.zeros(0),) * 4, np.zeros(0, dtype=bool))
    currency = instrument.base_currency if instrument.is_inverse else instrument.quote_currency
    mid_ts = np.asarray(strategy.mid_ts, dtype=np.int64)
    mid_px = np.asarray(strategy.mid_px, dtype=np.float64)
    return RunRecord(
        instrument_id=str(instrument.id),
        tick=float(instrument.price_increment),
        multiplier=float(instrument.multiplier),
        inverse=bool(instrument.is_inverse),
        currency=str(currency),
        start_ns=window.start_ns,
        end_ns=max(window.end_ns, int(ts.max()) if len(ts) else 0),
        fill_ts=ts,
        fill_sign=side,
        fill_qty=qty,
        fill_px=px,
        fill_fee=fees,
        fill_maker=maker,
        mid_ts=mid_ts,
        mid_px=mid_px,
        quote_updates=int(strategy.quote_updates),
        quote_orders=len(quote_orders),
        quote_orders_filled=sum(1 for o in quote_orders if o.filled_qty.as_double() > 0),
        decision_costs_ns=np.asarray(strategy.decision_costs_ns, dtype=np.int64),
    )


def save_record(record: RunRecord, path: Path) -> None:
    arrays = {k: v for k, v in asdict(record).items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in asdict(record).items() if not isinstance(v, np.ndarray)}
    np.savez_compressed(path, scalars=json.dumps(scalars), **arrays)


def load_record(path: Path) -> RunRecord:
    with np.load(path) as z:
        scalars = json.loads(str(z["scalars"]))
        arrays = {k: z[k] for k in z.files if k != "scalars"}
    return RunRecord(**scalars, **arrays)


def quote_segments(engine) -> list[tuple[str, float, int, int]]:
    """(side, price, from_ns, to_ns) of each post-only order while it rested at one price, from the
    orders' own events; used by the report's quote plot and by the engine tests."""
    out = []
    for order in engine.cache.orders():
        if not order.is_post_only:
            continue
        price, since = None, None
        for event in order.events:
            kind = type(event).__name__
            if kind == "OrderAccepted":
                price, since = float(order.events[0].options["price"]), event.ts_event
            elif kind == "OrderUpdated" and since is not None:
                out.append((order.side_string(), price, since, event.ts_event))
                price, since = event.price.as_double(), event.ts_event
            elif kind in ("OrderCanceled", "OrderExpired") and since is not None:
                out.append((order.side_string(), price, since, event.ts_event))
                since = None
            elif kind == "OrderFilled" and since is not None and event is order.events[-1] and order.is_closed:
                out.append((order.side_string(), price, since, event.ts_event))
                since = None
        if since is not None:
            out.append((order.side_string(), price, since, 1 << 62))
    return out


def account_change(engine, instrument) -> float:
    """The venue account's balance change in the settlement currency (NautilusTrader's own books)."""
    currency = instrument.base_currency if instrument.is_inverse else instrument.quote_currency
    account = engine.cache.account_for_venue(instrument.id.venue)
    start = [b for b in account.starting_balances().values() if b.currency == currency]
    return account.balance_total(currency).as_double() - (start[0].as_double() if start else 0.0)


def run_backtest(config: str | Path | RunSpec, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Validate, run through ``BacktestNode``, write ``results.json`` (+ record, report) into ``out_dir``."""
    spec = config if isinstance(config, RunSpec) else load_run_config(config)
    catalog = ParquetDataCatalog(str(spec.catalog))
    window = resolve_window(spec, catalog)
    run_config = build_run_config(spec, window)
    _check_strategy_builds(run_config, spec)
    out = Path(out_dir) if out_dir else Path("out/backtests") / spec.name
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"backtest {spec.name}: {spec.strategy} on {spec.instrument_id}, "
              f"{pd.Timestamp(window.start_ns, tz='UTC')} -> {pd.Timestamp(window.end_ns, tz='UTC')}", flush=True)
    started = time.perf_counter()
    node = BacktestNode(configs=[run_config])
    try:
        node.run()
        engine = node.get_engine(run_config.id)
        strategy = engine.trader.strategies()[0]
        instrument = engine.cache.instrument(strategy.config.instrument_id)
        record = record_from_engine(engine, strategy, instrument, window)
        events = engine.iteration
        segments = quote_segments(engine)
        change = account_change(engine, instrument)
        nautilus_fills = engine.trader.generate_fills_report()
        nautilus_fees = float(sum(float(str(c).split()[0]) for c in nautilus_fills["commission"])) if len(nautilus_fills) else 0.0
        extra = {
            "decisions": int(strategy.decisions),
            "modifies": int(getattr(strategy, "modifies", 0)),
            "rejects": int(getattr(strategy, "rejects", 0)),
            "rate_limited": int(getattr(strategy, "rate_limited", 0)),
            "killed": bool(getattr(strategy, "killed", False)),
        }
    finally:
        node.dispose()
    seconds = time.perf_counter() - started
    metrics = compute_metrics(record)
    results = {
        "version": RESULTS_VERSION,
        "name": spec.name,
        "config": str(spec.source),
        "strategy": spec.strategy,
        "strategy_params": spec.strategy_params,
        "instrument_id": spec.instrument_id,
        "bundle": str(spec.bundle) if spec.bundle else None,
        "fill_model": (spec.venue.fill_model or {"name": "queue-risk-averse"}).get("name", "queue-risk-averse"),
        "fees": {"maker": spec.venue.maker_fee, "taker": spec.venue.taker_fee},
        "window": {"start": pd.Timestamp(window.start_ns, tz="UTC").isoformat(), "end": pd.Timestamp(window.end_ns, tz="UTC").isoformat(),
                   "start_ns": window.start_ns, "end_ns": window.end_ns, "data_start_ns": window.data_start_ns},
        "currency": record.currency,
        "metrics": metrics,
        "units": metric_units(),
        "strategy_counters": extra,
        "reconciliation": {
            "account_balance_change": change,  # NautilusTrader's account
            "nautilus_fills": int(len(nautilus_fills)),  # NautilusTrader's fills report
            "nautilus_commissions": nautilus_fees,
            "final_position": float(record.position_at(np.array([record.end_ns]))[0]),
        },
        "engine_iterations": int(events),
        "wall_seconds": round(seconds, 2),
    }
    save_record(record, out / "record.npz")
    (out / "segments.json").write_text(json.dumps(segments))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    try:
        from backtests.report import write_report

        write_report(out)
    except ImportError:
        pass
    if progress:
        m = metrics
        print(f"  pnl {m['pnl']:.4f} {record.currency} (no rebates {m['pnl_no_rebates']:.4f}), fills {m['fills']}, "
              f"MAP {m['map']:.4g}, quote updates {m['quote_updates']}, {seconds:.1f} s -> {out}/results.json", flush=True)
    return results


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)
