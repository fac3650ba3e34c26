"""Per-run market-making metrics (METHOD.md section 9), one small class each.

All metrics read one ``RunRecord``: the fills the venue reported, the mid of every complete book batch
the strategy saw, and the strategy's own counters, restricted to the trading window. PnL is in the
settlement currency (quote currency for linear instruments, base currency for inverse ones).

Marking to mid (linear, multiplier M): PnL(t) = sum over fills up to t of s q M (mid_t - px) - fees;
inverse: sum of s q M (1/px - 1/mid_t) - fees, with s = +1 for a buy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0  # crypto trades around the clock


@dataclass
class RunRecord:
    """Everything the metrics need from one backtest, as plain arrays (also saved for reports)."""

    instrument_id: str
    tick: float
    multiplier: float
    inverse: bool
    currency: str
    start_ns: int
    end_ns: int
    fill_ts: np.ndarray  # int64
    fill_sign: np.ndarray  # +1 buy, -1 sell
    fill_qty: np.ndarray
    fill_px: np.ndarray
    fill_fee: np.ndarray  # settlement currency; negative = rebate
    fill_maker: np.ndarray  # bool
    mid_ts: np.ndarray  # int64, every complete batch
    mid_px: np.ndarray
    quote_updates: int = 0
    quote_orders: int = 0
    quote_orders_filled: int = 0
    decision_costs_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def mid_at(self, ts: np.ndarray) -> np.ndarray:
        """Last mid known at each time (the first mid before any)."""
        idx = np.searchsorted(self.mid_ts, ts, side="right") - 1
        return self.mid_px[np.clip(idx, 0, len(self.mid_px) - 1)]

    def grid(self, step_ns: int = 1_000_000_000) -> np.ndarray:
        return np.arange(self.start_ns, self.end_ns + 1, step_ns, dtype=np.int64)

    def position_at(self, ts: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(self.fill_sign * self.fill_qty)])
        return cum[np.searchsorted(self.fill_ts, ts, side="right")]

    def pnl_at(self, ts: np.ndarray, rebates: bool = True) -> np.ndarray:
        """PnL marked to mid at each time, net of fees (rebates counted or not)."""
        ts = np.asarray(ts, dtype=np.int64)
        n = np.searchsorted(self.fill_ts, ts, side="right")
        fees = self.fill_fee if rebates else np.maximum(self.fill_fee, 0.0)
        cum_fee = np.concatenate([[0.0], np.cumsum(fees)])[n]
        cum_q = np.concatenate([[0.0], np.cumsum(self.fill_sign * self.fill_qty)])[n]
        mid = self.mid_at(ts)
        if self.inverse:
            cum_cash = np.concatenate([[0.0], np.cumsum(self.fill_sign * self.fill_qty / self.fill_px)])[n]
            return self.multiplier * (cum_cash - cum_q / mid) - cum_fee
        cum_cost = np.concatenate([[0.0], np.cumsum(self.fill_sign * self.fill_qty * self.fill_px)])[n]
        return self.multiplier * (cum_q * mid - cum_cost) - cum_fee


class Metric:
    """name: key in results.json; unit: what the number is in."""

    name = ""
    unit = ""

    def compute(self, r: RunRecord) -> float | int | None:
        raise NotImplementedError


class PnLToMid(Metric):
    """PnL at the end of the window marked to mid, net of fees including maker rebates [settlement ccy]."""

    name, unit = "pnl", "settlement currency"

    def compute(self, r: RunRecord) -> float:
        return float(r.pnl_at(np.array([r.end_ns]))[0])


class PnLToMidNoRebates(Metric):
    """As ``pnl`` but maker rebates are not paid (fees floored at zero) [settlement ccy]."""

    name, unit = "pnl_no_rebates", "settlement currency"

    def compute(self, r: RunRecord) -> float:
        return float(r.pnl_at(np.array([r.end_ns]), rebates=False)[0])


class Fees(Metric):
    """Total fees paid, rebates netted [settlement ccy]."""

    name, unit = "fees", "settlement currency"

    def compute(self, r: RunRecord) -> float:
        return float(r.fill_fee.sum())


class MeanAbsolutePosition(Metric):
    """MAP: mean |position| on a 1 s grid over the window [base units or contracts]."""

    name, unit = "map", "base units / contracts"

    def compute(self, r: RunRecord) -> float:
        return float(np.abs(r.position_at(r.grid())).mean())


class PnLPerMAP(Metric):
    """PnL / MAP: return per unit of inventory carried [settlement ccy per base unit]; None if MAP is 0."""

    name, unit = "pnl_per_map", "settlement currency per base unit"

    def compute(self, r: RunRecord) -> float | None:
        m = MeanAbsolutePosition().compute(r)
        return PnLToMid().compute(r) / m if m > 0 else None


class Sharpe1s(Metric):
    """Sharpe ratio of 1 s PnL increments, annualized by sqrt(365 x 86400) (24/7 market); None when
    flat. Over minutes of data this is a description of the run, not an estimate of a strategy."""

    name, unit = "sharpe_annualized", "annualized (x sqrt(31,536,000))"

    def compute(self, r: RunRecord) -> float | None:
        inc = np.diff(r.pnl_at(r.grid()))
        sd = float(inc.std(ddof=1)) if len(inc) > 1 else 0.0
        return float(inc.mean() / sd * math.sqrt(SECONDS_PER_YEAR)) if sd > 0 else None


class FillCount(Metric):
    """Number of fills (all, maker and taker) in the window."""

    name, unit = "fills", "count"

    def compute(self, r: RunRecord) -> int:
        return int(len(r.fill_ts))


class FillRate(Metric):
    """Share of submitted quote orders that got any fill [0-1]."""

    name, unit = "fill_rate", "fraction"

    def compute(self, r: RunRecord) -> float | None:
        return r.quote_orders_filled / r.quote_orders if r.quote_orders else None


class _Markout(Metric):
    horizon_s = 1.0

    def values(self, r: RunRecord) -> np.ndarray:
        """Per maker fill: s (mid(t + h) - px) in ticks (positive = the fill was good)."""
        maker = r.fill_maker
        ts = r.fill_ts[maker] + int(self.horizon_s * 1e9)
        keep = ts <= r.end_ns
        later = r.mid_at(ts[keep])
        return r.fill_sign[maker][keep] * (later - r.fill_px[maker][keep]) / r.tick

    def compute(self, r: RunRecord) -> float | None:
        v = self.values(r)
        return float(v.mean()) if len(v) else None


class Markout1s(_Markout):
    """Mean markout of maker fills 1 s later, s (mid(t+1s) - px) [ticks]."""

    name, unit, horizon_s = "markout_1s_ticks", "ticks", 1.0


class Markout5s(_Markout):
    """Mean markout of maker fills 5 s later [ticks]."""

    name, unit, horizon_s = "markout_5s_ticks", "ticks", 5.0


class MaxAbsPosition(Metric):
    """Largest |position| after any fill in the window [base units or contracts]."""

    name, unit = "max_abs_position", "base units / contracts"

    def compute(self, r: RunRecord) -> float:
        path = np.cumsum(r.fill_sign * r.fill_qty)
        return float(np.abs(path).max()) if len(path) else 0.0


class QuoteUpdates(Metric):
    """Order submits plus modifies sent by the strategy."""

    name, unit = "quote_updates", "count"

    def compute(self, r: RunRecord) -> int:
        return int(r.quote_updates)


class _DecisionLatency(Metric):
    q = 0.5

    def compute(self, r: RunRecord) -> float | None:
        c = r.decision_costs_ns
        return float(np.quantile(c, self.q) / 1000.0) if len(c) else None


class DecisionLatencyP50(_DecisionLatency):
    """Median measured compute time of one decision (features + models + quote) [us]."""

    name, unit, q = "decision_us_p50", "us", 0.5


class DecisionLatencyP99(_DecisionLatency):
    """99th percentile of the measured decision compute time [us]."""

    name, unit, q = "decision_us_p99", "us", 0.99


ALL_METRICS: tuple[Metric, ...] = (
    PnLToMid(), PnLToMidNoRebates(), Fees(), MeanAbsolutePosition(), PnLPerMAP(), Sharpe1s(), FillCount(), FillRate(),
    Markout1s(), Markout5s(), MaxAbsPosition(), QuoteUpdates(), DecisionLatencyP50(), DecisionLatencyP99(),
)


def compute_metrics(record: RunRecord) -> dict[str, float | int | None]:
    return {m.name: m.compute(record) for m in ALL_METRICS}


def metric_units() -> dict[str, str]:
    return {m.name: m.unit for m in ALL_METRICS}
