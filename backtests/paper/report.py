"""The final report of a paper session, and the fill ledger it shares with the health view.

Kept deliberately small and independent of NautilusTrader's portfolio: PnL is marked to the book's
mid (cash + position x mid - fees), which is what a market maker compares across runs, while the
portfolio marks to the last trade. MAP is the mean absolute position sampled on a 1 s wall-clock grid
over the session. Linear instruments only (quote-currency PnL); an inverse instrument gets ``null``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nautilus_trader.model.enums import LiquiditySide, OrderSide
from nautilus_trader.model.events import OrderFilled


@dataclass(frozen=True)
class Fill:
    ts_ns: int
    signed_qty: float  # base units, + bought / - sold
    price: float
    fee: float  # quote currency, negative = rebate
    maker: bool


def fill_from_event(event: OrderFilled) -> Fill:
    sign = 1.0 if event.order_side == OrderSide.BUY else -1.0
    return Fill(
        ts_ns=event.ts_event,
        signed_qty=sign * event.last_qty.as_double(),
        price=event.last_px.as_double(),
        fee=event.commission.as_double() if event.commission is not None else 0.0,
        maker=event.liquidity_side == LiquiditySide.MAKER,
    )


@dataclass
class FillLedger:
    """Position, cash and fees from fills, in arrival order."""

    multiplier: float = 1.0
    fills: list[Fill] = field(default_factory=list)
    position: float = 0.0
    cash: float = 0.0
    fees: float = 0.0

    def add(self, fill: Fill) -> None:
        self.fills.append(fill)
        self.position += fill.signed_qty
        self.cash -= fill.signed_qty * fill.price * self.multiplier
        self.fees += fill.fee

    def pnl(self, mark: float | None) -> float | None:
        """PnL marked at ``mark``; ``None`` when a position is open and there is no mark."""
        if abs(self.position) < 1e-12:
            return self.cash - self.fees
        if mark is None:
            return None
        return self.cash + self.position * mark * self.multiplier - self.fees


def fills_from_cache(cache: Any, instrument_id: Any) -> list[Fill]:
    """Every fill of the session, from the orders in the node's cache, in time order."""
    fills = [
        fill_from_event(event)
        for order in cache.orders(instrument_id=instrument_id)
        for event in order.events
        if isinstance(event, OrderFilled)
    ]
    return sorted(fills, key=lambda f: f.ts_ns)


def mean_abs_position(fills: list[Fill], start_ns: int, end_ns: int, step_ns: int = 1_000_000_000) -> float:
    """Mean |position| at each ``step_ns`` from ``start_ns`` to ``end_ns`` (at least one sample)."""
    grid = np.arange(start_ns, max(end_ns, start_ns) + 1, step_ns, dtype=np.int64)
    if not fills:
        return 0.0
    times = np.array([f.ts_ns for f in fills], dtype=np.int64)
    path = np.cumsum([f.signed_qty for f in fills])
    index = np.searchsorted(times, grid, side="right")
    positions = np.where(index > 0, path[np.maximum(index - 1, 0)], 0.0)
    return float(np.mean(np.abs(positions)))


def latency_stats(costs_ns: list[int] | None) -> dict[str, float | int | None]:
    """Decision compute cost percentiles in microseconds (``None`` without decisions)."""
    if not costs_ns:
        return {"n": 0, "p50_us": None, "p99_us": None}
    values = np.asarray(costs_ns, dtype=np.float64) / 1000.0
    return {"n": int(values.size), "p50_us": round(float(np.percentile(values, 50)), 1), "p99_us": round(float(np.percentile(values, 99)), 1)}


def session_report(
    *,
    fills: list[Fill],
    mark: float | None,
    start_ns: int,
    end_ns: int,
    strategy: Any,
    multiplier: float = 1.0,
    inverse: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report object: ``meta`` (mode, config, replay...) first, then the session's figures."""
    ledger = FillLedger(multiplier=multiplier)
    for fill in fills:
        ledger.add(fill)
    pnl = None if inverse else ledger.pnl(mark)
    return {
        **(meta or {}),
        "wall_s": round((end_ns - start_ns) / 1e9, 3),
        "pnl_mid": None if pnl is None else round(pnl, 6),
        "mark_mid": mark,
        "fees": round(ledger.fees, 6),
        "position_final": round(ledger.position, 12),
        "fills": len(fills),
        "maker_fills": sum(1 for f in fills if f.maker),
        "volume": round(sum(abs(f.signed_qty) for f in fills), 12),
        "map_1s": round(mean_abs_position(fills, start_ns, end_ns), 12),
        "decisions": getattr(strategy, "decisions", None),
        "quote_updates": getattr(strategy, "quote_updates", None),
        "killed": getattr(strategy, "killed", None),
        "decision_latency": latency_stats(getattr(strategy, "decision_costs_ns", None)),
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)  # a reader never sees half a report
    return path
