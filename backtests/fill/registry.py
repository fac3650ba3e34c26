"""Fill and latency models selectable by name from a backtest config.

A YAML venue block says ``fill_model: {name: queue-power, n: 2}`` and
``latency_model: {entry_ms: 5, response_ms: 5}`` (or ``{path: latency.csv}``); these functions turn
that into what ``BacktestVenueConfig`` takes (importable configs), so configs never name classes.
Unknown names or parameters are refused, because a typo would otherwise run another model silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nautilus_trader.backtest.config import (
    ImportableFillModelConfig,
    ImportableLatencyModelConfig,
)
from nautilus_trader.common.config import ImportableActorConfig

_NM = "backtests.fill.nautilus_model"
_LAT = "backtests.fill.latency"

# name -> (queue model, accepted parameters). "nautilus-default" is the stock, queue-blind FillModel.
FILL_MODELS: dict[str, tuple[str | None, frozenset[str]]] = {
    "queue-risk-averse": ("risk_averse", frozenset()),
    "queue-power": ("power", frozenset({"n"})),
    "queue-log": ("log", frozenset()),
    "nautilus-default": (
        None,
        frozenset(
            {"prob_fill_on_limit", "prob_fill_on_stop", "prob_slippage", "random_seed"}
        ),
    ),
}
# The model closest to exact L3 queues in docs/fill-model.md (tests/test_fill_l3.py checks it stays so).
DEFAULT_FILL_MODEL = "queue-risk-averse"


@dataclass(frozen=True)
class VenueSetup:
    """The pieces of a ``BacktestVenueConfig`` a model needs: pass them as keyword arguments."""

    fill_model: ImportableFillModelConfig | None = None
    latency_model: ImportableLatencyModelConfig | None = None
    modules: list[ImportableActorConfig] = field(default_factory=list)

    def venue_kwargs(self) -> dict[str, Any]:
        return {
            "fill_model": self.fill_model,
            "latency_model": self.latency_model,
            "modules": list(self.modules),
        }


def _check(where: str, params: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]}: unknown key (accepted: {sorted(allowed) or 'none'})"
        )


def venue_fill_setup(name: str = DEFAULT_FILL_MODEL, **params: Any) -> VenueSetup:
    """Fill model config plus the simulation module it needs (the queue models need the L2 book)."""
    if name not in FILL_MODELS:
        raise ValueError(
            f"fill_model.name: unknown model {name!r} (choose from {sorted(FILL_MODELS)})"
        )
    queue_model, allowed = FILL_MODELS[name]
    _check("fill_model", params, allowed)
    if queue_model is None:
        fill = ImportableFillModelConfig(
            fill_model_path="nautilus_trader.backtest.models:FillModel",
            config_path="nautilus_trader.backtest.config:FillModelConfig",
            config=dict(params),
        )
        return VenueSetup(fill_model=fill)
    config: dict[str, Any] = {"model": queue_model}
    if "n" in params:
        n = float(params["n"])
        if n <= 0:
            raise ValueError(f"fill_model.n: must be > 0, got {n}")
        config["n"] = n
    fill = ImportableFillModelConfig(
        fill_model_path=f"{_NM}:QueuePositionFillModel",
        config_path=f"{_NM}:QueueFillModelConfig",
        config=config,
    )
    module = ImportableActorConfig(
        actor_path=f"{_NM}:QueuePositionModule",
        config_path=f"{_NM}:QueueModuleConfig",
        config={},
    )
    return VenueSetup(fill_model=fill, modules=[module])


def venue_latency_setup(
    entry_ms: float = 0.0, response_ms: float = 0.0, path: str | None = None
) -> VenueSetup:
    """Fixed entry/response latency, or a recording replayed by a module (then the fixed values seed it)."""
    if entry_ms < 0 or response_ms < 0:
        raise ValueError("latency_model: entry_ms and response_ms must be >= 0")
    latency = ImportableLatencyModelConfig(
        latency_model_path=f"{_LAT}:EntryResponseLatencyModel",
        config_path=f"{_LAT}:EntryResponseLatencyConfig",
        config={
            "entry_latency_nanos": int(entry_ms * 1e6),
            "response_latency_nanos": int(response_ms * 1e6),
        },
    )
    modules = []
    if path is not None:
        modules.append(
            ImportableActorConfig(
                actor_path=f"{_LAT}:LatencyReplayModule",
                config_path=f"{_LAT}:LatencyReplayConfig",
                config={"path": str(path)},
            )
        )
    return VenueSetup(latency_model=latency, modules=modules)


def venue_setup(
    fill_model: dict[str, Any] | None, latency_model: dict[str, Any] | None
) -> VenueSetup:
    """Both YAML blocks at once (either may be absent: default fill model, no latency)."""
    fill_params = dict(fill_model or {})
    fill = venue_fill_setup(fill_params.pop("name", DEFAULT_FILL_MODEL), **fill_params)
    if latency_model is None:
        return fill
    latency_params = dict(latency_model)
    _check(
        "latency_model", latency_params, frozenset({"entry_ms", "response_ms", "path"})
    )
    latency = venue_latency_setup(**latency_params)
    return VenueSetup(
        fill.fill_model, latency.latency_model, [*fill.modules, *latency.modules]
    )
