"""Replay a catalog through the runtime's book levels and feature code.

Owns the event loop that turns catalog data into (a) ``x_t`` on a fixed time grid, computed by
``cmm_strategy.features`` exactly as the strategy computes it, and (b) per-batch series (mid,
spread) and trades from which targets are computed. It must not define features or targets.

Time axis: ``ts_init``, the time at which the data became known (in a backtest, the clock the
strategy runs on), so a sample at grid time ``g`` uses only events with ``ts_init <= g``. Ties
between a book batch and a trade are broken book first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nautilus_trader.model.enums import AggressorSide, RecordFlag
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.persistence.catalog import ParquetDataCatalog
from tqdm import tqdm

from catalog.errors import CatalogError
from catalog.instruments import order_step
from cmm_strategy.book_levels import BookLevels
from cmm_strategy.features import FeatureSpec, FeatureState

F_LAST = int(RecordFlag.F_LAST)


@dataclass
class ReplayResult:
    """Features on the grid plus the raw series needed for targets."""

    instrument: Instrument
    grid_ts: np.ndarray  # int64 ns, sample times
    features: np.ndarray  # float64 [n_grid, spec.dim]
    book_ts: np.ndarray  # int64 ns, one per complete batch with a two-sided book
    book_mid: np.ndarray  # price units
    book_spread: np.ndarray  # price units
    trade_ts: np.ndarray  # int64 ns
    trade_base_qty: np.ndarray  # base-currency quantity (contracts converted for inverse instruments)
    trade_sign: np.ndarray  # +1 buyer-initiated, -1 seller-initiated, 0 unknown


def load_instrument(catalog: ParquetDataCatalog, instrument_id: str) -> Instrument:
    instruments = catalog.instruments(instrument_ids=[instrument_id])
    if not instruments:
        known = sorted(str(i.id) for i in catalog.instruments())
        raise CatalogError(f"instrument {instrument_id} not in catalog {catalog.path} (it holds: {', '.join(known) or 'none'})")
    return instruments[0]


def _aggressor_sign(side: AggressorSide) -> int:
    return 1 if side == AggressorSide.BUYER else -1 if side == AggressorSide.SELLER else 0


def replay_catalog(
    catalog_dir: str | Path,
    instrument_id: str,
    spec: FeatureSpec,
    grid_ns: int = 100_000_000,
    warmup_ns: int = 10_000_000_000,
    progress: bool = True,
    at_ts: np.ndarray | None = None,
) -> ReplayResult:
    """Run every delta and trade of one instrument through the book and ``FeatureState``.

    ``at_ts``: write the features at these times (sorted, ns) instead of on the regular grid; used to
    check that the strategy, deciding at its own event times, sees exactly the training features."""
    catalog = ParquetDataCatalog(str(catalog_dir))
    instrument = load_instrument(catalog, instrument_id)
    deltas = catalog.order_book_deltas(instrument_ids=[instrument_id])
    trades = catalog.trade_ticks(instrument_ids=[instrument_id])
    if not deltas:
        raise CatalogError(f"no order book deltas for {instrument_id} in {catalog_dir}")
    tick = float(instrument.price_increment)
    lot = order_step(instrument)
    multiplier = float(instrument.multiplier)
    inverse = bool(getattr(instrument, "is_inverse", False))

    book = BookLevels()
    state = FeatureState(spec, tick=tick, lot=lot)
    grid_rows: list[np.ndarray] = []
    grid_times: list[int] = []
    book_ts: list[int] = []
    book_mid: list[float] = []
    book_spread: list[float] = []
    trade_ts = np.fromiter((t.ts_init for t in trades), dtype=np.int64, count=len(trades))
    trade_px = np.fromiter((t.price.as_double() for t in trades), dtype=np.float64, count=len(trades))
    trade_sz = np.fromiter((t.size.as_double() for t in trades), dtype=np.float64, count=len(trades))
    trade_sign = np.fromiter((_aggressor_sign(t.aggressor_side) for t in trades), dtype=np.int8, count=len(trades))
    trade_base = trade_sz * multiplier / trade_px if inverse else trade_sz

    explicit = iter(np.sort(np.asarray(at_ts, dtype=np.int64)).tolist()) if at_ts is not None else None
    next_grid: int | None = next(explicit, None) if explicit is not None else None
    out = np.empty(spec.dim)
    ti = 0
    n_trades = len(trades)

    def emit_until(ts: int) -> None:
        nonlocal next_grid
        if next_grid is None:
            return
        if next_grid < ts:
            state.set_levels(*book.top(spec.levels))
        while next_grid is not None and next_grid < ts:
            grid_times.append(next_grid)
            grid_rows.append(state.write(next_grid, out).copy())
            next_grid = next(explicit, None) if explicit is not None else next_grid + grid_ns

    bar = tqdm(total=len(deltas), desc=f"replay {instrument_id}", unit="delta", disable=not progress, mininterval=1.0)
    for i, delta in enumerate(deltas):
        ts = delta.ts_init
        while ti < n_trades and trade_ts[ti] < ts:
            emit_until(int(trade_ts[ti]))
            state.on_trade(int(trade_ts[ti]), float(trade_sz[ti]), int(trade_sign[ti]))
            ti += 1
        emit_until(ts)
        book.apply(delta)
        if delta.flags & F_LAST:
            best = book.best()
            if best is not None:
                pb, qb, pa, qa = best
                state.on_top(ts, pb, qb, pa, qa)
                book_ts.append(ts)
                book_mid.append(0.5 * (pb + pa))
                book_spread.append(pa - pb)
                if next_grid is None and explicit is None:
                    first = ts + warmup_ns
                    next_grid = first - first % grid_ns + grid_ns
        if i % 50_000 == 0:
            bar.update(min(50_000, len(deltas) - bar.n))
    while ti < n_trades:
        emit_until(int(trade_ts[ti]))
        state.on_trade(int(trade_ts[ti]), float(trade_sz[ti]), int(trade_sign[ti]))
        ti += 1
    if book_ts:
        emit_until(book_ts[-1] + 1 if explicit is None else max(book_ts[-1], int(trade_ts[-1]) if n_trades else 0) + 1)
    bar.update(len(deltas) - bar.n)
    bar.close()
    return ReplayResult(
        instrument=instrument,
        grid_ts=np.asarray(grid_times, dtype=np.int64),
        features=np.asarray(grid_rows, dtype=np.float64).reshape(-1, spec.dim),
        book_ts=np.asarray(book_ts, dtype=np.int64),
        book_mid=np.asarray(book_mid, dtype=np.float64),
        book_spread=np.asarray(book_spread, dtype=np.float64),
        trade_ts=trade_ts,
        trade_base_qty=trade_base,
        trade_sign=trade_sign.astype(np.int64),
    )
