"""Samples: targets, chronological splits with an embargo, regimes fitted on train only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.ingest import write_result
from training.samples import SampleConfig, SampleSet, build_samples, split_labels
from tests.binance_capture import T0_NS, diff_line, snapshot_line, trade_line, write_capture

SECOND = 1_000_000_000


def _staircase_capture(path, seconds: int = 60):
    """Mid steps up one tick every second; spread stays one tick; a 0.010 trade every 0.5 s."""
    t = T0_NS
    lines = [diff_line(t, 1, 2, 0, [], []), snapshot_line(t + 1, 2, [("100.0", "1.000")], [("100.1", "1.000")])]
    u = 2
    for k in range(1, seconds + 1):
        ts = t + k * SECOND
        old_bid, new_bid = 1000 + k - 1, 1000 + k
        lines.append(
            diff_line(
                ts,
                u + 1,
                u + 2,
                u,
                [(f"{old_bid / 10:.1f}", "0.000"), (f"{new_bid / 10:.1f}", "1.000")],
                [(f"{(old_bid + 1) / 10:.1f}", "0.000"), (f"{(new_bid + 1) / 10:.1f}", "1.000")],
            ),
        )
        u += 2
        lines.append(trade_line(ts + SECOND // 4, 2 * k, f"{(new_bid + 1) / 10:.1f}", "0.010", False))
        lines.append(trade_line(ts + 3 * SECOND // 4, 2 * k + 1, f"{new_bid / 10:.1f}", "0.010", True))
    return write_capture(path, lines)


@pytest.fixture(scope="module")
def staircase_catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stairs")
    result = read_binance_ws([_staircase_capture(folder / "stairs.gz")], IngestOptions())
    write_result(result, folder / "catalog")
    return folder / "catalog"


def test_targets_are_exact_on_a_known_market(staircase_catalog):
    samples = build_samples(staircase_catalog, "BTCUSDT-PERP.BINANCE", SampleConfig(warmup_s=2.0), progress=False)
    names = samples.target_names
    assert names == ["mid_1s", "mid_5s", "spread_1s", "spread_5s", "volume_1s", "volume_5s"]
    y = samples.y
    np.testing.assert_allclose(y[:, names.index("mid_1s")], 1.0, atol=1e-9)
    np.testing.assert_allclose(y[:, names.index("mid_5s")], 5.0, atol=1e-9)
    np.testing.assert_allclose(y[:, names.index("spread_1s")], 1.0, atol=1e-9)
    np.testing.assert_allclose(y[:, names.index("volume_1s")], math.log1p(0.02), atol=1e-12)
    np.testing.assert_allclose(y[:, names.index("volume_5s")], math.log1p(0.10), atol=1e-12)


def test_no_target_window_crosses_a_split_boundary(staircase_catalog):
    samples = build_samples(staircase_catalog, "BTCUSDT-PERP.BINANCE", SampleConfig(warmup_s=2.0), progress=False)
    _, b1, b2, _ = samples.meta["split_bounds_ns"]
    horizon = int(max(samples.meta["horizons_s"]) * SECOND)
    train, val = samples.mask("train"), samples.mask("val")
    assert (samples.ts[train] + horizon < b1).all()
    assert (samples.ts[val] >= b1).all() and (samples.ts[val] + horizon < b2).all()
    assert (samples.ts[samples.mask("test")] >= b2).all()
    assert np.all(np.diff(samples.ts) > 0)


def test_split_labels_embargo_drops_only_the_boundary_windows():
    ts = np.arange(0, 100 * SECOND, SECOND // 10, dtype=np.int64)
    labels, bounds = split_labels(ts, (0.6, 0.2, 0.2), embargo_ns=5 * SECOND)
    dropped = ts[labels == -1]
    assert len(dropped) == 2 * 50  # 5 s of 100 ms samples before each of the two boundaries
    assert ((bounds[1] - 5 * SECOND <= dropped) & (dropped < bounds[1]) | (bounds[2] - 5 * SECOND <= dropped) & (dropped < bounds[2])).all()


def test_regime_thresholds_come_from_the_training_split(staircase_catalog):
    samples = build_samples(staircase_catalog, "BTCUSDT-PERP.BINANCE", SampleConfig(warmup_s=2.0), progress=False)
    vol = samples.x[:, samples.feature_names.index("realized_vol")]
    low, high = samples.meta["regime_thresholds"]
    train_vol = vol[samples.mask("train")]
    assert low == pytest.approx(np.quantile(train_vol, 1 / 3)) and high == pytest.approx(np.quantile(train_vol, 2 / 3))
    assert set(np.unique(samples.regime)) <= {0, 1, 2}


def test_samples_round_trip_through_parquet(staircase_catalog, tmp_path):
    samples = build_samples(staircase_catalog, "BTCUSDT-PERP.BINANCE", SampleConfig(warmup_s=2.0), progress=False)
    samples.save(tmp_path / "s.parquet")
    loaded = SampleSet.load(tmp_path / "s.parquet")
    assert np.array_equal(loaded.x, samples.x) and np.array_equal(loaded.y, samples.y)
    assert np.array_equal(loaded.ts, samples.ts) and loaded.meta == samples.meta


def test_bad_sample_config_is_refused():
    with pytest.raises(ValueError, match="split"):
        SampleConfig(split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="horizons"):
        SampleConfig(horizons_s=(0.0,))
