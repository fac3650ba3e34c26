"""x_t: the incremental numeric state shared by training and the strategy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmm_strategy.features import NS, FeatureSpec, FeatureState


def _book(state: FeatureState, ts: int, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
    state.on_book(ts, np.array([bid, bid - 0.1]), np.array([bid_size, 1.0]), np.array([ask, ask + 0.1]), np.array([ask_size, 1.0]))


def test_vector_length_matches_names_and_is_finite_once_ready():
    spec = FeatureSpec(levels=3)
    state = FeatureState(spec, tick=0.1, lot=0.001)
    out = np.empty(spec.dim)
    assert np.isnan(state.write(0, out)).all()  # nothing known yet
    _book(state, NS, 100.0, 2.0, 100.1, 1.0)
    state.write(NS, out)
    assert len(spec.names()) == spec.dim == out.shape[0]
    assert np.isfinite(out).all()
    names = spec.names()
    assert out[names.index("spread_ticks")] == pytest.approx(1.0)
    assert out[names.index("bid_dist_0")] == pytest.approx(0.5) and out[names.index("ask_dist_0")] == pytest.approx(0.5)
    assert out[names.index("bid_dist_2")] == pytest.approx(2.5)  # third level missing: one tick beyond the second
    assert out[names.index("imbalance_l1")] == pytest.approx(1 / 3)


def test_order_flow_imbalance_is_positive_when_bids_grow_and_decays_with_time():
    spec = FeatureSpec(ofi_taus_s=(1.0,))
    state = FeatureState(spec, tick=0.1, lot=0.001)
    _book(state, 0, 100.0, 1.0, 100.1, 1.0)
    _book(state, NS // 10, 100.0, 3.0, 100.1, 1.0)  # bid queue +2 BTC = +2000 lots
    out = np.empty(spec.dim)
    i = spec.names().index("ofi_1s")
    assert state.write(NS // 10, out)[i] == pytest.approx(2000.0)
    assert state.write(NS // 10 + NS, out)[i] == pytest.approx(2000.0 * math.exp(-1.0))


def test_signed_trade_volume_follows_the_aggressor():
    spec = FeatureSpec(trade_taus_s=(5.0,))
    state = FeatureState(spec, tick=0.1, lot=0.001)
    _book(state, 0, 100.0, 1.0, 100.1, 1.0)
    state.on_trade(NS, 0.5, +1)
    state.on_trade(NS, 0.2, -1)
    out = state.write(NS, np.empty(spec.dim))
    names = spec.names()
    assert out[names.index("signed_volume_5s")] == pytest.approx(300.0)
    assert out[names.index("trade_count_5s")] == pytest.approx(2.0)
    assert out[names.index("log_time_since_trade")] == pytest.approx(0.0)


def test_replaying_the_same_events_gives_bit_identical_vectors():
    rng = np.random.default_rng(0)
    spec = FeatureSpec()
    vectors = []
    for _ in range(2):
        state = FeatureState(spec, tick=0.1, lot=0.001)
        out = np.empty(spec.dim)
        rows = []
        local = np.random.default_rng(1)
        ts = 0
        mid = 1000.0
        for _ in range(500):
            ts += int(local.integers(1, 200_000_000))
            mid += 0.1 * local.integers(-1, 2)
            if local.random() < 0.3:
                state.on_trade(ts, float(local.random()), int(local.choice([-1, 1])))
            _book(state, ts, mid - 0.05, float(local.random() + 0.1), mid + 0.05, float(local.random() + 0.1))
            rows.append(state.write(ts, out).copy())
        vectors.append(np.array(rows))
    del rng
    assert np.array_equal(vectors[0], vectors[1])


def test_bad_tick_or_lot_is_refused():
    with pytest.raises(ValueError, match="tick and lot"):
        FeatureState(FeatureSpec(), tick=0.0, lot=0.001)
