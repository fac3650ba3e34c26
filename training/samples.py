"""Training samples: ``x_t`` on a time grid, task targets, regime labels, leak-free splits.

Owns the task and regime definitions of METHOD.md section 1 and the chronological split; the
features themselves come from ``cmm_strategy.features`` through ``training.replay``.

Tasks at horizon H (all in ticks or log units, never raw prices):
- ``mid``: m(t+H) - m(t) in ticks;
- ``spread``: time-weighted mean spread over (t, t+H] in ticks;
- ``volume``: log(1 + traded base quantity in (t, t+H]).

Splits are chronological (default 60/20/20 of the time range). A sample whose target window
``(t, t+H_max]`` reaches into the next split is dropped (an embargo of H_max), so no target of
one split overlaps another split's time. Regimes are terciles of the trailing realized volatility
feature, with thresholds fitted on the training split only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.instruments import order_step
from cmm_strategy.features import FeatureSpec
from training.replay import ReplayResult, replay_catalog

TASKS = ("mid", "spread", "volume")
REGIMES = ("low", "mid", "high")
SPLITS = ("train", "val", "test")
SAMPLES_VERSION = "s1"
NS = 1_000_000_000


@dataclass(frozen=True)
class SampleConfig:
    """How samples are cut from a catalog."""

    grid_ms: int = 100
    horizons_s: tuple[float, ...] = (1.0, 5.0)
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    warmup_s: float = 10.0
    spec: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:
        if self.grid_ms <= 0:
            raise ValueError(f"grid_ms must be positive, got {self.grid_ms}")
        if not self.horizons_s or min(self.horizons_s) <= 0:
            raise ValueError(f"horizons must be positive seconds, got {self.horizons_s}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-9:
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {self.split}")


def target_names(horizons_s: tuple[float, ...]) -> list[str]:
    return [f"{task}_{h:g}s" for task in TASKS for h in horizons_s]


def _step_value(ts: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Value of the step function (ts, values) at times ``at`` (last value with ts <= at)."""
    idx = np.searchsorted(ts, at, side="right") - 1
    return values[np.clip(idx, 0, len(values) - 1)]


def _step_integral(ts: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Integral of the step function from ts[0] to ``at`` (ns * value units)."""
    widths = np.diff(ts).astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values[:-1] * widths)])
    idx = np.clip(np.searchsorted(ts, at, side="right") - 1, 0, len(ts) - 1)
    return cumulative[idx] + values[idx] * (at - ts[idx]).astype(np.float64)


def compute_targets(replay: ReplayResult, horizons_s: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Targets [n, 3 * len(horizons)] in ``target_names`` order, and a mask of fully observed rows."""
    tick = float(replay.instrument.price_increment)
    t = replay.grid_ts
    columns = []
    horizon_ns = [int(round(h * NS)) for h in horizons_s]
    mid_now = _step_value(replay.book_ts, replay.book_mid, t)
    for h in horizon_ns:
        columns.append((_step_value(replay.book_ts, replay.book_mid, t + h) - mid_now) / tick)
    for h in horizon_ns:
        integral = _step_integral(replay.book_ts, replay.book_spread, t + h) - _step_integral(replay.book_ts, replay.book_spread, t)
        columns.append(integral / h / tick)
    cum_qty = np.concatenate([[0.0], np.cumsum(replay.trade_base_qty)])
    for h in horizon_ns:
        lo = np.searchsorted(replay.trade_ts, t, side="right")
        hi = np.searchsorted(replay.trade_ts, t + h, side="right")
        columns.append(np.log1p(cum_qty[hi] - cum_qty[lo]))
    targets = np.stack(columns, axis=1) if columns else np.empty((len(t), 0))
    observed = (t + max(horizon_ns) <= replay.book_ts[-1]) & (t >= replay.book_ts[0])
    return targets, observed


def split_labels(grid_ts: np.ndarray, split: tuple[float, float, float], embargo_ns: int) -> tuple[np.ndarray, list[int]]:
    """Chronological split labels (0 train, 1 val, 2 test, -1 embargoed) and the boundaries (ns)."""
    start, end = int(grid_ts[0]), int(grid_ts[-1])
    span = end - start
    b1 = start + int(span * split[0])
    b2 = start + int(span * (split[0] + split[1]))
    labels = np.where(grid_ts < b1, 0, np.where(grid_ts < b2, 1, 2)).astype(np.int8)
    # Embargo: the target window (t, t + H_max] must not reach the next split.
    labels[(labels == 0) & (grid_ts + embargo_ns >= b1)] = -1
    labels[(labels == 1) & (grid_ts + embargo_ns >= b2)] = -1
    return labels, [start, b1, b2, end]


def regime_labels(realized_vol: np.ndarray, train_mask: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Terciles of trailing realized volatility, thresholds from the training split only."""
    train = realized_vol[train_mask]
    if len(train) < 3:
        raise ValueError("too few training samples to fit regime terciles")
    low, high = np.quantile(train, [1 / 3, 2 / 3])
    return np.digitize(realized_vol, [low, high]).astype(np.int8), [float(low), float(high)]


@dataclass
class SampleSet:
    """Samples in memory; ``save``/``load`` keep everything needed to reproduce them."""

    ts: np.ndarray
    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    regime: np.ndarray
    meta: dict[str, object]

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])  # type: ignore[arg-type]

    @property
    def target_names(self) -> list[str]:
        return list(self.meta["target_names"])  # type: ignore[arg-type]

    def mask(self, split: str) -> np.ndarray:
        return self.split == SPLITS.index(split)

    def save(self, path: str | Path) -> None:
        columns: dict[str, np.ndarray] = {"ts": self.ts, "split": self.split, "regime": self.regime}
        for j, name in enumerate(self.feature_names):
            columns[f"x.{name}"] = self.x[:, j]
        for j, name in enumerate(self.target_names):
            columns[f"y.{name}"] = self.y[:, j]
        table = pa.table(columns).replace_schema_metadata({"cmm": json.dumps(self.meta)})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> SampleSet:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(b"cmm")
        if raw is None:
            raise ValueError(f"{path} is not a CMM samples file (no 'cmm' metadata)")
        meta = json.loads(raw)
        if meta.get("samples_version") != SAMPLES_VERSION:
            raise ValueError(f"{path} has samples version {meta.get('samples_version')!r}, expected {SAMPLES_VERSION!r}: rebuild it")
        x = np.column_stack([table[f"x.{n}"].to_numpy() for n in meta["feature_names"]])
        y = np.column_stack([table[f"y.{n}"].to_numpy() for n in meta["target_names"]])
        return cls(
            ts=table["ts"].to_numpy(),
            x=x,
            y=y,
            split=table["split"].to_numpy(),
            regime=table["regime"].to_numpy(),
            meta=meta,
        )


def build_samples(catalog_dir: str | Path, instrument_id: str, config: SampleConfig = SampleConfig(), progress: bool = True) -> SampleSet:
    """Replay, compute targets, split and label; drops unobserved and embargoed rows."""
    replay = replay_catalog(
        catalog_dir,
        instrument_id,
        config.spec,
        grid_ns=config.grid_ms * 1_000_000,
        warmup_ns=int(config.warmup_s * NS),
        progress=progress,
    )
    if len(replay.grid_ts) < 10:
        raise ValueError(f"only {len(replay.grid_ts)} grid points for {instrument_id}: the data is shorter than the warm-up ({config.warmup_s} s) plus a few grid steps")
    targets, observed = compute_targets(replay, config.horizons_s)
    embargo_ns = int(max(config.horizons_s) * NS)
    splits, bounds = split_labels(replay.grid_ts, config.split, embargo_ns)
    keep = observed & (splits >= 0) & np.isfinite(replay.features).all(axis=1)
    names = config.spec.names()
    vol = replay.features[:, names.index("realized_vol")]
    regimes, thresholds = regime_labels(vol, keep & (splits == 0))
    inst = replay.instrument
    meta = {
        "samples_version": SAMPLES_VERSION,
        "instrument_id": str(inst.id),
        "tick": float(inst.price_increment),
        "lot": order_step(inst),
        "grid_ms": config.grid_ms,
        "horizons_s": list(config.horizons_s),
        "tasks": list(TASKS),
        "regimes": list(REGIMES),
        "regime_thresholds": thresholds,
        "split_fractions": list(config.split),
        "split_bounds_ns": bounds,
        "feature_spec": config.spec.to_dict(),
        "feature_names": names,
        "target_names": target_names(config.horizons_s),
        "catalog": str(Path(catalog_dir).resolve()),
    }
    return SampleSet(
        ts=replay.grid_ts[keep],
        x=replay.features[keep],
        y=targets[keep],
        split=splits[keep],
        regime=regimes[keep],
        meta=meta,
    )
