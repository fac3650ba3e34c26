"""Strategy names used in YAML configs (backtest, paper, sweep) mapped to NautilusTrader importables.

One table so that a config says ``strategy: {name: cmm, params: {...}}`` and every runner builds the
same ``ImportableStrategyConfig``; unknown names are refused with the list of known ones.
"""

from __future__ import annotations

from typing import Any

from nautilus_trader.config import ImportableStrategyConfig

# name -> (strategy path, config path), NautilusTrader "module:Class" form.
STRATEGIES: dict[str, tuple[str, str]] = {
    "cmm": ("cmm_strategy.strategy:CMMStrategy", "cmm_strategy.strategy:CMMStrategyConfig"),
    "fixed_spread": ("cmm_strategy.baselines:FixedSpreadStrategy", "cmm_strategy.baselines:FixedSpreadConfig"),
    "avellaneda_stoikov": ("cmm_strategy.baselines:AvellanedaStoikovStrategy", "cmm_strategy.baselines:AvellanedaStoikovConfig"),
    "glft": ("cmm_strategy.baselines:GLFTStrategy", "cmm_strategy.baselines:GLFTConfig"),
    "teacher_direct": ("cmm_strategy.teacher_direct:TeacherDirectStrategy", "cmm_strategy.teacher_direct:TeacherDirectConfig"),
}


class UnknownStrategyError(ValueError):
    """A config named a strategy that is not in ``STRATEGIES``."""


def strategy_paths(name: str) -> tuple[str, str]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None


# Strategies whose config takes ``bundle_path`` (filled from the run config's top-level ``bundle``).
NEEDS_BUNDLE: frozenset[str] = frozenset({"cmm", "teacher_direct"})


def importable_strategy(name: str, params: dict[str, Any]) -> ImportableStrategyConfig:
    """The NautilusTrader importable config for strategy ``name`` with config fields ``params``."""
    strategy_path, config_path = strategy_paths(name)
    return ImportableStrategyConfig(strategy_path=strategy_path, config_path=config_path, config=dict(params))
