"""Teacher-direct baseline: the LLM itself quotes, paying its real per-decision latency.

Running the teacher inside a backtest would take hours, so its predictions are read from the cache
``cmm distill`` writes (``teacher_predictions.parquet``: the teacher's best-layer heads at every state
it read). What makes the comparison honest is the clock: a decision on the state at time t is acted
on at t + the teacher's measured latency (batch of one), and while it computes, no other decision is
made. The teacher decides only on states it has read: a book batch with no newer cached prediction
makes no decision (the quotes rest as they are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmm_strategy.market_maker import MarketMaker, MarketMakerConfig

TEACHER_PREDICTIONS = "teacher_predictions.parquet"


class TeacherDirectConfig(MarketMakerConfig, frozen=True):
    """``MarketMakerConfig`` (same quoting knobs as CMM) plus the teacher's cached predictions.

    Parameters
    ----------
    bundle_path : str
        Bundle folder whose ``teacher_predictions.parquet`` holds the teacher's predictions.
    predictions_path : str, optional
        Another predictions file (same columns) instead of the bundle's.
    horizon : str, default "1s"
        Which horizon's predictions drive the quotes.
    teacher_latency_ms : float, optional
        Charged per decision [ms]; default: the latency measured at extraction (file metadata).
    """

    bundle_path: str = ""
    predictions_path: str | None = None
    horizon: str = "1s"
    teacher_latency_ms: float | None = None


def load_teacher_predictions(path: Path, instrument_id: str, columns: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """(sorted ts_ns, predictions [n, len(columns)], measured ms per decision) for one instrument."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"no teacher predictions at {path}: run `cmm distill` (it writes {TEACHER_PREDICTIONS})")
    table = pq.read_table(path)
    missing = [c for c in ["instrument_id", "ts_ns", *columns] if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    table = table.filter(pc.equal(table["instrument_id"], instrument_id))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no teacher predictions for {instrument_id}")
    ts = table["ts_ns"].to_numpy()
    order = np.argsort(ts, kind="stable")
    values = np.column_stack([table[c].to_numpy() for c in columns])[order]
    meta = table.schema.metadata or {}
    ms = float(meta.get(b"teacher_ms_per_decision", b"nan"))
    return ts[order], values, ms


class TeacherDirectStrategy(MarketMaker):
    def setup(self) -> None:
        c = self.config
        path = Path(c.predictions_path) if c.predictions_path else Path(c.bundle_path) / TEACHER_PREDICTIONS
        columns = [f"{task}_{c.horizon}" for task in ("mid", "spread", "volume")]
        self._ts, self._pred, measured_ms = load_teacher_predictions(path, str(c.instrument_id), columns)
        latency_ms = c.teacher_latency_ms if c.teacher_latency_ms is not None else measured_ms
        if not np.isfinite(latency_ms) or latency_ms <= 0:
            raise ValueError(f"{path}: no measured teacher latency; set teacher_latency_ms")
        self.teacher_latency_ns = int(latency_ms * 1e6)
        self._next = 0  # first cached prediction not used yet

    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float] | None:
        last = int(np.searchsorted(self._ts, ts, side="right")) - 1  # newest state the teacher read at or before ts
        if last < self._next:
            return None
        self._next = last + 1
        row = self._pred[last]
        return float(row[0]), float(row[1]), self.volume_log_in_order_units(float(row[2]), 0.5 * (bid + ask))

    def decision_cost_ns(self, measured_ns: int) -> int:
        return self.teacher_latency_ns
