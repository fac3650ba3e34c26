"""Queue-position rules on the pure bookkeeping (no NautilusTrader): one scenario per rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backtests.fill.queue import (
    BUY,
    SELL,
    QueueBook,
    TouchBook,
    log_share,
    make_share,
    power_share,
    risk_averse_share,
)

P = 10_000  # a price in raw units; P - 1 is one tick below


def book(model: str = "risk_averse", n: float = 2.0) -> QueueBook:
    return QueueBook(make_share(model, n))


def test_share_functions_follow_the_formulas():
    assert risk_averse_share(3, 7) == 0.0
    assert power_share(2)(3, 7) == pytest.approx(9 / (9 + 49))
    assert log_share(3, 7) == pytest.approx(math.log(4) / (math.log(4) + math.log(8)))
    assert power_share(1)(0, 0) == 0.0  # empty level: nothing to split
    with pytest.raises(ValueError):
        make_share("power", 0)
    with pytest.raises(ValueError):
        make_share("fifo")


def test_fills_only_by_the_excess_over_the_queue_ahead():
    q = book()
    q.place("a", BUY, P, 3, displayed=5)
    assert q.on_trade(P, 4, SELL) == {}
    assert q.order("a").ahead == 1
    assert q.on_trade(P, 3, SELL) == {"a": 2}
    assert q.order("a").remaining == 1


def test_buyer_prints_do_not_touch_the_bid_queue():
    q = book()
    q.place("a", BUY, P, 1, displayed=0)
    assert q.on_trade(P, 10, BUY) == {}


def test_our_orders_share_one_fifo_so_volume_is_handed_out_once():
    q = book()
    q.place("a", BUY, P, 2, displayed=1)
    q.place("b", BUY, P, 2, displayed=1)
    q.on_depth(
        BUY, P, 3
    )  # 2 more market lots join behind a (and in front of nothing of b's)
    fills = q.on_trade(P, 4, SELL)  # 1 market, a's 2, then 1 to b
    assert fills == {"a": 2, "b": 1}
    assert sum(fills.values()) <= 4


def test_trade_through_fills_better_priced_orders_first():
    q = book()
    q.place("hi", BUY, P + 1, 2, displayed=0)
    q.place("at", BUY, P, 5, displayed=0)
    assert q.on_trade(P - 1, 3, SELL) == {"hi": 2, "at": 1}


def test_risk_averse_puts_every_cancel_behind_but_clamps_to_what_is_shown():
    q = book("risk_averse")
    q.place("a", BUY, P, 1, displayed=5)
    q.on_depth(BUY, P, 9)
    q.on_depth(BUY, P, 6)
    assert q.order("a").ahead == 5
    q.on_depth(BUY, P, 2)
    assert q.order("a").ahead == 2


@pytest.mark.parametrize("model,n", [("power", 1.0), ("power", 2.0), ("log", 2.0)])
def test_probabilistic_models_split_cancels_by_their_formula(model, n):
    q = book(model, n)
    q.place("a", SELL, P, 1, displayed=4)
    q.on_depth(SELL, P, 10)  # 6 behind
    q.on_depth(SELL, P, 8)  # 2 cancelled
    share = make_share(model, n)(4, 6)
    assert q.order("a").ahead == pytest.approx(4 - 2 * share)


def test_cancels_beyond_the_back_come_from_the_front():
    q = book("power", 2.0)
    q.place("a", BUY, P, 1, displayed=9)
    q.on_depth(BUY, P, 10)  # back = 1
    q.on_depth(BUY, P, 4)  # 6 cancelled, at most 1 can be behind
    assert q.order("a").ahead <= 4


def test_traded_volume_is_not_counted_again_as_a_cancel():
    q = book("power", 1.0)
    q.place("a", BUY, P, 1, displayed=5)
    q.on_depth(BUY, P, 10)
    q.on_trade(P, 3, SELL)  # ahead 5 -> 2
    q.on_depth(BUY, P, 7)  # the same 3 lots leaving the displayed level
    assert q.order("a").ahead == 2


def test_modify_new_price_or_larger_size_loses_priority_smaller_keeps_it():
    q = book()
    q.place("a", BUY, P, 2, displayed=5)
    q.on_trade(P, 4, SELL)
    q.modify("a", P, 1, displayed=1)
    assert q.order("a").ahead == 1  # smaller: kept its place
    q.modify("a", P, 3, displayed=7)
    assert q.order("a").ahead == 7  # larger: back of the queue
    q.modify("a", P - 1, 3, displayed=4)
    assert (q.order("a").price, q.order("a").ahead) == (P - 1, 4)


def test_crossed_orders_are_reported_by_the_displayed_opposite_side():
    q = book()
    q.place("b", BUY, P, 1, displayed=0)
    q.place("s", SELL, P + 5, 1, displayed=0)
    assert [o.order_id for o in q.crossed(P - 1, P + 1)] == []
    assert [o.order_id for o in q.crossed(P - 1, P)] == ["b"]
    assert [o.order_id for o in q.crossed(P + 5, P + 6)] == ["s"]


def test_touch_baseline_ignores_the_queue():
    t = TouchBook()
    t.place("a", BUY, P, 2, displayed=50)
    assert t.on_trade(P, 1, SELL) == {"a": 2}


@given(
    displayed=st.integers(0, 50),
    qty=st.integers(1, 10),
    events=st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=30),
    n=st.floats(0.25, 4.0),
)
def test_invariants_fills_never_exceed_trades_or_size_and_ahead_stays_within_display(
    displayed, qty, events, n
):
    q = book("power", n)
    q.place("a", BUY, P, qty, displayed)
    filled = traded = 0.0
    for is_trade, value in events:
        if "a" not in q:
            break
        if is_trade:
            traded += value
            filled += q.on_trade(P, value, SELL).get("a", 0.0)
        else:
            q.on_depth(BUY, P, value)
            if "a" in q:
                assert 0 <= q.order("a").ahead <= value
    assert filled <= min(traded, qty) + 1e-9
