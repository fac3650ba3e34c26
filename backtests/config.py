"""The YAML run config shared by ``cmm backtest``, ``cmm paper`` and ``cmm sweep``.

One schema, checked strictly before anything heavy starts: an unknown key or a wrong type is refused
with the dotted path of the offending key (``venue.fill_model.nn: unknown key``), because a typo in a
backtest config otherwise silently runs the default and produces a plausible, wrong number.

Example (``backtests/configs/btcusdt-perp.yaml``)::

    catalog: out/real/catalog            # ParquetDataCatalog folder (relative: to the config file's folder
                                         #   first, then to the working directory)
    instrument_id: BTCUSDT-PERP.BINANCE
    time_range: {start_fraction: 0.6, end_fraction: 1.0}   # or {start: ISO-8601, end: ISO-8601}
    bundle: out/real/bundle-btc          # model bundle (needed by cmm and teacher_direct)
    venue:
      oms_type: NETTING                  # the venue name is the instrument's venue
      account_type: MARGIN
      starting_balances: ["100000 USDT"]
      fees: {maker: -0.0001, taker: 0.0004}   # fractions of notional; negative maker = rebate
      fill_model: {name: queue-power, n: 2}
      latency_model: {entry_ms: 5, response_ms: 5}
    strategy:
      name: cmm                          # see cmm_strategy.registry.STRATEGIES
      params: {q_max: 0.05, max_size: 0.01}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A run config that cannot be used; the message starts with the file and the key path."""


# Schema: key -> (accepted types, required). Nested dicts are schemas of their own; "any" blocks
# (strategy.params, fill_model, latency_model) are checked by their consumers with the same path style.
_ANY = object()
_VENUE_SCHEMA: dict[str, tuple[Any, bool]] = {
    "oms_type": ((str,), False),
    "account_type": ((str,), False),
    "starting_balances": ((list,), False),
    "book_type": ((str,), False),
    "fees": ({"maker": ((int, float), True), "taker": ((int, float), True)}, False),
    "fill_model": (_ANY, False),
    "latency_model": (_ANY, False),
    "leverage": ((int, float), False),
}
_SCHEMA: dict[str, tuple[Any, bool]] = {
    "catalog": ((str,), True),
    "instrument_id": ((str,), True),
    "time_range": (
        {
            "start": ((str, int), False),
            "end": ((str, int), False),
            "start_fraction": ((int, float), False),
            "end_fraction": ((int, float), False),
        },
        False,
    ),
    "bundle": ((str,), False),
    "venue": (_VENUE_SCHEMA, False),
    "strategy": ({"name": ((str,), True), "params": (_ANY, False)}, True),
    "name": ((str,), False),
    "seed": ((int,), False),
    "paper": (_ANY, False),  # live/paper-only settings, validated by backtests.paper
}


@dataclass(frozen=True)
class TimeRange:
    """Absolute bounds (ns since epoch, or ISO strings resolved later) or fractions of the data span."""

    start: str | int | None = None
    end: str | int | None = None
    start_fraction: float | None = None
    end_fraction: float | None = None


@dataclass(frozen=True)
class VenueSpec:
    oms_type: str = "NETTING"
    account_type: str = "MARGIN"
    starting_balances: tuple[str, ...] = ("100000 USDT",)
    book_type: str = "L2_MBP"
    maker_fee: float | None = None  # None: the instrument's own fees
    taker_fee: float | None = None
    fill_model: dict[str, Any] | None = None
    latency_model: dict[str, Any] | None = None
    leverage: float = 10.0


@dataclass(frozen=True)
class RunSpec:
    """A validated run config; paths are resolved and exist (the catalog at least)."""

    source: Path
    name: str
    catalog: Path
    instrument_id: str
    time_range: TimeRange
    venue: VenueSpec
    strategy: str
    strategy_params: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None
    seed: int = 0
    paper: dict[str, Any] = field(default_factory=dict)


def _check(node: Any, schema: dict[str, tuple[Any, bool]], path: str, where: str) -> None:
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: {path or 'top level'}: expected a mapping, got {type(node).__name__}")
    for key in node:
        if key not in schema:
            full = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"{where}: {full}: unknown key (known here: {', '.join(sorted(schema))})")
    for key, (kind, required) in schema.items():
        full = f"{path}.{key}" if path else key
        if key not in node:
            if required:
                raise ConfigError(f"{where}: {full}: required key missing")
            continue
        value = node[key]
        if kind is _ANY:
            continue
        if isinstance(kind, dict):
            _check(value, kind, full, where)
        elif isinstance(value, bool) or not isinstance(value, kind):
            names = " or ".join(t.__name__ for t in kind)
            raise ConfigError(f"{where}: {full}: expected {names}, got {type(value).__name__} {value!r}")


def _resolve_path(value: str, base: Path) -> Path:
    """Relative paths: next to the config file if that exists, else from the working directory."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    beside = (base / path).resolve()
    return beside if beside.exists() else path.resolve()


def _mapping_or_none(value: Any, path: str, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {path}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def parse_run_config(raw: Any, source: Path) -> RunSpec:
    """Validate one config mapping (``source`` names it in errors and anchors relative paths)."""
    where = str(source)
    _check(raw, _SCHEMA, "", where)
    base = source.parent
    catalog = _resolve_path(raw["catalog"], base)
    if not catalog.is_dir():
        raise ConfigError(f"{where}: catalog: no catalog folder at {catalog}")
    tr = raw.get("time_range") or {}
    time_range = TimeRange(tr.get("start"), tr.get("end"), tr.get("start_fraction"), tr.get("end_fraction"))
    for key in ("start_fraction", "end_fraction"):
        value = getattr(time_range, key)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where}: time_range.{key}: must be in [0, 1], got {value}")
    if (time_range.start is not None or time_range.end is not None) and (
        time_range.start_fraction is not None or time_range.end_fraction is not None
    ):
        raise ConfigError(f"{where}: time_range: give absolute start/end or fractions, not both")
    lo = time_range.start_fraction if time_range.start_fraction is not None else 0.0
    hi = time_range.end_fraction if time_range.end_fraction is not None else 1.0
    if lo >= hi:
        raise ConfigError(f"{where}: time_range: start_fraction {lo} must be below end_fraction {hi}")

    v = raw.get("venue") or {}
    balances = v.get("starting_balances", ["100000 USDT"])
    if not balances or not all(isinstance(b, str) and len(b.split()) == 2 for b in balances):
        raise ConfigError(f"{where}: venue.starting_balances: expected a list like ['100000 USDT'], got {balances!r}")
    fees = v.get("fees")
    venue = VenueSpec(
        oms_type=v.get("oms_type", "NETTING").upper(),
        account_type=v.get("account_type", "MARGIN").upper(),
        starting_balances=tuple(balances),
        book_type=v.get("book_type", "L2_MBP").upper(),
        maker_fee=float(fees["maker"]) if fees else None,
        taker_fee=float(fees["taker"]) if fees else None,
        fill_model=_mapping_or_none(v.get("fill_model"), "venue.fill_model", where),
        latency_model=_mapping_or_none(v.get("latency_model"), "venue.latency_model", where),
        leverage=float(v.get("leverage", 10.0)),
    )
    for key, allowed in (("oms_type", ("NETTING", "HEDGING")), ("account_type", ("MARGIN", "CASH")), ("book_type", ("L2_MBP", "L3_MBO"))):
        if getattr(venue, key) not in allowed:
            raise ConfigError(f"{where}: venue.{key}: expected one of {', '.join(allowed)}, got {getattr(venue, key)!r}")

    strategy = raw["strategy"]
    from cmm_strategy.registry import STRATEGIES

    if strategy["name"] not in STRATEGIES:
        raise ConfigError(f"{where}: strategy.name: unknown strategy {strategy['name']!r} (known: {', '.join(sorted(STRATEGIES))})")
    params = _mapping_or_none(strategy.get("params"), "strategy.params", where) or {}
    _check_strategy_params(strategy["name"], params, where)
    bundle = _resolve_path(raw["bundle"], base) if raw.get("bundle") else None
    if bundle is not None and not (bundle / "manifest.json").is_file():
        raise ConfigError(f"{where}: bundle: no model bundle (manifest.json) at {bundle}")
    return RunSpec(
        source=source,
        name=raw.get("name") or source.stem,
        catalog=catalog,
        instrument_id=raw["instrument_id"],
        time_range=time_range,
        venue=venue,
        strategy=strategy["name"],
        strategy_params=params,
        bundle=bundle,
        seed=int(raw.get("seed", 0)),
        paper=_mapping_or_none(raw.get("paper"), "paper", where) or {},
    )


def _check_strategy_params(name: str, params: dict[str, Any], where: str) -> None:
    """NautilusTrader decodes strategy configs leniently (unknown fields are dropped): refuse them here."""
    from nautilus_trader.common.config import resolve_config_path

    from cmm_strategy.registry import strategy_paths

    fields = set(resolve_config_path(strategy_paths(name)[1]).__struct_fields__)
    filled_by_runner = {"instrument_id", "bundle_path", "active_from_ns"}
    for key in params:
        if key not in fields or key in filled_by_runner:
            known = ", ".join(sorted(fields - filled_by_runner - {"strategy_id", "order_id_tag", "oms_type", "external_order_claims"}))
            why = "set by the runner from the top level" if key in filled_by_runner else "unknown key"
            raise ConfigError(f"{where}: strategy.params.{key}: {why} (known for {name}: {known})")


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunSpec:
    """Read and validate a YAML run config; ``overrides`` replace top-level keys (used by sweeps)."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"{source}: no such config file")
    try:
        raw = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if overrides:
        raw = merge_config(raw or {}, overrides)
    return parse_run_config(raw, source)


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``: mappings merge key by key (``venue``, ``strategy.params``), other
    values replace; a sweep varies one key of a config without restating the rest."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def strategy_config(spec: RunSpec) -> Any:
    """The NautilusTrader ``ImportableStrategyConfig`` of a run: params plus the instrument (and the
    bundle for strategies that need one), so every runner (backtest, paper, sweep) builds the same."""
    from cmm_strategy.registry import NEEDS_BUNDLE, importable_strategy

    params = {"instrument_id": spec.instrument_id, **spec.strategy_params}
    if spec.strategy in NEEDS_BUNDLE:
        if spec.bundle is None:
            raise ConfigError(f"{spec.source}: bundle: strategy {spec.strategy!r} needs a model bundle")
        params.setdefault("bundle_path", str(spec.bundle))
    return importable_strategy(spec.strategy, params)
