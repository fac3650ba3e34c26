"""Ridge heads, both fluorescence maps, the plan derived from them, and plan validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.metrics import spearman_ic
from training.plan import PlanError, contiguous_groups, derive_plan, load_plan
from training.probe import data_fluorescence, normalize_rows_by_max, probe_tasks
from training.ridge import fit_ridge


def test_ridge_recovers_a_linear_signal_and_picks_a_penalty_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    w = rng.normal(size=(20, 2))
    y = x @ w + 0.1 * rng.normal(size=(600, 2))
    model = fit_ridge(x[:400], y[:400], x[400:], y[400:])
    assert (model.val_r2 > 0.98).all()
    assert np.allclose(model.predict(x[400:]), y[400:], atol=0.5)


def test_task_fluorescence_lights_up_the_layer_that_holds_the_signal():
    rng = np.random.default_rng(1)
    n, layers, dim = 500, 4, 8
    y = rng.normal(size=(n, 2))
    hidden = rng.normal(size=(n, layers, dim))
    hidden[:, 2, 0] += 3 * y[:, 0]  # layer 2 carries target 0
    hidden[:, 1, 1] += 3 * y[:, 1]  # layer 1 carries target 1
    train = np.arange(n) < 300
    val = ~train
    probe = probe_tasks(hidden, y, train, val, regime=np.arange(n) % 3)
    assert probe.best_layer.tolist() == [2, 1]
    f = probe.f_task
    assert f[2, 0] == 1.0 and f[1, 1] == 1.0 and f[0, 0] < 0.2
    assert (probe.regime_counts >= 10).all()
    assert np.nanmax(probe.f_task_regime) == pytest.approx(1.0)


def test_normalization_clips_negative_r2_and_keeps_all_zero_columns_zero():
    r2 = np.array([[-0.5, -0.1], [0.2, -0.3], [0.4, -0.2]])
    f = normalize_rows_by_max(r2)
    assert f[:, 0].tolist() == [0.0, 0.5, 1.0]
    assert f[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_data_fluorescence_attributes_a_layer_to_the_component_it_reads():
    rng = np.random.default_rng(2)
    m, layers, dim = 50, 3, 6
    hidden = rng.normal(size=(m, layers, dim))
    donors = rng.normal(size=(m, layers, dim))
    stained = {"a": hidden.copy(), "b": hidden.copy()}
    stained["a"][:, 1] = donors[:, 1]  # staining a changes layer 1 completely, b changes nothing
    stained["b"][:, 2] = 0.5 * hidden[:, 2] + 0.5 * donors[:, 2]
    f, ratios, components = data_fluorescence(hidden, stained, donors)
    assert components == ["a", "b"]
    assert f[1].tolist() == [1.0, 0.0]
    assert f[2].tolist() == [0.0, 1.0]
    assert ratios[1, 0] == pytest.approx(1.0)
    assert np.allclose(f[0], 0.0)  # nothing changed in layer 0


def test_contiguous_groups_cut_where_the_profile_changes():
    profiles = np.array([[0.0], [0.1], [0.0], [5.0], [5.1], [9.0], [9.2]])
    assert contiguous_groups(profiles, 3) == [[0, 1, 2], [3, 4], [5, 6]]


def _maps(layers=9, regime_shift=0.0):
    targets = ["mid_1s", "mid_5s", "spread_1s", "spread_5s", "volume_1s", "volume_5s"]
    f_task = np.zeros((layers, 6))
    f_task[0:3, 4:6] = 1.0  # volume lives early
    f_task[3:6, 0:2] = 1.0  # mid in the middle
    f_task[6:9, 2:4] = 1.0  # spread late
    f_regime = np.repeat(f_task[:, :, None], 3, axis=2).copy()
    if regime_shift:
        f_regime[:, 0:2, 2] = np.roll(f_task[:, 0:2], 3, axis=0)  # high vol: mid moves to the late group
    f_data = np.zeros((layers, 3))
    return f_task, f_regime, f_data, targets


def test_plan_gives_each_task_its_brightest_group():
    f_task, f_regime, f_data, targets = _maps()
    plan = derive_plan(f_task, f_regime, f_data, targets, ["mid", "spread", "volume"])
    assert plan.layer_groups == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    by_task = {s.task: s for s in plan.students}
    assert by_task["mid"].layers == [3, 4, 5] and by_task["spread"].layers == [6, 7, 8] and by_task["volume"].layers == [0, 1, 2]
    assert all(s.regime == "all" for s in plan.students)


def test_plan_splits_a_task_by_regime_only_where_the_regime_maps_differ():
    f_task, f_regime, f_data, targets = _maps(regime_shift=1.0)
    plan = derive_plan(f_task, f_regime, f_data, targets, ["mid", "spread", "volume"])
    mid = [s for s in plan.students if s.task == "mid"]
    assert [s.regime for s in mid] == ["low", "mid", "high"]
    assert mid[2].layers == [6, 7, 8] and mid[0].layers == [3, 4, 5]
    assert [s.regime for s in plan.students if s.task == "spread"] == ["all"]


def test_plan_round_trips_and_an_edited_plan_is_validated(tmp_path):
    f_task, f_regime, f_data, targets = _maps()
    plan = derive_plan(f_task, f_regime, f_data, targets, ["mid", "spread", "volume"])
    path = tmp_path / "plan.json"
    plan.save(path)
    assert load_plan(path) == plan
    data = json.loads(path.read_text())
    data["students"][0]["regime"] = "sideways"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"students\[0\].*unknown regime 'sideways'"):
        load_plan(path)
    data["students"][0]["regime"] = "all"
    data["layer_groups"][1] = [3, 5]
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"layer_groups\[1\].*not contiguous"):
        load_plan(path)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "missing.json")


def test_spearman_ic_handles_ties_and_constant_inputs():
    assert spearman_ic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])) == pytest.approx(1.0)
    assert spearman_ic(np.array([1.0, 2.0, 2.0, 4.0]), np.array([4.0, 3.0, 3.0, 1.0])) == pytest.approx(-1.0)
    assert np.isnan(spearman_ic(np.ones(5), np.arange(5.0)))
