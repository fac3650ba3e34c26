"""The L3 validation on the real CME ES MBO sample: it runs, is sane, and the default model is the closest."""

from __future__ import annotations

import pytest

from catalog.realdata import missing_reason, real_data_dir

pytestmark = pytest.mark.real_data
if missing_reason():
    pytest.skip(missing_reason(), allow_module_level=True)

from backtests.fill.l3_validation import (
    ES_MBO,
    VALIDATED_MODELS,
    format_table,
    run_validation,
)
from backtests.fill.registry import DEFAULT_FILL_MODEL, FILL_MODELS


@pytest.fixture(scope="module")
def result():
    return run_validation(real_data_dir() / ES_MBO)


def test_every_model_is_scored_on_the_same_orders(result):
    assert [s.model for s in result.scores] == list(VALIDATED_MODELS)
    orders = {s.orders for s in result.scores}
    exact = {s.exact_fills for s in result.scores}
    assert len(orders) == 1 and len(exact) == 1
    assert (
        0 < exact.pop() < orders.pop()
    )  # some orders fill within the horizon, some do not


def test_queue_models_beat_the_queue_blind_view(result):
    scores = {s.model: s for s in result.scores}
    touch = scores.pop("touch")
    for s in scores.values():
        assert s.censored_mae_s < touch.censored_mae_s
        assert abs(s.fill_count_error_pct) < abs(touch.fill_count_error_pct)
    assert touch.model_fills >= max(
        s.model_fills for s in scores.values()
    )  # ignoring the queue overfills


def test_default_fill_model_is_the_closest_to_the_exact_queue(result):
    queue_model, _ = FILL_MODELS[DEFAULT_FILL_MODEL]
    closest = result.closest()
    assert closest != "touch"
    assert (
        closest.rstrip("0123456789")
        == {"risk_averse": "risk_averse", "power": "power", "log": "log"}[queue_model]
    )


def test_table_lists_every_model(result):
    table = format_table(result)
    assert all(
        f"| {name} " in table or f"| **{name}** " in table for name in VALIDATED_MODELS
    )
