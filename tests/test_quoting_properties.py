"""Invariants of the pure quoting function (METHOD.md section 7), one Hypothesis property each.

Every property runs at least 1,000 examples (CI requirement); example-based tests pin exact values.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmm_strategy.quoting import Quote, QuoteParams, Quotes, quote

TICKS = (0.01, 0.1, 0.25, 1.0)
LOTS = (0.001, 0.00001, 1.0)
PROPERTY = settings(max_examples=1000, deadline=None)


def _on_grid(n: int, step: float) -> float:
    """n steps as the float a venue would send (nearest double to the exact decimal)."""
    return float(Decimal(n) * Decimal(repr(step)))


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def params(draw: st.DrawFn, post_only: bool | None = None) -> QuoteParams:
    min_size = draw(st.one_of(st.just(0.0), _finite(0.0, 2.0)))
    return QuoteParams(
        alpha=draw(_finite(-3.0, 3.0)),
        skew=draw(_finite(0.0, 5.0)),
        eta=draw(_finite(0.0, 5.0)),
        q_max=draw(st.one_of(st.sampled_from([0.001, 0.01, 1.0, 5.0, 100.0]), _finite(1e-5, 1e4))),
        min_size=min_size,
        max_size=min_size + draw(_finite(1e-5, 100.0)),
        size_fraction=draw(_finite(0.0, 2.0)),
        levels=draw(st.integers(1, 5)),
        level_spacing_ticks=draw(st.integers(1, 5)),
        post_only=draw(st.booleans()) if post_only is None else post_only,
    )


@st.composite
def scenarios(draw: st.DrawFn, post_only: bool | None = None) -> dict:
    """Keyword arguments of ``quote``: an on-grid uncrossed book, mid inside it, plausible and extreme
    predictions, inventory in [-2 q_max, 2 q_max] (lot multiples or arbitrary floats)."""
    tick = draw(st.sampled_from(TICKS))
    lot = draw(st.sampled_from(LOTS))
    bid_ticks = draw(st.one_of(st.integers(1, 50), st.integers(1, 20_000_000)))
    spread_ticks = draw(st.one_of(st.just(1), st.integers(1, 100)))
    best_bid, best_ask = _on_grid(bid_ticks, tick), _on_grid(bid_ticks + spread_ticks, tick)
    p = draw(params(post_only))
    q = p.q_max
    inventory = draw(
        st.one_of(
            _finite(-2 * q, 2 * q),
            st.integers(-round(2 * q / lot), round(2 * q / lot)).map(lambda n: _on_grid(n, lot)),
            st.sampled_from([0.0, q, -q, 2 * q, -2 * q]),
        )
    )
    return dict(
        mid=best_bid + draw(_finite(0.0, 1.0)) * (best_ask - best_bid),
        best_bid=best_bid,
        best_ask=best_ask,
        tick=tick,
        lot=lot,
        pred_mid_ticks=draw(st.one_of(_finite(-20.0, 20.0), _finite(-1e7, 1e7))),
        pred_spread_ticks=draw(st.one_of(_finite(0.0, 20.0), _finite(-10.0, 1e5))),
        pred_volume_log=draw(st.one_of(_finite(-2.0, 10.0), _finite(-50.0, 1000.0))),
        inventory=inventory,
        params=p,
    )


def _tol(*scales: float) -> float:
    """Float slack for sums of sizes: the function works in exact lots, floats only at the edges."""
    return 1e-9 * max(1.0, *(abs(s) for s in scales))


# -- properties ------------------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_bid_is_always_below_ask(kw: dict) -> None:
    out = quote(**kw)
    if out.bids and out.asks:
        assert max(b.price_ticks for b in out.bids) < min(a.price_ticks for a in out.asks)
        assert max(b.price for b in out.bids) < min(a.price for a in out.asks)


@PROPERTY
@given(scenarios())
def test_prices_are_on_the_tick_grid(kw: dict) -> None:
    tick = kw["tick"]
    for q in quote(**kw).bids + quote(**kw).asks:
        assert isinstance(q.price_ticks, int) and q.price_ticks >= 1
        assert q.price == _on_grid(q.price_ticks, tick)  # exact: nearest float to the decimal
        assert abs(q.price / tick - round(q.price / tick)) < 1e-6


@PROPERTY
@given(scenarios(post_only=True))
def test_post_only_quotes_never_cross_the_book(kw: dict) -> None:
    out = quote(**kw)
    assert all(b.price < kw["best_ask"] for b in out.bids)
    assert all(a.price > kw["best_bid"] for a in out.asks)


@PROPERTY
@given(scenarios())
def test_no_order_can_take_inventory_past_q_max(kw: dict) -> None:
    out = quote(**kw)
    q, q_max = kw["inventory"], kw["params"].q_max
    tol = _tol(q_max, q) * kw["lot"]
    if out.bids:  # a side may rest only if filling all of it keeps |q| <= q_max
        assert q + sum(b.size for b in out.bids) <= q_max + tol
    if out.asks:
        assert q - sum(a.size for a in out.asks) >= -q_max - tol
    if q >= q_max:
        assert not out.bids  # already at/over the limit: the side that would grow |q| is absent
    if q <= -q_max:
        assert not out.asks


@PROPERTY
@given(scenarios(), st.data())
def test_more_inventory_never_raises_quotes(kw: dict, data: st.DataObject) -> None:
    q_max = kw["params"].q_max
    other = data.draw(_finite(-2 * q_max, 2 * q_max))
    low, high = sorted((kw["inventory"], other))
    at_low = quote(**{**kw, "inventory": low})
    at_high = quote(**{**kw, "inventory": high})
    if at_low.bids and at_high.bids:
        assert at_high.bids[0].price_ticks <= at_low.bids[0].price_ticks
    if at_low.asks and at_high.asks:
        assert at_high.asks[0].price_ticks <= at_low.asks[0].price_ticks


@PROPERTY
@given(scenarios())
def test_sizes_are_lot_multiples_within_min_and_max_or_absent(kw: dict) -> None:
    p, lot = kw["params"], kw["lot"]
    tol = _tol(p.max_size) * lot
    for q in quote(**kw).bids + quote(**kw).asks:
        assert isinstance(q.size_lots, int) and q.size_lots >= 1
        assert q.size == _on_grid(q.size_lots, lot)
        assert p.min_size - tol <= q.size <= p.max_size + tol


BAD = st.sampled_from([math.nan, math.inf, -math.inf])
UNUSABLE_FIELDS = ("pred_mid_ticks", "pred_spread_ticks", "pred_volume_log", "mid", "best_bid", "best_ask", "inventory")


@PROPERTY
@given(scenarios(), st.lists(st.sampled_from(UNUSABLE_FIELDS), min_size=1, max_size=3, unique=True), BAD)
def test_nan_or_infinite_predictions_produce_no_quotes_and_cancel(kw: dict, fields: list[str], bad: float) -> None:
    out = quote(**{**kw, **{f: bad for f in fields}})
    assert out.cancel_all and out.bids == () and out.asks == () and out.reason


@PROPERTY
@given(scenarios(), st.integers(0, 100), _finite(0.0, 1.0))
def test_crossed_input_book_produces_no_quotes(kw: dict, cross_ticks: int, u: float) -> None:
    tick = kw["tick"]
    bid_ticks = round(kw["best_bid"] / tick)
    best_ask = _on_grid(max(bid_ticks - cross_ticks, 0), tick)  # locked (0) or crossed
    mid = best_ask + u * (kw["best_bid"] - best_ask)
    out = quote(**{**kw, "best_ask": best_ask, "mid": mid})
    assert out.cancel_all and out.bids == () and out.asks == ()


# -- exact examples --------------------------------------------------------------------------------

BTC = dict(mid=100000.005, best_bid=100000.0, best_ask=100000.01, tick=0.01, lot=0.001)


def _p(**overrides: object) -> QuoteParams:
    base = dict(alpha=0.5, skew=0.5, eta=1.0, q_max=1.0, min_size=0.001, max_size=0.1, size_fraction=0.05)
    return QuoteParams(**{**base, **overrides})  # type: ignore[arg-type]


def test_reservation_price_half_spread_and_size_exact_values() -> None:
    # r = 10000000.5 + 0.5*1.3 - 0.5*(0.3/1)*1 = 10000001.0 ticks; h = max(1, 1*2/2) = 1 tick.
    # size = 0.05*expm1(1.2) = 0.116 -> clipped to max 0.1 = 100 lots.
    out = quote(**BTC, pred_mid_ticks=1.3, pred_spread_ticks=2.0, pred_volume_log=1.2, inventory=0.3, params=_p())
    assert out == Quotes(
        (Quote("BUY", 100000.0, 0.1, 10_000_000, 100),),
        (Quote("SELL", 100000.02, 0.1, 10_000_002, 100),),
        False,
        "ok",
    )


def test_bid_rounds_down_and_ask_rounds_up_on_a_quarter_tick() -> None:
    # mid 100.125 = 400.5 ticks of 0.25; h = 3*2.5/2 = 3.75 ticks -> [396.75, 404.25] -> 396 / 405.
    out = quote(100.125, 100.0, 100.25, 0.25, 1.0, 0.0, 2.5, math.log1p(40.0), 0.0, _p(eta=3.0, q_max=10.0, max_size=10.0, min_size=1.0))
    assert [(q.price_ticks, q.price) for q in out.bids] == [(396, 99.0)]
    assert [(q.price_ticks, q.price) for q in out.asks] == [(405, 101.25)]
    assert out.bids[0].size == 2.0 and out.bids[0].size_lots == 2  # 0.05 * 40 = 2 lots


def test_post_only_moves_a_crossing_bid_to_one_tick_below_the_ask() -> None:
    out = quote(**BTC, pred_mid_ticks=10.0, pred_spread_ticks=2.0, pred_volume_log=1.2, inventory=0.0, params=_p(alpha=1.0))
    assert out.bids[0].price_ticks == 10_000_000 and out.bids[0].price == 100000.0  # best_ask - tick
    assert out.asks[0].price_ticks == 10_000_012
    free = quote(**BTC, pred_mid_ticks=10.0, pred_spread_ticks=2.0, pred_volume_log=1.2, inventory=0.0, params=_p(alpha=1.0, post_only=False))
    assert free.bids[0].price_ticks == 10_000_009  # would take liquidity without post-only


def test_ladder_sizes_are_cut_so_the_side_total_stays_within_q_max() -> None:
    # q = 0.75, q_max = 1: bids may buy 0.25 in total -> 0.1 + 0.1 + 0.05; asks may sell 1.75 -> 4 x 0.1.
    out = quote(**BTC, pred_mid_ticks=0.0, pred_spread_ticks=2.0, pred_volume_log=5.0, inventory=0.75, params=_p(levels=4, level_spacing_ticks=2))
    assert [q.size_lots for q in out.bids] == [100, 100, 50]
    assert [q.price_ticks for q in out.bids] == [9_999_999, 9_999_997, 9_999_995]  # r = 10000000.125, h = 1
    assert [q.size_lots for q in out.asks] == [100] * 4
    assert "bid 3/4" in out.reason


def test_inventory_at_or_beyond_q_max_drops_the_side_that_would_grow_it() -> None:
    at_limit = quote(**BTC, pred_mid_ticks=0.0, pred_spread_ticks=2.0, pred_volume_log=1.2, inventory=1.0, params=_p())
    assert at_limit.bids == () and len(at_limit.asks) == 1 and not at_limit.cancel_all
    beyond = quote(**BTC, pred_mid_ticks=0.0, pred_spread_ticks=2.0, pred_volume_log=1.2, inventory=-1.5, params=_p())
    assert beyond.asks == () and beyond.bids[0].size == 0.1


def test_huge_predicted_volume_quotes_max_size_without_overflow() -> None:
    out = quote(**BTC, pred_mid_ticks=0.0, pred_spread_ticks=2.0, pred_volume_log=1e6, inventory=0.0, params=_p())
    assert out.bids[0].size == 0.1 and out.asks[0].size == 0.1


def test_size_below_min_after_lot_rounding_gives_no_quotes() -> None:
    out = quote(**BTC, pred_mid_ticks=0.0, pred_spread_ticks=2.0, pred_volume_log=0.0, inventory=0.0, params=_p(min_size=0.0015, max_size=0.0019))
    assert out.bids == () and out.asks == () and not out.cancel_all and "min_size" in out.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [("q_max", 0.0), ("q_max", -1.0), ("min_size", -0.1), ("max_size", 0.0), ("max_size", 0.0005), ("skew", -0.1),
     ("eta", -1.0), ("size_fraction", -0.5), ("alpha", math.nan), ("levels", 0), ("levels", 1.5),
     ("level_spacing_ticks", 0), ("post_only", 1)],
)
def test_invalid_params_raise_clear_value_errors(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        _p(**{field: value})


@pytest.mark.parametrize(("tick", "lot"), [(0.0, 0.001), (-0.01, 0.001), (0.01, 0.0), (math.nan, 0.001)])
def test_non_positive_tick_or_lot_cancels(tick: float, lot: float) -> None:
    out = quote(100.005, 100.0, 100.01, tick, lot, 0.0, 2.0, 1.0, 0.0, _p())
    assert out.cancel_all and out.bids == () and out.asks == ()
