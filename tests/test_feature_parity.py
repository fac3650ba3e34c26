"""The strategy computes, inside the engine, exactly the features training replayed from the catalog."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.ingest import write_result
from catalog.realdata import missing_reason
from cmm_strategy.strategy import CMMStrategy, CMMStrategyConfig
from tests.engine_harness import run_engine
from training.replay import replay_catalog

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)


class RecordingCMM(CMMStrategy):
    """CMMStrategy that keeps a copy of every feature vector it predicts from."""

    def __init__(self, config):
        super().__init__(config)
        self.seen: list[tuple[int, np.ndarray]] = []

    def predict(self, ts, bid, ask, position):
        out = super().predict(ts, bid, ask, position)
        self.seen.append((ts, self._x.copy()))
        return out


def test_strategy_features_equal_the_training_replay_to_1e9(quick_bundle, btc_capture, tmp_path):
    write_result(btc_capture, tmp_path / "catalog")
    instrument = btc_capture.instruments[0]
    strategy = RecordingCMM(CMMStrategyConfig(instrument_id=instrument.id, bundle_path=str(quick_bundle), charge_latency=False))
    engine = run_engine(strategy, instrument, btc_capture.deltas, btc_capture.trades)
    engine.dispose()
    # The replay writes a time's features after every event stamped with it; the strategy decides at
    # each batch. Where several batches share a nanosecond (the snapshot and the first diff), the
    # strategy's last decision there is the comparable one. A trade stamped with the very nanosecond
    # of a batch is ordered differently by the engine and by the replay's documented tie rule (book
    # first): those times are left out.
    trade_ts = {t.ts_init for t in btc_capture.trades}
    last_per_ts = dict(strategy.seen)
    seen = [(ts, x) for ts, x in last_per_ts.items() if ts not in trade_ts]
    assert len(seen) > 5_000
    times = np.array([ts for ts, _ in seen], dtype=np.int64)
    replay = replay_catalog(tmp_path / "catalog", str(instrument.id), strategy.bundle.spec, at_ts=times, progress=False)
    assert np.array_equal(replay.grid_ts, times)
    ours = np.stack([x for _, x in seen])
    scale = np.maximum(1.0, np.abs(replay.features))
    worst = np.max(np.abs(ours - replay.features) / scale)
    assert worst <= 1e-9, f"largest relative difference {worst:.3g}"

