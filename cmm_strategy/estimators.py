"""Online market statistics the classical baselines need: volatility and trade-arrival intensity.

Avellaneda-Stoikov and GLFT quote from sigma (mid volatility) and the intensity ``A exp(-kappa d)`` of
market orders reaching depth ``d`` from the mid. Both are estimated from the same feed the strategy
sees, online and causally (nothing from the future), so the baselines are as well informed as CMM.

Units: prices in ticks, time in seconds. sigma is ticks per sqrt(second); kappa is per tick; A is
trades per second reaching depth 0.
"""

from __future__ import annotations

import math
from collections import deque

_NS = 1e-9


class RealizedVolatility:
    """Exponentially weighted realized variance of the mid per second.

    Each mid change adds ``dmid^2``; elapsed time adds to the denominator; both decay with half-life
    ``half_life_s`` of market time, so sigma^2 = E[dmid^2] / E[dt] without assuming a sampling grid.
    """

    def __init__(self, half_life_s: float = 30.0, prior_ticks_per_sqrt_s: float = 1.0) -> None:
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        self._decay_per_s = math.log(2.0) / half_life_s
        self._prior = prior_ticks_per_sqrt_s
        self._sum_sq = 0.0
        self._sum_dt = 0.0
        self._last_ts: int | None = None
        self._last_mid: float | None = None

    def update(self, ts_ns: int, mid_ticks: float) -> None:
        if self._last_ts is not None and self._last_mid is not None:
            dt = (ts_ns - self._last_ts) * _NS
            if dt > 0:
                keep = math.exp(-self._decay_per_s * dt)
                self._sum_sq *= keep
                self._sum_dt = self._sum_dt * keep + dt
            d = mid_ticks - self._last_mid
            self._sum_sq += d * d
        self._last_ts, self._last_mid = ts_ns, mid_ticks

    @property
    def sigma(self) -> float:
        """ticks per sqrt(second); the prior until one second of data has been seen."""
        if self._sum_dt < 1.0:
            return self._prior
        return math.sqrt(self._sum_sq / self._sum_dt)


class TradeIntensity:
    """Fit ``lambda(d) = A exp(-kappa d)`` to the market orders of the last ``window_s`` seconds.

    A trade's depth is its distance from the mid before it, in ticks; ``lambda(d)`` is the rate of
    trades that reached at least ``d`` (``d`` = 0.5, 1.5, ... ticks up to ``max_depth_ticks``).
    log lambda is fitted by least squares on the depths with at least one trade. Until a fit with
    kappa > 0 exists, the priors are returned.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        max_depth_ticks: int = 20,
        refit_every_s: float = 1.0,
        prior_a: float = 1.0,
        prior_kappa: float = 1.0,
    ) -> None:
        self.window_ns = int(window_s * 1e9)
        self.max_depth = max_depth_ticks
        self.refit_ns = int(refit_every_s * 1e9)
        self.a = prior_a
        self.kappa = prior_kappa
        self.fitted = False
        self._trades: deque[tuple[int, float]] = deque()
        self._first_ts: int | None = None
        self._last_fit_ns = -(1 << 62)

    def on_trade(self, ts_ns: int, price_ticks: float, mid_ticks: float) -> None:
        if self._first_ts is None:
            self._first_ts = ts_ns
        self._trades.append((ts_ns, abs(price_ticks - mid_ticks)))
        self.maybe_refit(ts_ns)

    def maybe_refit(self, ts_ns: int) -> None:
        if self._first_ts is None or ts_ns - self._last_fit_ns < self.refit_ns:
            return
        self._last_fit_ns = ts_ns
        cutoff = ts_ns - self.window_ns
        trades = self._trades
        while trades and trades[0][0] < cutoff:
            trades.popleft()
        span_s = min(self.window_ns, ts_ns - self._first_ts) * _NS
        if span_s < 1.0 or len(trades) < 10:
            return
        counts = [0] * self.max_depth
        for _, depth in trades:
            k = min(int(depth + 0.5), self.max_depth)  # trades at depth >= k - 0.5 reach levels 0..k-1
            for j in range(k):
                counts[j] += 1
        xs = [j + 0.5 for j, c in enumerate(counts) if c > 0]
        ys = [math.log(c / span_s) for c in counts if c > 0]
        if len(xs) < 2:
            return
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        if slope >= 0:
            return
        self.kappa = -slope
        self.a = math.exp(my - slope * mx)
        self.fitted = True
