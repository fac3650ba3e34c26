"""Latency: separate entry and response latencies, recordings, replay through the engine, registry."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nautilus_trader.backtest.config import FillModelFactory, LatencyModelFactory
from nautilus_trader.common.config import ActorFactory

from backtests.fill.latency import (
    EntryResponseLatencyConfig,
    EntryResponseLatencyModel,
    LatencyReplayConfig,
    LatencyReplayModule,
    RecordedLatency,
)
from backtests.fill.nautilus_model import (
    QueueFillModelConfig,
    QueuePositionFillModel,
    QueuePositionModule,
)
from backtests.fill.registry import (
    DEFAULT_FILL_MODEL,
    FILL_MODELS,
    venue_fill_setup,
    venue_setup,
)
from tests.test_fill_engine import ASK, BID, SELLER, book, level, run, submit, trade


def test_entry_latency_drives_all_commands_and_response_is_kept_apart():
    model = EntryResponseLatencyModel(
        EntryResponseLatencyConfig(entry_latency_nanos=7, response_latency_nanos=11)
    )
    assert (
        model.insert_latency_nanos,
        model.update_latency_nanos,
        model.cancel_latency_nanos,
    ) == (7, 7, 7)
    assert model.response_latency_nanos == 11 and model.round_trip_ns == 18


def test_recording_answers_the_last_value_at_or_before_a_time(tmp_path):
    path = tmp_path / "lat.csv"
    path.write_text("ts,entry_ns,response_ns\n300,30,3\n100,10,1\n200,20,\n")
    rec = RecordedLatency.read(path)
    assert rec.at(50) == (10, 1)  # before the first row: the first row
    assert rec.at(100) == (10, 1)
    assert rec.at(250) == (20, 20)  # missing response: same as entry
    assert rec.at(10**12) == (30, 3)


def test_recording_reads_parquet_with_latency_ns_and_rejects_bad_files(tmp_path):
    path = tmp_path / "lat.parquet"
    pq.write_table(pa.table({"ts": [1, 2], "latency_ns": [5, 6]}), path)
    assert RecordedLatency.read(path).at(2) == (6, 6)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,lat\n1,2\n")
    with pytest.raises(ValueError, match="expected columns"):
        RecordedLatency.read(bad)
    with pytest.raises(ValueError):
        RecordedLatency([1, 2], [5, -1], [0, 0])


def test_replayed_latency_delays_orders_through_the_engine(tmp_path):
    """An order sent at t=5 reaches the venue after the latency recorded for t<=5, so a print before then misses it."""
    path = tmp_path / "lat.csv"
    path.write_text("ts,entry_ns\n0,100\n50,1\n")
    module = LatencyReplayModule(LatencyReplayConfig(path=str(path)))
    # NautilusTrader releases in-flight commands only when data (or a timer) arrives: the ask update at 150.
    data = [
        *book(1, bid_size=1),
        trade(50, 100.00, 2, SELLER),
        level(150, ASK, 101.00, 6),
        trade(200, 100.00, 2, SELLER),
    ]
    _, fast = run(data, [(5, submit("b", BID, 100.00, 1))])
    assert fast["b"] == [50]
    fill_model = QueuePositionFillModel(QueueFillModelConfig())
    _, slow = run(
        data,
        [(5, submit("b", BID, 100.00, 1))],
        fill_model=fill_model,
        modules=[QueuePositionModule(), module],
    )
    assert slow["b"] == [200]  # accepted at 105: the print at 50 was before it existed


def test_registry_builds_every_named_model_and_refuses_typos():
    for name, (queue_model, _) in FILL_MODELS.items():
        setup = venue_fill_setup(name)
        model = FillModelFactory.create(setup.fill_model)
        if queue_model is None:
            assert not isinstance(model, QueuePositionFillModel) and setup.modules == []
        else:
            assert model.queue_model == queue_model
            assert isinstance(
                ActorFactory.create(setup.modules[0]), QueuePositionModule
            )
    assert (
        FillModelFactory.create(venue_fill_setup("queue-power", n=3).fill_model).queue_n
        == 3.0
    )
    assert DEFAULT_FILL_MODEL in FILL_MODELS
    with pytest.raises(ValueError, match="fill_model.nn"):
        venue_fill_setup("queue-power", nn=2)
    with pytest.raises(ValueError, match="unknown model"):
        venue_fill_setup("queue-fifo")
    with pytest.raises(ValueError, match="latency_model.entry"):
        venue_setup(None, {"entry": 5})


def test_venue_setup_combines_fill_latency_and_replay_modules(tmp_path):
    path = tmp_path / "lat.csv"
    path.write_text("ts,entry_ns\n0,1\n")
    setup = venue_setup(
        {"name": "queue-log"}, {"entry_ms": 2, "response_ms": 3, "path": str(path)}
    )
    latency = LatencyModelFactory.create(setup.latency_model)
    assert (latency.insert_latency_nanos, latency.response_latency_nanos) == (
        2_000_000,
        3_000_000,
    )
    kinds = [
        type(ActorFactory.create(m)).__name__ for m in setup.venue_kwargs()["modules"]
    ]
    assert kinds == ["QueuePositionModule", "LatencyReplayModule"]
