"""Fit the synthetic market's parameters to a real capture's stylized facts.

Owns the mapping from ``MarketStats`` (measured by ``stats``) to ``SynthParams`` and the calibration
JSON (source files and their sha256, the parameters, the target and fitted statistics). It must not
read venue formats itself (the real data comes through ``catalog.binance_ws``) and must never copy
real data anywhere: only summary statistics and parameters leave this module.

Method, in two stages:

1. *Moments*: every parameter with a direct counterpart in the data is set from it (size
   distributions as quantile tables, event rates from per-batch change probabilities, jump sizes
   from batch mid moves, regime vols from tercile windows, and so on).
2. *Simulated moments*: parameters whose effect goes through the book's dynamics (jump-rate
   scale, regime spread, cancel and add rates, momentum, resilience) are refined by a few damped
   fixed-point steps: simulate with a fixed seed, measure with the same ``market_stats``, and move
   each parameter by the ratio of target to simulated moment. A fixed seed (common random numbers)
   keeps the steps from chasing simulation noise.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from catalog.synth.generate import synthetic_instrument, tape_to_nautilus
from catalog.synth.model import QuantileSampler, SynthParams, simulate
from catalog.synth.stats import QUANTILES, MarketStats, market_stats

BINANCE_BATCH_S = 0.05  # Binance futures publish depth diffs at most every ~50 ms
CALIBRATION_SEED = 20240808
DAMPING = 0.5  # exponent on each fixed-point ratio: < 1 so that the steps settle
MAX_STEP = 2.0  # no parameter moves by more than this factor in one step
SMOOTH_FROM = 3  # depth levels from this distance on are smoothed (5-level mean): the real
# profile there is a handful of resting orders, not a shape a model should copy level by level

# The statistics recorded with the parameters (targets) and re-measured on the fitted model.
SUMMARY_KEYS = (
    "duration_s",
    "batches_per_s",
    "trades_per_s",
    "market_orders_per_s",
    "fills_per_market_order",
    "trade_size_mean",
    "trade_size_median",
    "market_order_size_mean",
    "market_order_size_median",
    "spread_mean_ticks",
    "spread_one_tick_fraction",
    "touch_size_mean",
    "depth_1_4",
    "depth_5_19",
    "depth_empty_1_19",
    "move_prob_per_batch",
    "move_sign_acf",
    "small_move_fraction",
    "mid_change_1s_std_ticks",
    "mid_change_1s_zero_fraction",
    "mid_change_1s_kurtosis",
    "abs_change_acf_mean",
    "vol_tercile_ratio",
    "vol_regime_run_s",
    "trade_rate_high_over_low_vol",
    "imbalance_next_1s_corr",
    "ofi_next_1s_corr",
    "ofi_same_1s_corr",
    "mo_sign_imbalance_corr",
)


def summary(stats: MarketStats) -> dict[str, float]:
    """The headline numbers of a ``MarketStats``, as one flat dict (also used by the tests)."""
    d = stats.as_dict()
    d["touch_size_mean"] = stats.depth_mean[0]
    d["depth_1_4"] = float(sum(stats.depth_mean[1:5]))
    d["depth_5_19"] = float(sum(stats.depth_mean[5:20]))
    d["abs_change_acf_mean"] = float(np.mean(stats.abs_change_acf))
    median = QUANTILES.index(0.5)
    d["trade_size_median"] = stats.trade_size_quantiles[median]
    d["market_order_size_median"] = stats.market_order_size_quantiles[median]
    d["spread_one_tick_fraction"] = stats.spread_fractions[0]
    d["depth_empty_1_19"] = float(np.mean(stats.depth_empty[1:20]))
    low, high = stats.trade_rate_by_vol_tercile[0], stats.trade_rate_by_vol_tercile[-1]
    d["trade_rate_high_over_low_vol"] = high / low if low > 0 else 0.0
    return {k: float(d[k]) for k in SUMMARY_KEYS}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _smooth(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    out = v.copy()
    for d in range(SMOOTH_FROM, len(v)):
        lo, hi = max(SMOOTH_FROM, d - 2), min(len(v), d + 3)
        out[d] = v[lo:hi].mean()
    return out


def _rate_from_prob(prob: np.ndarray, interval_s: float) -> np.ndarray:
    return -np.log1p(-np.clip(prob, 1e-6, 0.999)) / interval_s


def _monotone(values: list[float], floor: float) -> list[float]:
    return [float(x) for x in np.maximum.accumulate(np.maximum(np.asarray(values, dtype=np.float64), floor))]


def _round(x: float, digits: int = 5) -> float:
    return float(f"{x:.{digits}g}") if x else 0.0


def moment_params(real: MarketStats) -> SynthParams:
    """Stage 1: parameters set directly from the measured moments (see the module docstring)."""
    interval = 1.0 / real.batches_per_s
    k = len(real.depth_mean)
    lot = real.lot
    levels = list(QUANTILES)
    limit_size = _monotone(real.limit_size_quantiles, lot)
    unit = QuantileSampler(levels, limit_size, lot).mean_units() * lot  # mean limit order, base units
    jump_ticks = _monotone([max(1.0, round(x)) for x in real.move_size_quantiles], 1.0)
    jump_sq = float(np.mean(QuantileSampler(levels, jump_ticks, 1.0)(np.random.default_rng(0), 200_000).astype(float) ** 2))
    weights = np.asarray(real.vol_window_rms_ticks, dtype=np.float64) ** 2
    weights = weights / weights.mean()
    base_jump = real.mid_change_1s_std_ticks**2 / jump_sq
    mo_mean = real.market_order_size_mean
    stale_decay = 4.0  # prior; refined in stage 2 through the imbalance -> next-move correlation
    # Touch: events/s from the change probability; inflow balances cancels plus takers' outflow.
    touch_events = float(_rate_from_prob(np.asarray([real.level_change_prob[0]]), interval)[0])
    takers_side = real.market_orders_per_s / 2
    taker_flow = takers_side * mo_mean / unit  # in limit-order units per second
    touch_add = max((touch_events - takers_side + taker_flow) / 2, touch_events / 4)
    touch_cancel_events = max(touch_add - taker_flow, 0.1 * touch_add)
    touch_cancel = touch_cancel_events * unit / max(real.depth_mean[0], unit)
    # Deeper levels: a birth-death queue changes 2 * add-rate times per second at equilibrium.
    depth = np.maximum(_smooth(real.depth_mean), lot)
    change = _smooth(real.level_change_prob)
    level_add = _rate_from_prob(change, interval) / 2
    level_cancel = level_add * unit / depth
    hold = (1 - real.spread_fractions[0]) / max(real.move_prob_per_batch, 1e-6)
    return SynthParams(
        tick=real.tick,
        lot=lot,
        start_price=real.start_mid,
        depth_levels=k,
        batch_interval_min_s=min(BINANCE_BATCH_S, 0.95 * interval),
        batch_interval_mean_s=interval,
        regime_dwell_s=max(real.vol_regime_run_s, 1.0),
        jump_rate=[float(base_jump * (1 - 0.3) * w) for w in weights],
        jump_continue_prob=float(np.clip((1 + real.move_sign_acf) / 2, 0.5, 0.97)),
        jump_size_ticks=jump_ticks,
        mo_rate=[float(real.market_orders_per_s * max(r, 0.05)) for r in real.trade_rate_by_vol_tercile],
        mo_imbalance_tilt=float(np.clip(real.mo_sign_imbalance_corr / 2, 0.0, 0.5)),
        informed_mo_rate=float(stale_decay * real.depth_mean[0] / max(mo_mean, lot)),
        mo_size=_monotone(real.market_order_size_quantiles, lot),
        fill_size=_monotone([1.5 * x for x in real.trade_size_quantiles], lot),
        limit_size=limit_size,
        touch_size=_monotone(real.new_touch_size_quantiles, lot),
        touch_add_rate=float(touch_add),
        touch_cancel_rate=float(touch_cancel),
        level_add_rate=[float(x) for x in level_add[1:]],
        level_cancel_rate=[float(x) for x in level_cancel[1:]],
        stale_decay_rate=stale_decay,
        old_touch_keep=float(np.clip(real.old_touch_kept_fraction, 0.0, 1.0)),
        noise_move_prob=0.3,
        stale_level_survive_prob=0.3,
        jump_excitation=0.3,
        jump_excitation_decay_s=1.0,  # prior: bursts last about a second (the statistics' horizon)
        refill_delay_prob=float(np.clip(hold, 0.0, 0.5)),
        quantile_levels=levels,
    )


def simulated_stats(params: SynthParams, minutes: float, seed: int) -> MarketStats:
    """Run the model and measure it exactly as the real data was measured."""
    tape = simulate(params, minutes * 60.0, seed, start_ns=0)
    instrument = synthetic_instrument("CALIBRATION-PERP.SIM", params)
    deltas, trades = tape_to_nautilus(tape, instrument, params)
    return market_stats(deltas, trades, params.tick, params.depth_levels)


def _ratio(target: float, simulated: float, power: float = 1.0) -> float:
    if target <= 0 or simulated <= 0 or not math.isfinite(simulated):
        return 1.0
    return float(np.clip((target / simulated) ** (power * DAMPING), 1 / MAX_STEP, MAX_STEP))


def refine_step(p: SynthParams, real: MarketStats, sim: MarketStats) -> SynthParams:
    """Stage 2, one damped fixed-point step: move each parameter towards its moment."""
    jump_scale = _ratio(real.mid_change_1s_std_ticks, sim.mid_change_1s_std_ticks, 2.0)
    # Regime spread: exponent on the regime weights, from the tercile ratio (log scale).
    w = np.asarray(p.jump_rate, dtype=np.float64)
    logw = np.log(w / np.exp(np.log(w).mean()))
    # Two noisy views of the same clustering (tercile ratio, |1 s change| autocorrelation) vote.
    by_ratio = math.log(max(real.vol_tercile_ratio, 1.01)) / math.log(max(sim.vol_tercile_ratio, 1.01))
    by_acf = float(np.clip(max(np.mean(real.abs_change_acf), 0.01) / max(np.mean(sim.abs_change_acf), 0.01), 0.5, 2.0))
    logw = logw * float(np.clip(math.sqrt(by_ratio * by_acf) ** DAMPING, 0.5, 2.0))
    jump_rate = np.exp(logw) * np.exp(np.log(w).mean()) * jump_scale
    mo_scale = _ratio(real.market_orders_per_s, sim.market_orders_per_s)
    # Bursts: more self-excitation, more quiet seconds at the same volatility.
    excitation = p.jump_excitation + 0.5 * (real.mid_change_1s_zero_fraction - sim.mid_change_1s_zero_fraction)
    fill_scale = _ratio(sim.fills_per_market_order, real.fills_per_market_order, 1.5)
    touch_change = _ratio(real.level_change_prob[0], sim.level_change_prob[0])
    touch_size = _ratio(real.depth_mean[0], sim.depth_mean[0], 0.5)
    target_depth, sim_depth = _smooth(real.depth_mean)[1:], _smooth(sim.depth_mean)[1:]
    target_change, sim_change = _smooth(real.level_change_prob)[1:], _smooth(sim.level_change_prob)[1:]
    depth_ratio = np.array([_ratio(t, s, 0.5) for t, s in zip(target_depth, sim_depth)])
    change_ratio = np.array([_ratio(t, s) for t, s in zip(target_change, sim_change)])
    tilt = p.mo_imbalance_tilt * _ratio(real.mo_sign_imbalance_corr, sim.mo_sign_imbalance_corr)
    return replace(
        p,
        jump_rate=[float(x) for x in jump_rate],
        mo_rate=[x * mo_scale for x in p.mo_rate],
        jump_excitation=float(np.clip(excitation, 0.0, 0.9)),
        informed_mo_rate=p.informed_mo_rate * mo_scale,
        fill_size=_monotone([x * fill_scale for x in p.fill_size], p.lot),
        touch_add_rate=p.touch_add_rate * touch_change * touch_size,
        touch_cancel_rate=p.touch_cancel_rate * touch_change / touch_size,
        level_add_rate=[float(x) for x in np.asarray(p.level_add_rate) * change_ratio * depth_ratio],
        level_cancel_rate=[float(x) for x in np.asarray(p.level_cancel_rate) * change_ratio / depth_ratio],
        mo_imbalance_tilt=float(np.clip(tilt, 0.0, 0.5)),
        jump_continue_prob=float(np.clip(p.jump_continue_prob + 0.5 * (real.move_sign_acf - sim.move_sign_acf), 0.5, 0.97)),
        noise_move_prob=float(np.clip(p.noise_move_prob * _ratio(real.small_move_fraction, sim.small_move_fraction), 0.01, 1.0)),
        stale_decay_rate=float(np.clip(p.stale_decay_rate * _ratio(sim.imbalance_next_1s_corr, real.imbalance_next_1s_corr), 1.0, 20.0)),
    )


_ARITHMETIC = {"jump_excitation", "jump_continue_prob", "noise_move_prob", "old_touch_keep", "refill_delay_prob", "stale_level_survive_prob", "mo_imbalance_tilt"}


def average_params(history: list[SynthParams]) -> SynthParams:
    """Polyak averaging of fixed-point iterates: geometric mean for rates and sizes, plain mean
    for probabilities. The iterates scatter around the fixed point by simulation noise; their
    mean is closer to it than any single one."""
    first = history[0]
    values: dict[str, object] = {}
    for key, value in first.to_dict().items():
        column = [getattr(h, key) for h in history]
        if isinstance(value, float):
            values[key] = float(np.mean(column)) if key in _ARITHMETIC or min(column) <= 0 else float(np.exp(np.mean(np.log(column))))
        elif isinstance(value, list) and key != "quantile_levels":
            arr = np.asarray(column, dtype=np.float64)
            values[key] = [float(x) for x in (np.exp(np.log(arr).mean(axis=0)) if arr.min() > 0 else arr.mean(axis=0))]
    return replace(first, **values)


def fit(
    real: MarketStats,
    iterations: int = 10,
    minutes: float = 30.0,
    seed: int = CALIBRATION_SEED,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[SynthParams, MarketStats]:
    """Both stages; returns the parameters and the statistics of their own simulation.

    The returned parameters average the second half of the iterates (``average_params``).
    """
    params = moment_params(real)
    history = [params]
    for i in range(iterations):
        sim = simulated_stats(params, minutes, seed)
        if progress is not None:
            progress(i, summary(sim))
        params = refine_step(params, real, sim)
        history.append(params)
    final = average_params(history[len(history) // 2 :]) if iterations else params
    return final, simulated_stats(final, minutes, seed + 1)


def _rounded_params(params: SynthParams) -> dict:
    out = {}
    for key, value in params.to_dict().items():
        if isinstance(value, float):
            out[key] = _round(value)
        elif isinstance(value, list):
            out[key] = [_round(float(v)) for v in value]
        else:
            out[key] = value
    return out


def calibration_payload(
    real: MarketStats,
    params: SynthParams,
    sim: MarketStats,
    files: list[Path],
    instrument_id: str,
    iterations: int,
    minutes: float,
    seed: int,
) -> dict:
    """The calibration file's content: provenance first, then parameters, then the evidence."""
    return {
        "description": "Synthetic L2 market parameters (catalog.synth.model.SynthParams) fitted to a real capture",
        "source": {
            "files": [{"name": p.name, "sha256": sha256_of(p), "bytes": p.stat().st_size} for p in files],
            "instrument_id": instrument_id,
            "span_s": _round(real.duration_s),
            "reader": "catalog.binance_ws.read_binance_ws",
        },
        "fit": {
            "method": "moments, then damped simulated-moment steps (catalog.synth.calibrate)",
            "iterations": iterations,
            "sim_minutes": minutes,
            "seed": seed,
        },
        "params": _rounded_params(params),
        "targets": {k: _round(v) for k, v in summary(real).items()},
        "fitted": {k: _round(v) for k, v in summary(sim).items()},
    }


def dumps(payload: dict) -> str:
    """JSON with every list of numbers on one line, so the file reads like a table."""
    text = json.dumps(payload, indent=2)
    return re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def params_from_payload(payload: dict) -> SynthParams:
    return SynthParams.from_dict(payload["params"])
