"""Stylized facts of an L2 market, computed from Nautilus ``OrderBookDelta`` batches and ``TradeTick``s.

Owns the one definition of every statistic that the synthetic market is calibrated on and tested
against. The same function (``market_stats``) is applied to the real capture and to the generator's
output, so a comparison never depends on two implementations agreeing. It must not know where the
data came from (no file formats, no generator internals) and must not write anything.

Conventions: prices are in ticks and sizes in base units (BTC); time is ``ts_init`` for both
streams (what a backtest sees); the book is observed after each complete batch (``F_LAST``) and
sampled on a regular time grid, so every "mean" over book states is a time average.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from nautilus_trader.model.objects import FIXED_PRECISION

DEPTH_LEVELS = 40  # distances 0..39 ticks from each side's own touch (the synthetic book's depth)
SAMPLE_NS = 100_000_000  # book sampling grid (time averages, imbalance/OFI correlations)
RETURN_NS = 1_000_000_000  # horizon of "1 s mid change"
VOL_WINDOW_S = 10  # non-overlapping windows of realised volatility (clustering, regimes)
ACF_LAGS = (1, 2, 3, 4, 5)  # lags (in seconds) of the |1 s mid change| autocorrelation
# Quantile levels of every size distribution; fine enough for the generator to sample from them.
QUANTILES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
SMALL_MOVE_TICKS = 2
SPREAD_BINS = 5  # spread fractions for 1, 2, 3, 4 and >= 5 ticks

_F_LAST = int(RecordFlag.F_LAST)
_BUY = int(OrderSide.BUY)
_CLEAR = int(BookAction.CLEAR)
_DELETE = int(BookAction.DELETE)


@dataclass
class BookTrace:
    """The near-touch book after every complete batch; the raw material of the book statistics."""

    ts: np.ndarray  # int64 ts_init of each batch
    bid: np.ndarray  # int64 best bid, ticks
    ask: np.ndarray  # int64 best ask, ticks
    bid_depth: np.ndarray  # (batches, DEPTH_LEVELS) size at bid - d, base units
    ask_depth: np.ndarray  # (batches, DEPTH_LEVELS) size at ask + d, base units
    change_count: np.ndarray  # (DEPTH_LEVELS,) batches in which the level at distance d changed size
    change_opportunities: int  # side-batches in which that side's touch did not move
    increments: np.ndarray  # positive size changes of near-touch levels, base units
    deltas: int  # number of deltas after the first (snapshot) batch


@dataclass
class TradeArrays:
    """Trades as columns: ``ts_init``, ``ts_event``, price in ticks, size in base units, +1 buy / -1 sell."""

    ts: np.ndarray
    ts_event: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray


@dataclass
class MarketStats:
    """The stylized facts; every field is JSON-friendly so a calibration can record them verbatim."""

    tick: float
    lot: float
    duration_s: float
    start_mid: float
    batches_per_s: float
    deltas_per_batch: float
    trades_per_s: float
    market_orders_per_s: float
    fills_per_market_order: float
    buy_fraction: float
    trade_size_mean: float
    trade_size_quantiles: list[float]
    market_order_size_mean: float
    market_order_size_quantiles: list[float]
    market_order_levels_mean: float  # distinct prices one market order trades at
    touch_size_quantiles: list[float]  # size at the best bid / ask
    new_touch_size_quantiles: list[float]  # size at a touch right after it moved to a new price
    move_prob_per_batch: float  # batches after which the mid has moved
    move_size_quantiles: list[float]  # |mid change| over one batch when it moved, ticks
    move_sign_acf: float  # correlation of the signs of consecutive mid moves (momentum)
    small_move_fraction: float  # moves of at most SMALL_MOVE_TICKS (queue depletions, not jumps)
    old_touch_kept_fraction: float  # size left at a touch the price moved away from, over its size before
    mo_sign_imbalance_corr: float  # aggressor sign vs top-of-book imbalance just before the order
    spread_mean_ticks: float
    spread_fractions: list[float]  # 1, 2, 3, 4, >=5 ticks
    depth_mean: list[float]  # mean size at distance d from the own touch (both sides averaged)
    depth_empty: list[float]  # fraction of time the level at distance d is empty
    level_change_prob: list[float]  # per batch, when that side's touch did not move
    limit_size_quantiles: list[float]  # positive level increments near the touch
    mid_change_1s_std_ticks: float
    mid_change_1s_zero_fraction: float
    mid_change_1s_kurtosis: float
    abs_change_acf: list[float]  # autocorrelation of |1 s mid change| at ACF_LAGS
    vol_window_rms_ticks: list[float]  # RMS 1 s mid change in low / mid / high tercile windows
    vol_tercile_ratio: float  # high / low tercile RMS: volatility regimes
    vol_regime_run_s: float  # mean time a window stays in its tercile
    trade_rate_by_vol_tercile: list[float]  # trades/s in low / mid / high windows, over the mean
    imbalance_next_1s_corr: float  # top-of-book imbalance now vs mid change over the next 1 s
    ofi_next_1s_corr: float  # order-flow imbalance over the last 1 s vs mid change over the next 1 s
    ofi_same_1s_corr: float  # ... vs the mid change over the same 1 s (contemporaneous)
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _unit(precision: int) -> int:
    return 10 ** (FIXED_PRECISION - precision)


def book_trace(deltas: list[OrderBookDelta], tick: float | None = None, depth_levels: int = DEPTH_LEVELS) -> BookTrace:
    """Rebuild the book batch by batch, recording the near-touch state after each ``F_LAST``.

    A plain dict book keyed by tick is used (rather than Nautilus' ``OrderBook``) because reading
    twenty levels by distance from the touch after every batch is what we need, and dict lookups
    are the cheapest way to get them from Python.
    """
    if not deltas:
        raise ValueError("no deltas")
    price_prec = next(d.order.price.precision for d in deltas if d.action != BookAction.CLEAR)
    size_prec = next(d.order.size.precision for d in deltas if d.action != BookAction.CLEAR)
    tick_raw = _unit(price_prec) if tick is None else round(tick * 10**FIXED_PRECISION)
    lot_raw = _unit(size_prec)
    lot = 10.0**-size_prec
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    ts_list: list[int] = []
    bid_list: list[int] = []
    ask_list: list[int] = []
    depth_rows: list[list[int]] = []
    change_count = np.zeros(depth_levels, dtype=np.int64)
    opportunities = 0
    increments: list[int] = []
    touched: dict[tuple[int, int], int] = {}  # (side, price) -> size before this batch
    batches = 0
    n_deltas = 0
    prev_bid = prev_ask = None
    rng = range(depth_levels)
    for delta in deltas:
        action = int(delta.action)
        if action == _CLEAR:
            bids.clear()
            asks.clear()
            touched.clear()
        else:
            order = delta.order
            side = int(order.side)
            price = order.price.raw // tick_raw
            size = order.size.raw // lot_raw
            book = bids if side == _BUY else asks
            key = (side, price)
            if key not in touched:
                touched[key] = book.get(price, 0)
            if action == _DELETE or size == 0:
                book.pop(price, None)
            else:
                book[price] = size
        if batches:
            n_deltas += 1
        if not delta.flags & _F_LAST:
            continue
        batches += 1
        if not bids or not asks:
            touched.clear()
            continue
        best_bid = max(bids)
        best_ask = min(asks)
        ts_list.append(delta.ts_init)
        bid_list.append(best_bid)
        ask_list.append(best_ask)
        depth_rows.append([bids.get(best_bid - d, 0) for d in rng] + [asks.get(best_ask + d, 0) for d in rng])
        if batches > 1:
            for side, best, prev in ((_BUY, best_bid, prev_bid), (_BUY + 1, best_ask, prev_ask)):
                if best != prev:
                    continue
                opportunities += 1
                sign = -1 if side == _BUY else 1
                book = bids if side == _BUY else asks
                for (s, price), before in touched.items():
                    if s != side:
                        continue
                    distance = (price - best) * sign
                    after = book.get(price, 0)
                    if 0 <= distance < depth_levels and after != before:
                        change_count[distance] += 1
                        if after > before:
                            increments.append(after - before)
        touched.clear()
        prev_bid, prev_ask = best_bid, best_ask
    depth = np.asarray(depth_rows, dtype=np.float64).reshape(-1, 2 * depth_levels) * lot
    return BookTrace(
        ts=np.asarray(ts_list, dtype=np.int64),
        bid=np.asarray(bid_list, dtype=np.int64),
        ask=np.asarray(ask_list, dtype=np.int64),
        bid_depth=depth[:, :depth_levels],
        ask_depth=depth[:, depth_levels:],
        change_count=change_count,
        change_opportunities=opportunities,
        increments=np.asarray(increments, dtype=np.float64) * lot,
        deltas=n_deltas,
    )


def trade_arrays(trades: list[TradeTick], tick: float | None = None) -> TradeArrays:
    """Trades as numpy columns (prices in ticks, sizes in base units)."""
    if not trades:
        empty = np.zeros(0, dtype=np.int64)
        return TradeArrays(empty, empty, empty, np.zeros(0), empty)
    price_prec = trades[0].price.precision
    tick_raw = _unit(price_prec) if tick is None else round(tick * 10**FIXED_PRECISION)
    rows = [(t.ts_init, t.ts_event, t.price.raw // tick_raw, t.size.raw, 1 if t.aggressor_side == AggressorSide.BUYER else -1) for t in trades]
    ts, ts_event, price, size, side = (np.asarray(c, dtype=np.int64) for c in zip(*rows))
    return TradeArrays(ts, ts_event, price, size / 10.0**FIXED_PRECISION, side)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _acf(x: np.ndarray, lag: int) -> float:
    if len(x) <= lag + 2:
        return 0.0
    return _corr(x[:-lag], x[lag:])


def _quantiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(x, QUANTILES)] if len(x) else [0.0] * len(QUANTILES)


def _ofi(trace: BookTrace) -> np.ndarray:
    """Cumulative order-flow imbalance (Cont, Kukanov & Stoikov 2014) at each batch, base units."""
    b, a = trace.bid, trace.ask
    qb, qa = trace.bid_depth[:, 0], trace.ask_depth[:, 0]
    e = np.zeros(len(b))
    e[1:] = (
        (b[1:] >= b[:-1]) * qb[1:]
        - (b[1:] <= b[:-1]) * qb[:-1]
        - (a[1:] <= a[:-1]) * qa[1:]
        + (a[1:] >= a[:-1]) * qa[:-1]
    )
    return np.cumsum(e)


def market_stats(
    deltas: list[OrderBookDelta],
    trades: list[TradeTick],
    tick: float | None = None,
    depth_levels: int = DEPTH_LEVELS,
) -> MarketStats:
    """Every stylized fact of one capture (real or synthetic); see ``MarketStats`` for the list."""
    trace = book_trace(deltas, tick, depth_levels)
    size_prec = next(d.order.size.precision for d in deltas if d.action != BookAction.CLEAR)
    price_prec = next(d.order.price.precision for d in deltas if d.action != BookAction.CLEAR)
    tick_value = tick if tick is not None else 10.0**-price_prec
    lot = 10.0**-size_prec
    tr = trade_arrays(trades, tick)
    t0, t1 = int(trace.ts[0]), int(trace.ts[-1])
    keep = (tr.ts >= t0) & (tr.ts <= t1)  # trades outside the book's span cannot be related to it
    tr = TradeArrays(tr.ts[keep], tr.ts_event[keep], tr.price[keep], tr.size[keep], tr.side[keep])
    duration = (t1 - t0) / 1e9
    if duration <= 2 * VOL_WINDOW_S:
        raise ValueError(f"need more than {2 * VOL_WINDOW_S} s of book, got {duration:.1f} s")

    # Book sampled on a regular grid.
    grid = np.arange(t0, t1 + 1, SAMPLE_NS, dtype=np.int64)
    at = np.searchsorted(trace.ts, grid, side="right") - 1
    bid, ask = trace.bid[at], trace.ask[at]
    spread = ask - bid
    mid = (bid + ask) / 2.0
    depth = np.concatenate([trace.bid_depth[at], trace.ask_depth[at]])
    qb, qa = trace.bid_depth[at, 0], trace.ask_depth[at, 0]
    spread_fractions = [float(np.mean(spread == k)) for k in range(1, SPREAD_BINS)] + [float(np.mean(spread >= SPREAD_BINS))]

    # 1 s mid changes on the grid (overlapping horizon for correlations, disjoint for volatility).
    step = RETURN_NS // SAMPLE_NS
    fwd = np.full(len(mid), np.nan)
    fwd[:-step] = mid[step:] - mid[:-step]
    back = np.full(len(mid), np.nan)
    back[step:] = mid[step:] - mid[:-step]
    imbalance = (qb - qa) / np.maximum(qb + qa, 1e-12)
    cum_ofi = _ofi(trace)[at]
    ofi = np.full(len(mid), np.nan)
    ofi[step:] = cum_ofi[step:] - cum_ofi[:-step]
    mid_1s = mid[::step]
    dmid = np.diff(mid_1s)
    std = float(dmid.std())
    kurt = float(((dmid - dmid.mean()) ** 4).mean() / std**4) if std > 0 else 0.0

    # Volatility regimes: RMS of 1 s changes in disjoint windows, split in terciles.
    n_win = len(dmid) // VOL_WINDOW_S
    windows = dmid[: n_win * VOL_WINDOW_S].reshape(n_win, VOL_WINDOW_S)
    rms = np.sqrt((windows**2).mean(axis=1))
    cuts = np.quantile(rms, [1 / 3, 2 / 3])
    label = np.digitize(rms, cuts, right=True)
    tercile_rms = [float(np.sqrt(np.mean(windows[label == k] ** 2))) if np.any(label == k) else 0.0 for k in range(3)]
    runs = 1 + int(np.count_nonzero(np.diff(label)))
    win_edges = t0 + np.arange(n_win + 1, dtype=np.int64) * VOL_WINDOW_S * RETURN_NS
    trades_in_win = np.diff(np.searchsorted(tr.ts, win_edges))
    mean_rate = max(trades_in_win.mean(), 1e-12)
    rate_by = [float(trades_in_win[label == k].mean() / mean_rate) if np.any(label == k) else 0.0 for k in range(3)]

    # Trades and market orders (fills of one taker order share ts_event and side).
    new_order = np.ones(len(tr.ts), dtype=bool)
    new_order[1:] = (tr.ts_event[1:] != tr.ts_event[:-1]) | (tr.side[1:] != tr.side[:-1])
    order_id = np.cumsum(new_order) - 1
    n_orders = int(new_order.sum())
    order_size = np.bincount(order_id, weights=tr.size, minlength=n_orders) if n_orders else np.zeros(0)
    new_level = new_order.copy()
    new_level[1:] |= tr.price[1:] != tr.price[:-1]
    levels_per_order = np.bincount(order_id, weights=new_level, minlength=n_orders) if n_orders else np.zeros(0)

    # Mid moves batch by batch (the latent price's jumps as the book shows them).
    batch_mid = (trace.bid + trace.ask) / 2.0
    moves = np.diff(batch_mid)
    moved = moves != 0
    signs = np.sign(moves[moved])
    bid_moved = np.flatnonzero(np.diff(trace.bid) != 0) + 1
    ask_moved = np.flatnonzero(np.diff(trace.ask) != 0) + 1
    new_touch = np.concatenate([trace.bid_depth[bid_moved, 0], trace.ask_depth[ask_moved, 0]])
    touch = np.concatenate([qb, qa])
    kept_before, kept_after = [], []
    for prices, depth_side, away in ((trace.bid, trace.bid_depth, 1), (trace.ask, trace.ask_depth, -1)):
        jump = np.diff(prices) * away  # > 0: this side moved away from its old touch
        rows = np.flatnonzero((jump > 0) & (jump < depth_levels))
        kept_before.append(depth_side[rows, 0])
        kept_after.append(depth_side[rows + 1, jump[rows]])
    before_sum = float(np.concatenate(kept_before).sum())
    kept = float(np.concatenate(kept_after).sum()) / before_sum if before_sum > 0 else 0.0

    # Aggressor sign of each market order vs the imbalance of the last book shown before it.
    first_fill = np.flatnonzero(new_order)
    shown = np.searchsorted(trace.ts, tr.ts[first_fill], side="right") - 1
    ok = shown >= 0
    tb, ta = trace.bid_depth[shown[ok], 0], trace.ask_depth[shown[ok], 0]
    mo_imbalance = (tb - ta) / np.maximum(tb + ta, 1e-12)
    mo_sign = tr.side[first_fill][ok].astype(np.float64)

    change_prob = trace.change_count / max(trace.change_opportunities, 1)
    return MarketStats(
        tick=tick_value,
        lot=lot,
        duration_s=duration,
        start_mid=float(mid[0] * tick_value),
        batches_per_s=float((len(trace.ts) - 1) / duration),
        deltas_per_batch=float(trace.deltas / max(len(trace.ts) - 1, 1)),
        trades_per_s=float(len(tr.ts) / duration),
        market_orders_per_s=float(n_orders / duration),
        fills_per_market_order=float(len(tr.ts) / max(n_orders, 1)),
        buy_fraction=float(np.mean(tr.side > 0)) if len(tr.ts) else 0.0,
        trade_size_mean=float(tr.size.mean()) if len(tr.ts) else 0.0,
        trade_size_quantiles=_quantiles(tr.size),
        market_order_size_mean=float(order_size.mean()) if n_orders else 0.0,
        market_order_size_quantiles=_quantiles(order_size),
        market_order_levels_mean=float(levels_per_order.mean()) if n_orders else 0.0,
        touch_size_quantiles=_quantiles(touch),
        new_touch_size_quantiles=_quantiles(new_touch),
        move_prob_per_batch=float(moved.mean()),
        move_size_quantiles=_quantiles(np.abs(moves[moved])),
        move_sign_acf=_corr(signs[:-1], signs[1:]) if len(signs) > 3 else 0.0,
        small_move_fraction=float(np.mean(np.abs(moves[moved]) <= SMALL_MOVE_TICKS)) if moved.any() else 0.0,
        old_touch_kept_fraction=kept,
        mo_sign_imbalance_corr=_corr(mo_imbalance, mo_sign),
        spread_mean_ticks=float(spread.mean()),
        spread_fractions=spread_fractions,
        depth_mean=[float(v) for v in depth.mean(axis=0)],
        depth_empty=[float(v) for v in (depth == 0).mean(axis=0)],
        level_change_prob=[float(v) for v in change_prob],
        limit_size_quantiles=_quantiles(trace.increments),
        mid_change_1s_std_ticks=std,
        mid_change_1s_zero_fraction=float(np.mean(dmid == 0)),
        mid_change_1s_kurtosis=kurt,
        abs_change_acf=[_acf(np.abs(dmid), lag) for lag in ACF_LAGS],
        vol_window_rms_ticks=tercile_rms,
        vol_tercile_ratio=float(tercile_rms[2] / max(tercile_rms[0], 1e-12)),
        vol_regime_run_s=float(n_win * VOL_WINDOW_S / runs),
        trade_rate_by_vol_tercile=rate_by,
        imbalance_next_1s_corr=_corr(imbalance, fwd),
        ofi_next_1s_corr=_corr(ofi, fwd),
        ofi_same_1s_corr=_corr(ofi, back),
    )
