"""Assemble and run one paper session: a NautilusTrader TradingNode with a live (or replay) market
data client, the sandbox execution client, the run config's strategy, the health view and,
optionally, the recorder.

The strategy is built by ``backtests.config.strategy_config`` exactly as the backtests build it, so a
config moves from backtest to paper without touching strategy code. The venue block maps onto the
sandbox (balances, OMS, account, leverage, book type, fee overrides); the sandbox matches our orders
against the book it receives through the same message bus as the strategy (L2 deltas; trades too
when ``paper.trade_execution`` is true), with NautilusTrader's default fill and zero-latency models.

The ``paper:`` block of the run config (every key optional)::

    paper:
      speed: 10                 # replay only: market seconds per wall second (CLI --speed wins)
      health_interval_s: 5      # seconds between health lines
      duration_s: 3600          # stop after this many wall seconds (CLI --duration wins)
      stop_at_end: true         # replay only: stop when the data ends
      cuts: [{at_s: 60, for_s: 5}]   # replay only: pause the feed (tests the stale-feed guard)
      trade_execution: false    # also let trades fill resting orders (the backtests' default: false)
      record_flush_rows: 200000 # --record chunk size (deltas + trades)
      binance: {us: false, testnet: false}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from backtests.config import ConfigError, RunSpec

PUBLIC_ONLY_KEY = "cmm-public-market-data-only"  # placeholder credentials: no signed request is made
_EXPECTED_NUMBER = "expected a number"
_TIMEOUT_CONNECTION_S = 30.0


# -- the paper: block ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperSettings:
    speed: float = 1.0
    health_interval_s: float = 5.0
    duration_s: float | None = None
    stop_at_end: bool = True
    cuts: tuple[tuple[float, float], ...] = ()
    trade_execution: bool = False
    record_flush_rows: int = 200_000
    binance_us: bool = False
    binance_testnet: bool = False


def _number(block: dict[str, Any], key: str, where: str, positive: bool = True, integer: bool = False) -> Any:
    value = block[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(f"{where}: paper.{key}: {'expected an integer' if integer else _EXPECTED_NUMBER}, got {type(value).__name__} {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{where}: paper.{key}: must be positive, got {value!r}")
    return value


def _flag(block: dict[str, Any], key: str, where: str, prefix: str = "paper") -> bool:
    if not isinstance(block[key], bool):
        raise ConfigError(f"{where}: {prefix}.{key}: expected true or false, got {block[key]!r}")
    return block[key]


def _cuts(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: paper.cuts: expected a list like [{{at_s: 60, for_s: 5}}], got {value!r}")
    cuts = []
    for i, cut in enumerate(value):
        path = f"paper.cuts[{i}]"
        if not isinstance(cut, dict) or set(cut) != {"at_s", "for_s"}:
            raise ConfigError(f"{where}: {path}: expected a mapping with exactly at_s and for_s, got {cut!r}")
        for key in ("at_s", "for_s"):
            if isinstance(cut[key], bool) or not isinstance(cut[key], (int, float)) or cut[key] < 0:
                raise ConfigError(f"{where}: {path}.{key}: expected a non-negative number, got {cut[key]!r}")
        cuts.append((float(cut["at_s"]), float(cut["for_s"])))
    return tuple(cuts)


_PAPER_KEYS = ("speed", "health_interval_s", "duration_s", "stop_at_end", "cuts", "trade_execution", "record_flush_rows", "binance")


def parse_paper_settings(block: dict[str, Any], where: str) -> PaperSettings:
    """Validate the run config's free-form ``paper:`` block; errors name the dotted key path."""
    for key in block:
        if key not in _PAPER_KEYS:
            raise ConfigError(f"{where}: paper.{key}: unknown key (known here: {', '.join(sorted(_PAPER_KEYS))})")
    binance = block.get("binance", {})
    if not isinstance(binance, dict):
        raise ConfigError(f"{where}: paper.binance: expected a mapping, got {binance!r}")
    for key in binance:
        if key not in ("us", "testnet"):
            raise ConfigError(f"{where}: paper.binance.{key}: unknown key (known here: testnet, us)")
    return PaperSettings(
        speed=float(_number(block, "speed", where)) if "speed" in block else 1.0,
        health_interval_s=float(_number(block, "health_interval_s", where)) if "health_interval_s" in block else 5.0,
        duration_s=float(_number(block, "duration_s", where)) if "duration_s" in block else None,
        stop_at_end=_flag(block, "stop_at_end", where) if "stop_at_end" in block else True,
        cuts=_cuts(block["cuts"], where) if "cuts" in block else (),
        trade_execution=_flag(block, "trade_execution", where) if "trade_execution" in block else False,
        record_flush_rows=int(_number(block, "record_flush_rows", where, integer=True)) if "record_flush_rows" in block else 200_000,
        binance_us=_flag(binance, "us", where, "paper.binance") if "us" in binance else False,
        binance_testnet=_flag(binance, "testnet", where, "paper.binance") if "testnet" in binance else False,
    )


# -- what the session needs besides the run config -------------------------------------------------


@dataclass(frozen=True)
class PaperOptions:
    """Command-line choices: ``replay`` catalog (None: live feed), overrides, and where to write."""

    out: Path
    replay: Path | None = None
    speed: float | None = None
    duration_s: float | None = None
    record: Path | None = None
    log_level: str = "INFO"


@dataclass
class PaperSession:
    node: Any
    spec: RunSpec
    settings: PaperSettings
    options: PaperOptions
    instrument: Any
    strategy: Any
    health: Any
    recorder: Any = None
    data_clients: list[Any] = field(default_factory=list)
    sandbox: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None

    @property
    def data_client(self) -> Any:
        return self.data_clients[0] if self.data_clients else None


# -- instrument -----------------------------------------------------------------------------------


def _with_fees(instrument: Any, maker: float | None, taker: float | None) -> Any:
    """The instrument with the config's fee overrides (as the backtests apply them)."""
    if maker is None and taker is None:
        return instrument
    cls = type(instrument)
    values = cls.to_dict(instrument)
    if maker is not None:
        values["maker_fee"] = str(Decimal(str(maker)))
    if taker is not None:
        values["taker_fee"] = str(Decimal(str(taker)))
    return cls.from_dict(values)


def _catalog_instrument(path: Path, instrument_id: str) -> Any | None:
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    if not path.is_dir():
        return None
    found = ParquetDataCatalog(str(path)).instruments(instrument_ids=[instrument_id])
    return found[0] if found else None


def binance_market(instrument_id: str) -> Any:
    """USD-M (``BTCUSDT-PERP``), COIN-M (``BTCUSD-PERP``, Binance's ``BTCUSD_PERP``) or spot
    (``BTCUSDT``), from Nautilus' naming: COIN-M perpetuals are quoted in USD itself."""
    from catalog.instruments import BinanceMarket

    symbol = instrument_id.split(".")[0]
    if symbol.endswith("USD-PERP") or "_" in symbol:
        return BinanceMarket.COINM
    if symbol.endswith("-PERP"):
        return BinanceMarket.USDM
    return BinanceMarket.SPOT


def session_instrument(spec: RunSpec, replay: Path | None) -> Any:
    """Replay: the replayed catalog's definition. Live: the run catalog's (what was backtested), else
    the built-in Binance definition, so no authenticated exchange call is needed."""
    if replay is not None:
        instrument = _catalog_instrument(replay, spec.instrument_id)
        if instrument is None:
            raise ConfigError(f"--replay {replay}: no instrument {spec.instrument_id} in that catalog")
    else:
        instrument = _catalog_instrument(spec.catalog, spec.instrument_id)
        if instrument is None:
            from catalog.instruments import binance_instrument

            market = binance_market(spec.instrument_id)
            symbol = spec.instrument_id.split(".")[0]
            symbol = symbol.replace("-PERP", "_PERP") if market.name == "COINM" else symbol.removesuffix("-PERP")
            instrument = binance_instrument(market, symbol)
    return _with_fees(instrument, spec.venue.maker_fee, spec.venue.taker_fee)


# -- data clients --------------------------------------------------------------------------------


def binance_data_config(instrument_id: str, settings: PaperSettings) -> Any:
    """Public Binance market data for the instrument: diff-depth + REST snapshot, trades.

    NautilusTrader's factory insists on credentials; without ``BINANCE_API_KEY``/``BINANCE_API_SECRET``
    placeholders are passed and the key header is removed (public endpoints need none). Instruments
    are not loaded from the exchange (that is a signed call): the node adds its own definition."""
    from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
    from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
    from nautilus_trader.config import InstrumentProviderConfig

    from catalog.instruments import BinanceMarket

    if not instrument_id.endswith(".BINANCE"):
        raise ConfigError(f"instrument_id: live paper trading supports Binance instruments (*.BINANCE), got {instrument_id}")
    account_type = {
        BinanceMarket.USDM: BinanceAccountType.USDT_FUTURES,
        BinanceMarket.COINM: BinanceAccountType.COIN_FUTURES,
        BinanceMarket.SPOT: BinanceAccountType.SPOT,
    }[binance_market(instrument_id)]
    key, secret = os.environ.get("BINANCE_API_KEY"), os.environ.get("BINANCE_API_SECRET")
    if not (key and secret):
        key = secret = PUBLIC_ONLY_KEY
    return BinanceDataClientConfig(
        api_key=key,
        api_secret=secret,
        account_type=account_type,
        us=settings.binance_us,
        testnet=settings.binance_testnet,
        update_instruments_interval_mins=None,
        instrument_provider=InstrumentProviderConfig(load_all=False),
    )


def _capturing(factory: type, sink: list[Any], public_only: bool = False) -> type:
    """The factory, remembering the clients it builds (the data engine does not hand them out)."""

    class Capturing(factory):  # type: ignore[misc, valid-type]
        @staticmethod
        def create(*args: Any, **kwargs: Any) -> Any:
            client = factory.create(*args, **kwargs)
            http = getattr(client, "_http_client", None)
            if public_only and http is not None:
                http.headers.pop("X-MBX-APIKEY", None)
            sink.append(client)
            return client

    return Capturing


# -- the node ------------------------------------------------------------------------------------


def paper_strategy_config(spec: RunSpec) -> Any:
    """The backtests' strategy config, with simulated latency charging off unless the config sets it.

    In a backtest the strategy charges its measured compute cost by delaying its orders on the
    simulated clock; on a live node the wall clock has already charged it, so charging again would
    double it (and NautilusTrader warns about every time alert set in the past)."""
    from nautilus_trader.common.config import resolve_config_path
    from nautilus_trader.config import ImportableStrategyConfig

    from backtests.config import strategy_config

    config = strategy_config(spec)
    fields = getattr(resolve_config_path(config.config_path), "__struct_fields__", ())
    if "charge_latency" in fields and "charge_latency" not in spec.strategy_params:
        config = ImportableStrategyConfig(
            strategy_path=config.strategy_path,
            config_path=config.config_path,
            config={**config.config, "charge_latency": False},
        )
    return config


def build_session(spec: RunSpec, options: PaperOptions) -> PaperSession:
    """A built (not yet running) TradingNode for the run config, plus handles for health and report."""
    from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
    from nautilus_trader.adapters.sandbox.factory import SandboxLiveExecClientFactory
    from nautilus_trader.config import (
        LiveExecEngineConfig,
        LiveRiskEngineConfig,
        LoggingConfig,
        TradingNodeConfig,
    )
    from nautilus_trader.live.node import TradingNode

    from backtests.paper.health import HealthActor, HealthActorConfig
    from backtests.paper.recorder import RecorderActor, RecorderConfig
    from backtests.paper.replay_client import (
        ReplayDataClientConfig,
        ReplayDataClientFactory,
    )

    settings = parse_paper_settings(spec.paper, str(spec.source))
    speed = options.speed if options.speed is not None else settings.speed
    if not speed > 0:
        raise ConfigError(f"--speed: must be positive, got {speed}")
    instrument = session_instrument(spec, options.replay)
    venue = spec.instrument_id.split(".")[-1]
    options.out.mkdir(parents=True, exist_ok=True)

    if options.replay is not None:
        tr = spec.time_range
        data_name = "REPLAY"
        data_config: Any = ReplayDataClientConfig(
            catalog_path=str(options.replay),
            instrument_id=spec.instrument_id,
            speed=speed,
            start_ns=_absolute_ns(tr.start),
            end_ns=_absolute_ns(tr.end),
            start_fraction=tr.start_fraction,
            end_fraction=tr.end_fraction,
            cuts=settings.cuts,
        )
        data_factory: type = ReplayDataClientFactory
        public_only = False
    else:
        from nautilus_trader.adapters.binance.factories import (
            BinanceLiveDataClientFactory,
        )

        speed = 1.0
        data_name = "BINANCE"
        data_config = binance_data_config(spec.instrument_id, settings)
        data_factory = BinanceLiveDataClientFactory
        public_only = data_config.api_key == PUBLIC_ONLY_KEY

    # Replay compresses time by `speed`; the order-rate limits compress with it (100/s is the default).
    rate = f"{max(100, int(100 * speed))}/00:00:01"
    config = TradingNodeConfig(
        trader_id="PAPER-001",
        logging=LoggingConfig(
            log_level=options.log_level,
            log_level_file=options.log_level,
            log_directory=str(options.out),
            log_file_name="paper",
            log_colors=False,
            log_component_levels={"Portfolio": "WARNING"},  # one margin line per order otherwise
        ),
        data_clients={data_name: data_config},
        exec_clients={
            "SANDBOX": SandboxExecutionClientConfig(
                venue=venue,
                starting_balances=list(spec.venue.starting_balances),
                oms_type=spec.venue.oms_type,
                account_type=spec.venue.account_type,
                default_leverage=Decimal(str(spec.venue.leverage)),
                book_type=spec.venue.book_type,
                trade_execution=settings.trade_execution,
            ),
        },
        risk_engine=LiveRiskEngineConfig(max_order_submit_rate=rate, max_order_modify_rate=rate),
        exec_engine=LiveExecEngineConfig(reconciliation=True),
        strategies=[paper_strategy_config(spec)],
        timeout_connection=_TIMEOUT_CONNECTION_S,
        timeout_reconciliation=5.0,
        timeout_portfolio=5.0,
        timeout_disconnection=5.0,
        timeout_post_stop=1.0,
    )
    node = TradingNode(config=config)
    clients: list[Any] = []
    node.add_data_client_factory(data_name, _capturing(data_factory, clients, public_only))
    node.add_exec_client_factory("SANDBOX", SandboxLiveExecClientFactory)
    node.kernel.cache.add_instrument(instrument)  # before connect: the sandbox loads venue instruments then
    node.build()
    ignored = [f"venue.{key}" for key in ("fill_model", "latency_model") if getattr(spec.venue, key)]
    if ignored:
        node.get_logger().warning(f"{', '.join(ignored)} not applied in paper mode: the sandbox fills with NautilusTrader's default fill model and no latency")

    strategy = node.trader.strategies()[0]
    multiplier = float(instrument.multiplier) if hasattr(instrument, "multiplier") else 1.0
    health = HealthActor(
        HealthActorConfig(
            component_id="PaperHealth",
            instrument_id=spec.instrument_id,
            interval_s=settings.health_interval_s,
            json_path=str(options.out / "health.jsonl"),
            multiplier=multiplier,
        ),
        strategy=strategy,
    )
    node.trader.add_actor(health)
    recorder = None
    if options.record is not None:
        recorder = RecorderActor(RecorderConfig(component_id="PaperRecorder", instrument_id=spec.instrument_id, catalog_path=str(options.record), flush_rows=settings.record_flush_rows))
        node.trader.add_actor(recorder)
    sandbox = {"book_type": spec.venue.book_type, "trade_execution": settings.trade_execution, "ignored": ignored}
    return PaperSession(node, spec, settings, options, instrument, strategy, health, recorder, clients, sandbox=sandbox)


def _absolute_ns(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    import pandas as pd

    return int(pd.Timestamp(value).value)


# -- running ---------------------------------------------------------------------------------------


def run_session(session: PaperSession) -> dict[str, Any]:
    """Run until SIGINT/SIGTERM, ``duration_s``, or the end of a replay; then write the report.

    NautilusTrader's kernel owns the signal handlers: a signal stops the trader (the strategy's
    ``on_stop`` cancels its orders and flattens), disconnects the clients and returns from ``run``."""
    from backtests.paper.replay_client import REPLAY_TOPIC
    from backtests.paper.report import fills_from_cache, session_report, write_report

    node = session.node
    loop = node.get_event_loop()
    log = node.get_logger()

    def request_stop(reason: str) -> None:
        if session.stop_reason is None and node.is_running():
            session.stop_reason = reason
            log.info(f"Stopping paper session: {reason}")
            node.stop()

    def on_replay_status(status: dict[str, Any]) -> None:
        if status.get("state") == "finished" and session.settings.stop_at_end:
            loop.call_soon(request_stop, "replay finished")

    def watchdog() -> None:
        if not node.trader.is_running and node.is_running():
            log.error("Paper session did not start (a client failed to connect); stopping")
            request_stop("start-up failed")

    node.kernel.msgbus.subscribe(REPLAY_TOPIC, on_replay_status)
    duration = session.options.duration_s if session.options.duration_s is not None else session.settings.duration_s
    if duration is not None:
        loop.call_later(duration, request_stop, f"duration {duration:g} s reached")
    loop.call_later(_TIMEOUT_CONNECTION_S + 5.0, watchdog)

    started = node.kernel.clock.timestamp_ns()
    try:
        node.run()
    finally:
        ended = node.kernel.clock.timestamp_ns()
        report = session_report(
            fills=fills_from_cache(node.cache, session.instrument.id),
            mark=_mid(node.cache, session.instrument.id),
            start_ns=started,
            end_ns=ended,
            strategy=session.strategy,
            multiplier=float(getattr(session.instrument, "multiplier", 1) or 1),
            inverse=bool(getattr(session.instrument, "is_inverse", False)),
            meta=_meta(session),
        )
        report["account_pnl"] = _account_pnl(session)
        report["stop_reason"] = session.stop_reason or "signal"
        report["stale_episodes"] = session.health.stale_episodes
        write_report(report, session.options.out)
        node.dispose()
    return report


def _mid(cache: Any, instrument_id: Any) -> float | None:
    book = cache.order_book(instrument_id)
    if book is None or book.best_bid_price() is None or book.best_ask_price() is None:
        return None
    return (book.best_bid_price().as_double() + book.best_ask_price().as_double()) / 2


def _account_pnl(session: PaperSession) -> float | None:
    """The sandbox account's balance change in the settlement currency: a cross-check of ``pnl_mid``
    (equal to it, up to rounding, when the session ends flat)."""
    from nautilus_trader.model.identifiers import Venue

    instrument = session.instrument
    currency = getattr(instrument, "settlement_currency", None) or instrument.quote_currency
    account = session.node.cache.account_for_venue(Venue(session.spec.instrument_id.split(".")[-1]))
    start = next((float(b.split()[0]) for b in session.spec.venue.starting_balances if b.split()[1] == currency.code), None)
    if account is None or start is None or account.balance_total(currency) is None:
        return None
    return round(account.balance_total(currency).as_double() - start, 6)


def _meta(session: PaperSession) -> dict[str, Any]:
    spec, options = session.spec, session.options
    meta: dict[str, Any] = {
        "mode": "replay" if options.replay is not None else "live",
        "config": str(spec.source),
        "name": spec.name,
        "strategy": spec.strategy,
        "instrument_id": spec.instrument_id,
        "sandbox": session.sandbox,
    }
    client = session.data_client
    if options.replay is not None and client is not None:
        meta["replay"] = {
            "catalog": str(options.replay),
            "speed": client.speed,
            "market_s": round(client.market_ns / 1e9, 3),
            "finished": client.finished,
            "book_batches": client.published_batches,
            "trades": client.published_trades,
            "cuts": client.cuts_done,
        }
    if session.recorder is not None:
        meta["record"] = {"catalog": str(options.record), "deltas": session.recorder.written_deltas, "trades": session.recorder.written_trades}
    return meta
