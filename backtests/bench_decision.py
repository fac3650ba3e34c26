"""``cmm bench``: one CMM decision and one teacher decision on the same real book states.

A CMM decision is what ``CMMStrategy`` computes per complete L2 batch, on the same objects and in
the same order: ``FeatureState.on_top`` + ``BookLevels.top_lists`` + ``FeatureState.set_levels`` +
``FeatureState.write`` + ``CMMBundle.predict`` (all students + Hájek-MoE) + ``quote``. It is
timed outside the engine (``perf_counter_ns`` around exactly those calls) on a replay of the
capture: every delta goes into ``BookLevels`` and every trade into ``FeatureState.on_trade``
(untimed: the strategy does these on every event, decision or not), and every complete batch with a
two-sided book is one timed decision. A replay pass sees each book state of the capture once, so
``passes`` passes give ``passes x batches`` decisions (each pass on fresh state, as a new strategy).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
from nautilus_trader.model.enums import AggressorSide

from catalog.instruments import order_step
from catalog.validation import F_LAST
from cmm_strategy.book_levels import BookLevels
from cmm_strategy.bundle import CMMBundle
from cmm_strategy.features import FeatureState
from cmm_strategy.quoting import QuoteParams, quote
from cmm_strategy.strategy import CMMStrategyConfig


@dataclass
class Replay:
    """The capture as the strategy sees it: (ts, delta) and (ts, trade) events in engine order."""

    events: list[tuple]  # (ts, 0, delta) or (ts, 1, (size, sign))
    batches: int
    tick: float
    lot: float
    instrument: object


def build_replay(data, max_events: int | None = None) -> Replay:
    """Deltas and trades merged by ``ts_init`` (deltas first on ties, as the engine's stable sort of
    ``add_data(deltas)`` then ``add_data(trades)``); trades reduced to the plain numbers ``on_trade`` gets."""
    instrument = data.instruments[0]
    events: list[tuple] = [(d.ts_init, 0, d) for d in data.deltas]
    for t in data.trades:
        side = t.aggressor_side
        sign = 1 if side == AggressorSide.BUYER else -1 if side == AggressorSide.SELLER else 0
        events.append((t.ts_init, 1, (t.size.as_double(), sign)))
    events.sort(key=lambda e: (e[0], e[1]))
    if max_events is not None:
        events = events[:max_events]
    batches = sum(1 for ts, kind, d in events if kind == 0 and d.flags & F_LAST)
    return Replay(events, batches, float(instrument.price_increment), order_step(instrument), instrument)


def quote_params(config: CMMStrategyConfig) -> QuoteParams:
    """The ``QuoteParams`` ``MarketMaker.on_start`` builds from a config (CMM fixes none of them)."""
    return QuoteParams(
        alpha=config.alpha, skew=config.skew, eta=config.eta, q_max=config.q_max, min_size=config.min_size,
        max_size=config.max_size, size_fraction=config.size_fraction, levels=config.levels,
        level_spacing_ticks=config.level_spacing_ticks,
    )


def replay_decisions(replay: Replay, bundle: CMMBundle, params: QuoteParams, horizon: str = "1s", keep_x: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the capture on fresh state; (decision times [ns], up to ``keep_x`` evenly spaced
    ``x_t`` of the decisions, for the teacher)."""
    spec = bundle.spec
    depth = spec.levels
    levels = BookLevels()
    features = FeatureState(spec, tick=replay.tick, lot=replay.lot)
    x = np.empty(spec.dim)
    names = bundle.target_names
    c0, c1, c2 = (names.index(f"{task}_{horizon}") for task in ("mid", "spread", "volume"))
    tick, lot = replay.tick, replay.lot
    times = np.empty(replay.batches, dtype=np.int64)
    keep_every = max(1, replay.batches // keep_x) if keep_x else 0
    kept: list[np.ndarray] = []
    n = 0
    clock = time.perf_counter_ns
    apply, best, top = levels.apply, levels.best, levels.top_lists
    on_top, set_levels, write, predict, on_trade = features.on_top, features.set_levels, features.write, bundle.predict, features.on_trade
    for ts, kind, item in replay.events:
        if kind:
            on_trade(ts, item[0], item[1])
            continue
        apply(item)
        if not item.flags & F_LAST:
            continue
        b = best()
        if b is None:
            continue
        bid, bid_size, ask, ask_size = b
        started = clock()
        on_top(ts, bid, bid_size, ask, ask_size)
        set_levels(*top(depth))
        write(ts, x)
        p = predict(x)
        quote(0.5 * (bid + ask), bid, ask, tick, lot, float(p[c0]), float(p[c1]), float(p[c2]), 0.0, params)
        times[n] = clock() - started
        if keep_every and n % keep_every == 0 and len(kept) < keep_x:
            kept.append(x.copy())
        n += 1
    return times[:n], np.array(kept)


def bench_decision(replay: Replay, bundle: CMMBundle, repeats: int, min_states: int = 10_000) -> tuple[dict[str, object], np.ndarray]:
    """p50/p99 of one decision over >= ``min_states`` real book states per repeat (median over
    repeats), after one untimed warm-up pass; also returns the ``x_t`` of 64 decisions."""
    params = quote_params(CMMStrategyConfig(instrument_id=replay.instrument.id, bundle_path="-"))
    passes = max(1, -(-min_states // max(replay.batches, 1)))
    _, xs = replay_decisions(replay, bundle, params, keep_x=64)  # warm-up
    p50s, p99s, means, states = [], [], [], 0
    for _ in range(repeats):
        times = np.concatenate([replay_decisions(replay, bundle, params)[0] for _ in range(passes)]) / 1000.0
        states = len(times)
        p50s.append(float(np.percentile(times, 50)))
        p99s.append(float(np.percentile(times, 99)))
        means.append(float(times.mean()))
    return {
        "decision_us_p50": round(statistics.median(p50s), 2),
        "decision_us_p99": round(statistics.median(p99s), 2),
        "decision_us_mean": round(statistics.median(means), 2),
        "decision_us_p99_runs": [round(v, 2) for v in p99s],
        "decision_states": states,
        "decision_passes": passes,
        "decision_repeats": repeats,
    }, xs


def bench_teacher(xs: np.ndarray, names: list[str], count: int, model: str | None = None, warmup: int = 3) -> dict[str, object]:
    """The teacher's batch-of-one forward pass on ``count`` of the CMM decision states (their
    rendered prompts): median over the states after ``warmup`` untimed passes; plus the batched
    (16) per-sample time of ``measure_latency``."""
    from training.prompt import render_prompt
    from training.teacher.extract import forward_last_token, measure_latency, tokenize
    from training.teacher.models import load_teacher

    teacher = load_teacher(model)
    step = max(1, len(xs) // count)
    prompts = [render_prompt(x, names, "BTCUSDT-PERP") for x in xs[::step][:count]]
    token_ids = tokenize(teacher, prompts)
    for i in range(warmup):
        forward_last_token(teacher, [token_ids[i % len(token_ids)]])
    singles = [forward_last_token(teacher, [ids])[1] * 1000.0 for ids in token_ids]
    batched = measure_latency(teacher, prompts, repeats=2, batch_size=min(16, len(prompts)))
    return {
        "teacher_ms_per_decision": round(statistics.median(singles), 2),
        "teacher_ms_per_sample_batched": round(batched["ms_per_sample_batched"], 2),
        "teacher_states": len(prompts),
        "teacher_model": teacher.model_id,
        "teacher_prompt_tokens_mean": round(float(np.mean([len(t) for t in token_ids])), 1),
    }
