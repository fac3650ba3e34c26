"""The synthetic L2 market: determinism, book invariants, catalog round trip, CLI, and the
stylized facts against the real BTCUSDT-PERP capture (skipped when the real data is absent)."""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import BookOrder, OrderBookDelta, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, BookType, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from catalog.synth import cli
from catalog.synth.calibrate import sha256_of, summary
from catalog.synth.generate import DEFAULT_PARAMS_PATH, generate, load_params, write_result
from catalog.synth.model import SynthParams
from catalog.synth.stats import QUANTILES, market_stats

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_FILE = REAL_DIR / "hftbacktest-binance" / "usdm" / "btcusdt_20240808.gz"
needs_real = pytest.mark.skipif(not REAL_FILE.is_file(), reason=f"real capture not present at {REAL_FILE}")

F_LAST = int(RecordFlag.F_LAST)
F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)
COMPARE_MINUTES = 10.0  # synthetic minutes compared with the real 5.7 min

# Tolerances of the stylized-facts comparison, synthetic vs real. The real capture is 5.7 minutes,
# so its own sampling error is part of every gap; the bounds below are what the calibrated model
# meets across seeds, and each says why it is as wide as it is.
RATE_TOL = 0.30  # trades/s, market orders/s, batches/s: relative. Counts are tight, but the rate
# rides on the volatility regime, and 10 simulated minutes visit few regime spells.
SPREAD_TOL = 0.30  # mean spread in ticks, relative (both are ~1 tick with rare wide excursions)
ONE_TICK_ABS = 0.02  # share of time at a one-tick spread, absolute (real: 99.4 %)
MID_STD_TOL = 0.40  # 1 s mid-change std, relative: a few jumps of hundreds of ticks carry it
ZERO_MOVE_ABS = 0.15  # share of 1 s intervals without a mid change, absolute
TOUCH_TOL = 0.40  # mean size at the touch, relative (real touch sizes are heavy-tailed)
DEPTH_TOL = 0.60  # summed mean size at 1-4 and 5-19 ticks, relative: the real book behind the
# touch is sparse and lumpy (a handful of resting orders), only its order of magnitude is a fact
EMPTY_ABS = 0.15  # mean share of empty levels at 1-19 ticks, absolute (real: ~83 %)
SIZE_MEDIAN_TOL = 0.50  # median trade and market-order size, relative (sizes are on a 0.001 grid)
FILLS_TOL = 0.30  # maker fills per market order, relative
CLUSTER_FACTOR = 2.5  # high/low tercile volatility ratio within this factor of the real one: the
# ratio of 34 (real) or 60 (synthetic) ten-second windows is itself noisy; on 5.7 min pieces the
# model's own ratio spans 4.3-10.3 (5-95 %), and the real 4.4 sits inside that range
CLUSTER_MIN = 2.0  # ... and clearly above 1 (volatility regimes exist)
CORR_SIGMAS = 3.0  # correlations on a 1 s horizon have about one independent sample per second:
# standard error ~ 1/sqrt(seconds); synthetic and real must agree within 3 combined errors
SIGNIFICANT_SIGMAS = 2.0  # ... and the synthetic imbalance -> next move correlation must be this
# many standard errors above zero (the model's own value is ~0.15, 4 errors on 10 minutes)


def _rel(syn: float, real: float) -> float:
    return abs(syn - real) / abs(real)


def stylized_fact_failures(real: dict[str, float], syn: dict[str, float]) -> list[str]:
    """Every comparison of the tolerance table; returns the failures (empty = all good)."""
    out: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    for key in ("trades_per_s", "market_orders_per_s", "batches_per_s"):
        check(_rel(syn[key], real[key]) <= RATE_TOL, f"{key}: {syn[key]:.3g} vs real {real[key]:.3g} (±{RATE_TOL:.0%})")
    check(_rel(syn["spread_mean_ticks"], real["spread_mean_ticks"]) <= SPREAD_TOL, f"spread {syn['spread_mean_ticks']:.3g} vs {real['spread_mean_ticks']:.3g}")
    check(abs(syn["spread_one_tick_fraction"] - real["spread_one_tick_fraction"]) <= ONE_TICK_ABS, "one-tick spread share")
    check(_rel(syn["mid_change_1s_std_ticks"], real["mid_change_1s_std_ticks"]) <= MID_STD_TOL, f"1 s mid std {syn['mid_change_1s_std_ticks']:.3g} vs {real['mid_change_1s_std_ticks']:.3g}")
    check(abs(syn["mid_change_1s_zero_fraction"] - real["mid_change_1s_zero_fraction"]) <= ZERO_MOVE_ABS, "share of quiet seconds")
    check(_rel(syn["touch_size_mean"], real["touch_size_mean"]) <= TOUCH_TOL, f"touch size {syn['touch_size_mean']:.3g} vs {real['touch_size_mean']:.3g}")
    for key in ("depth_1_4", "depth_5_19"):
        check(_rel(syn[key], real[key]) <= DEPTH_TOL, f"{key}: {syn[key]:.3g} vs {real[key]:.3g}")
    check(abs(syn["depth_empty_1_19"] - real["depth_empty_1_19"]) <= EMPTY_ABS, "empty levels behind the touch")
    for key in ("trade_size_median", "market_order_size_median"):
        check(_rel(syn[key], real[key]) <= SIZE_MEDIAN_TOL, f"{key}: {syn[key]:.3g} vs {real[key]:.3g}")
    check(_rel(syn["fills_per_market_order"], real["fills_per_market_order"]) <= FILLS_TOL, "fills per market order")
    ratio = syn["vol_tercile_ratio"]
    check(CLUSTER_MIN < ratio and real["vol_tercile_ratio"] / CLUSTER_FACTOR <= ratio <= real["vol_tercile_ratio"] * CLUSTER_FACTOR, f"vol tercile ratio {ratio:.3g} vs {real['vol_tercile_ratio']:.3g}")
    check(syn["trade_rate_high_over_low_vol"] > 1.0, "trading is busier in volatile spells")
    error = math.sqrt(1 / real["duration_s"] + 1 / syn["duration_s"])
    for key in ("imbalance_next_1s_corr", "ofi_next_1s_corr"):
        check(syn[key] > 0, f"{key} must be positive, got {syn[key]:.3g}")
        check(abs(syn[key] - real[key]) <= CORR_SIGMAS * error, f"{key}: {syn[key]:.3g} vs {real[key]:.3g} (±{CORR_SIGMAS * error:.3g})")
    check(syn["imbalance_next_1s_corr"] > SIGNIFICANT_SIGMAS / math.sqrt(syn["duration_s"]), "imbalance predicts the next 1 s move significantly")
    check(syn["move_sign_acf"] > 0, "consecutive mid moves keep their direction (momentum)")
    return out


@pytest.fixture(scope="module")
def params() -> SynthParams:
    return load_params()


@pytest.fixture(scope="module")
def compare_run(params: SynthParams):
    return generate(params, COMPARE_MINUTES, seed=0, progress=False)


@pytest.fixture(scope="module")
def short_run(params: SynthParams):
    return generate(params, 3.0, seed=11, progress=False)


def _key(d: OrderBookDelta) -> tuple:
    return (int(d.action), int(d.order.side), d.order.price.raw, d.order.size.raw, d.flags, d.sequence, d.ts_event, d.ts_init)


def _tkey(t: TradeTick) -> tuple:
    return (t.price.raw, t.size.raw, int(t.aggressor_side), str(t.trade_id), t.ts_event, t.ts_init)


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_same_market_other_seed_other_market(params: SynthParams) -> None:
    a = generate(params, 1.0, seed=7, progress=False)
    b = generate(params, 1.0, seed=7, progress=False)
    c = generate(params, 1.0, seed=8, progress=False)
    assert [_key(d) for d in a.deltas] == [_key(d) for d in b.deltas]
    assert [_tkey(t) for t in a.trades] == [_tkey(t) for t in b.trades]
    assert [_key(d) for d in a.deltas] != [_key(d) for d in c.deltas]


# -- invariants ----------------------------------------------------------------------------


def check_invariants(deltas: list[OrderBookDelta], trades: list[TradeTick], tick_raw: int, lot_raw: int) -> dict[str, int]:
    """Assert every promise the generator makes about its output; returns counts for the caller."""
    assert deltas[0].action == BookAction.CLEAR and deltas[0].flags & F_SNAPSHOT
    first_last = next(i for i, d in enumerate(deltas) if d.flags & F_LAST)
    assert all(d.flags & F_SNAPSHOT and d.action == BookAction.ADD for d in deltas[1 : first_last + 1])
    assert not any(d.flags & F_SNAPSHOT for d in deltas[first_last + 1 :])
    assert deltas[-1].flags & F_LAST
    assert all(a.ts_init <= b.ts_init for a, b in zip(deltas, deltas[1:]))
    assert all(a.ts_init <= b.ts_init for a, b in zip(trades, trades[1:]))

    book = OrderBook(deltas[0].instrument_id, BookType.L2_MBP)
    levels: dict[int, dict[int, int]] = {int(OrderSide.BUY): {}, int(OrderSide.SELL): {}}
    traded: dict[tuple[int, int], int] = defaultdict(int)  # (passive side, price) -> size since last batch
    must_touch: set[tuple[int, int]] = set()
    trade_iter = iter(trades)
    pending = next(trade_iter, None)
    batches = checked_trades = 0
    batch_prices: set[tuple[int, int]] = set()
    for d in deltas:
        while pending is not None and batches and pending.ts_init < d.ts_init:
            passive = int(OrderSide.SELL if pending.aggressor_side == AggressorSide.BUYER else OrderSide.BUY)
            price, size = pending.price.raw, pending.size.raw
            assert price % tick_raw == 0 and size % lot_raw == 0 and size > 0
            traded[(passive, price)] += size
            assert traded[(passive, price)] <= levels[passive].get(price, 0), "trade larger than the displayed level"
            must_touch.add((passive, price))
            checked_trades += 1
            pending = next(trade_iter, None)
        book.apply_delta(d)
        if d.action != BookAction.CLEAR:
            side, price, size = int(d.order.side), d.order.price.raw, d.order.size.raw
            assert price % tick_raw == 0 and price > 0
            assert size % lot_raw == 0
            if d.action == BookAction.DELETE:
                levels[side].pop(price, None)
            else:
                assert size > 0
                levels[side][price] = size
            batch_prices.add((side, price))
        if d.flags & F_LAST:
            batches += 1
            bid, ask = book.best_bid_price(), book.best_ask_price()
            assert bid is not None and ask is not None and bid < ask, f"crossed or locked after batch {batches}: {bid} >= {ask}"
            assert must_touch <= batch_prices, "a traded level is missing from the next batch"
            must_touch.clear()
            traded.clear()
            batch_prices.clear()
    assert pending is None or pending.ts_init >= deltas[-1].ts_init
    return {"batches": batches, "trades": checked_trades}


def test_invariants_hold_on_generated_market(short_run) -> None:
    inst = short_run.instrument
    counts = check_invariants(short_run.deltas, short_run.trades, inst.price_increment.raw, inst.size_increment.raw)
    assert counts["batches"] > 2000 and counts["trades"] > 1000  # a 3 min market at BTC-like rates


def test_invariant_checker_catches_violations(short_run) -> None:
    """The checker above is what makes the invariant tests mean something: it must fail on bad data."""
    inst = short_run.instrument
    tick_raw, lot_raw = inst.price_increment.raw, inst.size_increment.raw
    deltas = list(short_run.deltas)
    last = deltas[-1]
    ask = max(d.order.price for d in deltas[-200:] if d.action != BookAction.DELETE and d.order.side == OrderSide.SELL)
    crossing = OrderBookDelta(last.instrument_id, BookAction.ADD, BookOrder(OrderSide.BUY, ask, Quantity.from_str("1.000"), 0), F_LAST, 0, last.ts_init + 1, last.ts_init + 1)
    with pytest.raises(AssertionError, match="crossed or locked"):
        check_invariants([*deltas, crossing], [], tick_raw, lot_raw)
    t = short_run.trades[len(short_run.trades) // 2]
    greedy = TradeTick(t.instrument_id, t.price, Quantity.from_str("500.000"), t.aggressor_side, TradeId("X"), t.ts_event, t.ts_init)
    trades = [*short_run.trades]
    trades[len(trades) // 2] = greedy
    with pytest.raises(AssertionError, match="larger than the displayed level"):
        check_invariants(deltas, trades, tick_raw, lot_raw)


def test_recentring_the_price_grid_is_invisible(monkeypatch: pytest.MonkeyPatch, params: SynthParams) -> None:
    """A small price grid forces several re-centrings in a short, very volatile run; the published
    market must be exactly the one a grid too large to re-centre gives."""
    from catalog.synth import model

    wild = replace(params, jump_rate=[r * 50 for r in params.jump_rate])
    reference = generate(wild, 1.0, seed=2, progress=False)
    monkeypatch.setattr(model, "GRID", 8192)
    monkeypatch.setattr(model, "EDGE", model.MAX_GAP + 2 * params.depth_levels)
    offsets: set[int] = set()
    original = model.Market._recentre

    def counting(self: model.Market) -> None:
        original(self)
        offsets.add(self.book.offset)

    monkeypatch.setattr(model.Market, "_recentre", counting)
    small = generate(wild, 1.0, seed=2, progress=False)
    assert len(offsets) >= 2, "the run did not travel far enough to re-centre"
    assert [_key(d) for d in small.deltas] == [_key(d) for d in reference.deltas]
    assert [_tkey(t) for t in small.trades] == [_tkey(t) for t in reference.trades]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    jump_scale=st.floats(0.2, 5.0),
    mo_scale=st.floats(0.2, 5.0),
    touch_scale=st.floats(0.2, 5.0),
    survive=st.floats(0.0, 0.9),
    keep=st.floats(0.0, 1.0),
)
def test_never_crossed_whatever_the_seed_and_rates(seed: int, jump_scale: float, mo_scale: float, touch_scale: float, survive: float, keep: float) -> None:
    base = load_params()
    p = replace(
        base,
        jump_rate=[r * jump_scale for r in base.jump_rate],
        mo_rate=[r * mo_scale for r in base.mo_rate],
        informed_mo_rate=base.informed_mo_rate * mo_scale,
        touch_add_rate=base.touch_add_rate * touch_scale,
        stale_level_survive_prob=survive,
        old_touch_keep=keep,
    )
    run = generate(p, 0.25, seed=seed, progress=False)
    inst = run.instrument
    counts = check_invariants(run.deltas, run.trades, inst.price_increment.raw, inst.size_increment.raw)
    assert counts["batches"] > 100


# -- statistics ----------------------------------------------------------------------------


def test_stats_measure_a_known_market() -> None:
    """A hand-built market with a constant 2-tick spread, one trade a second and a 1-tick step
    up every 10 s: the statistics must read exactly that."""
    iid = InstrumentId.from_str("TEST-PERP.SIM")
    deltas: list[OrderBookDelta] = [OrderBookDelta.clear(iid, 0, 0, 0)]

    def level(action: BookAction, side: OrderSide, price: str, size: str, flags: int, ts: int) -> OrderBookDelta:
        return OrderBookDelta(iid, action, BookOrder(side, Price.from_str(price), Quantity.from_str(size), 0), flags, 0, ts, ts)

    deltas[0] = OrderBookDelta(iid, BookAction.CLEAR, deltas[0].order, F_SNAPSHOT, 0, 0, 0)
    deltas.append(level(BookAction.ADD, OrderSide.BUY, "100.0", "1.000", F_SNAPSHOT, 0))
    deltas.append(level(BookAction.ADD, OrderSide.SELL, "100.2", "2.000", F_SNAPSHOT | F_LAST, 0))
    bid = 1000
    trades: list[TradeTick] = []
    for k in range(1, 601):  # 60 s of 100 ms batches
        ts = k * 100_000_000
        if k % 100 == 0:  # step the whole book up one tick
            deltas.append(level(BookAction.DELETE, OrderSide.BUY, f"{bid / 10:.1f}", "0.000", 0, ts))
            deltas.append(level(BookAction.DELETE, OrderSide.SELL, f"{(bid + 2) / 10:.1f}", "0.000", 0, ts))
            bid += 1
            deltas.append(level(BookAction.ADD, OrderSide.BUY, f"{bid / 10:.1f}", "1.000", 0, ts))
            deltas.append(level(BookAction.ADD, OrderSide.SELL, f"{(bid + 2) / 10:.1f}", "2.000", F_LAST, ts))
        else:
            deltas.append(level(BookAction.UPDATE, OrderSide.BUY, f"{bid / 10:.1f}", "1.000", F_LAST, ts))
        if k % 10 == 5:
            trades.append(TradeTick(iid, Price.from_str(f"{(bid + 2) / 10:.1f}"), Quantity.from_str("0.005"), AggressorSide.BUYER, TradeId(str(k)), ts, ts))
    s = market_stats(deltas, trades, tick=0.1)
    assert s.spread_mean_ticks == pytest.approx(2.0)
    assert s.spread_fractions[1] == pytest.approx(1.0)
    assert s.depth_mean[0] == pytest.approx(1.5)
    assert s.trades_per_s == pytest.approx(1.0, rel=0.02)
    assert s.trade_size_quantiles[QUANTILES.index(0.5)] == pytest.approx(0.005)
    assert s.buy_fraction == 1.0
    assert s.move_prob_per_batch == pytest.approx(6 / 600, rel=0.01)
    assert s.move_size_quantiles[QUANTILES.index(0.5)] == pytest.approx(1.0)
    assert s.mid_change_1s_zero_fraction == pytest.approx(54 / 60, abs=0.02)


# -- catalog round trip --------------------------------------------------------------------


def test_round_trip_through_catalog(tmp_path: Path, params: SynthParams) -> None:
    run = generate(params, 0.5, seed=3, progress=False)
    write_result(run, tmp_path / "cat")
    catalog = ParquetDataCatalog(str(tmp_path / "cat"))
    iid = str(run.instrument.id)
    assert [str(i.id) for i in catalog.instruments()] == [iid]
    assert catalog.instruments()[0].price_increment == run.instrument.price_increment
    deltas = catalog.order_book_deltas(instrument_ids=[iid])
    trades = catalog.trade_ticks(instrument_ids=[iid])
    assert [_key(d) for d in deltas] == [_key(d) for d in run.deltas]
    assert [_tkey(t) for t in trades] == [_tkey(t) for t in run.trades]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging directory left behind"


# -- the stylized facts --------------------------------------------------------------------


def test_synthetic_matches_recorded_real_targets(compare_run) -> None:
    """Runs without the real data: the calibration file records the real statistics."""
    targets = json.loads(DEFAULT_PARAMS_PATH.read_text())["targets"]
    syn = summary(market_stats(compare_run.deltas, compare_run.trades))
    assert stylized_fact_failures(targets, syn) == []


@pytest.mark.real_data
@needs_real
def test_synthetic_matches_real_capture(compare_run) -> None:
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions

    result = read_binance_ws([REAL_FILE], IngestOptions())
    real = summary(market_stats(result.deltas, result.trades))
    syn = summary(market_stats(compare_run.deltas, compare_run.trades))
    assert stylized_fact_failures(real, syn) == []
    # The shipped calibration was fitted to exactly this file, measured by this code.
    payload = json.loads(DEFAULT_PARAMS_PATH.read_text())
    assert payload["source"]["files"][0]["name"] == REAL_FILE.name
    assert payload["source"]["files"][0]["sha256"] == sha256_of(REAL_FILE)
    for key in ("trades_per_s", "mid_change_1s_std_ticks", "imbalance_next_1s_corr", "touch_size_mean"):
        assert payload["targets"][key] == pytest.approx(real[key], rel=1e-3)


def test_calibration_file_is_provenanced_and_loads() -> None:
    payload = json.loads(DEFAULT_PARAMS_PATH.read_text())
    source = payload["source"]["files"][0]
    assert source["name"].endswith(".gz") and len(source["sha256"]) == 64
    params = load_params()
    assert params.tick == 0.1 and params.lot == 0.001
    assert len(params.level_add_rate) == params.depth_levels - 1


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown"):
        SynthParams.from_dict({**load_params().to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="probability"):
        replace(load_params(), old_touch_keep=1.5)
    with pytest.raises(ValueError, match="quantiles"):
        replace(load_params(), mo_size=[0.1] * 3)


# -- CLI -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmm catalog")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_synth_writes_a_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["synth", "--catalog", str(tmp_path / "c"), "--minutes", "0.5", "--seed", "5", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["instrument_id"] == "BTCUSDT-PERP.SIM" and out["seed"] == 5 and out["trades"] > 0
    catalog = ParquetDataCatalog(str(tmp_path / "c"))
    assert len(catalog.order_book_deltas(instrument_ids=["BTCUSDT-PERP.SIM"])) == out["deltas"]
    # A second write of the same span is refused rather than clobbering the data.
    assert args.func(args) == 1
    assert "overlaps" in capsys.readouterr().err


def test_cli_synth_other_instrument_and_bad_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["synth", "--catalog", str(tmp_path / "c"), "--minutes", "0.2", "--instrument-id", "ETHUSDT-PERP.SIM"])
    assert args.func(args) == 0
    assert "ETHUSDT-PERP.SIM" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"params": {"tick": -1}}))
    args = _parser().parse_args(["synth", "--catalog", str(tmp_path / "d"), "--params", str(bad)])
    assert args.func(args) == 1
    assert "tick" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_cli_calibrate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["calibrate", str(tmp_path / "nope.gz"), "--out", str(tmp_path / "p.json")])
    assert args.func(args) == 1
    assert "nope.gz" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.real_data
@needs_real
def test_cli_calibrate_real_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    args = _parser().parse_args(["calibrate", str(REAL_FILE), "--out", str(out), "--iterations", "0", "--sim-minutes", "1", "--json"])
    assert args.func(args) == 0
    payload = json.loads(out.read_text())
    assert payload["source"]["files"][0]["sha256"] == json.loads(DEFAULT_PARAMS_PATH.read_text())["source"]["files"][0]["sha256"]
    params = load_params(out)
    assert params.start_price == pytest.approx(61800.25, abs=1.0)
    assert json.loads(capsys.readouterr().out)["targets"]["trades_per_s"] > 10
