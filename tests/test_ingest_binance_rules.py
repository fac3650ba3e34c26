"""Binance rebuild rules, validation policy and atomic writes, on small captures written by the test.

These need no shared data: the captures are built line by line in the real Binance format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.enums import AggressorSide, BookAction, BookType

from backtests.cli import main as cmm
from catalog.binance_ws import parse_fixed, read_binance_ws
from catalog.errors import IngestError
from catalog.formats import IngestOptions
from catalog.validation import F_LAST, F_SNAPSHOT, ValidationPolicy
from tests.binance_capture import T0_NS, diff_line, simple_capture_lines, snapshot_line, write_capture


def _read(path: Path, repair: bool = False):
    return read_binance_ws([path], IngestOptions(policy=ValidationPolicy(repair=repair)))


def test_parse_fixed_keeps_exact_units_and_refuses_lost_precision():
    assert parse_fixed("61800.20", 1) == 618002
    assert parse_fixed("0.001", 3) == 1
    assert parse_fixed("1001", 0) == 1001
    assert parse_fixed("-2.5", 1) == -25
    with pytest.raises(ValueError):
        parse_fixed("61800.25", 1)
    with pytest.raises(ValueError):
        parse_fixed("nan", 2)


def test_snapshot_is_one_flagged_batch_then_one_batch_per_diff(tmp_path):
    result = _read(write_capture(tmp_path / "c.gz", simple_capture_lines()))
    deltas = result.deltas
    assert deltas[0].action == BookAction.CLEAR
    snapshot = [d for d in deltas if d.flags & F_SNAPSHOT]
    assert len(snapshot) == 5  # CLEAR + 4 levels
    assert snapshot[-1].flags & F_LAST
    # the pre-snapshot diff (u=100 <= 105) is dropped; three diffs follow, one F_LAST each
    assert sum(1 for d in deltas if d.flags & F_LAST) == 1 + 3
    assert [d.sequence for d in deltas if d.flags & F_LAST] == [105, 110, 120, 130]


def test_actions_follow_the_book_add_update_delete(tmp_path):
    result = _read(write_capture(tmp_path / "c.gz", simple_capture_lines()))
    after_snapshot = [d for d in result.deltas if not d.flags & F_SNAPSHOT]
    actions = [(d.action, str(d.order.price)) for d in after_snapshot]
    assert (BookAction.UPDATE, "100.0") in actions
    assert (BookAction.DELETE, "100.1") in actions
    assert (BookAction.ADD, "99.8") in actions
    assert (BookAction.ADD, "100.1") in actions  # re-added on the bid side at the end


def test_trades_carry_the_right_aggressor_side(tmp_path):
    result = _read(write_capture(tmp_path / "c.gz", simple_capture_lines()))
    assert [t.aggressor_side for t in result.trades] == [AggressorSide.BUYER, AggressorSide.SELLER]
    assert [str(t.trade_id) for t in result.trades] == ["1", "2"]


def test_buffered_diffs_get_the_snapshot_receive_time(tmp_path):
    t = T0_NS
    lines = [
        diff_line(t, 101, 110, 100, [("100.0", "5.000")], []),  # straddles snapshot 105, arrives first
        snapshot_line(t + 9_000_000, 105, [("100.0", "1.000")], [("100.1", "1.000")]),
    ]
    result = _read(write_capture(tmp_path / "c.gz", lines))
    update = result.deltas[-1]
    assert update.sequence == 110 and update.ts_init == t + 9_000_000


def test_files_given_in_order_continue_one_another(tmp_path):
    lines = simple_capture_lines()
    first = write_capture(tmp_path / "day1.gz", lines[:4])
    second = write_capture(tmp_path / "day2.gz", lines[4:])
    chained = read_binance_ws([first, second], IngestOptions())
    whole = _read(write_capture(tmp_path / "whole.gz", lines))
    assert [(d.action, d.order.price, d.order.size, d.flags) for d in chained.deltas] == [
        (d.action, d.order.price, d.order.size, d.flags) for d in whole.deltas
    ]
    assert chained.gaps == 0 and len(chained.trades) == 2


def test_missing_diff_is_a_gap_that_names_file_and_line(tmp_path):
    lines = simple_capture_lines()
    del lines[4]  # drop the diff u=120: the next one has pu=120 != 110
    path = write_capture(tmp_path / "gap.gz", lines)
    with pytest.raises(IngestError) as err:
        _read(path)
    assert err.value.file == str(path) and err.value.line == 6 and "gap" in str(err.value)
    repaired = _read(path, repair=True)
    assert repaired.gaps == 1


def test_crossed_snapshot_is_refused_and_repaired_on_request(tmp_path):
    t = T0_NS
    lines = [
        diff_line(t, 90, 100, 89, [], []),
        snapshot_line(t + 1_000_000, 105, [("100.2", "1.000"), ("100.0", "1.000")], [("100.1", "1.000"), ("100.3", "1.000")]),
        diff_line(t + 2_000_000, 104, 110, 100, [("99.0", "1.000")], []),
    ]
    path = write_capture(tmp_path / "crossed.gz", lines)
    with pytest.raises(IngestError, match=r"crossed.gz:2: crossed"):
        _read(path)
    repaired = _read(path, repair=True)
    book = OrderBook(repaired.deltas[0].instrument_id, BookType.L2_MBP)
    for delta in repaired.deltas:
        book.apply_delta(delta)
    assert book.best_bid_price() < book.best_ask_price()
    assert repaired.crossed == 1


def test_garbage_line_is_refused_or_dropped(tmp_path):
    lines = simple_capture_lines()
    lines.insert(3, "this is not a capture line")
    path = write_capture(tmp_path / "garbage.gz", lines)
    with pytest.raises(IngestError, match=r"garbage.gz:4: garbage"):
        _read(path)
    policy = ValidationPolicy(repair=True)
    result = read_binance_ws([path], IngestOptions(policy=policy))
    assert policy.counts() == {"garbage": 1} and len(result.trades) == 2


def test_truncated_gzip_is_refused(tmp_path):
    path = write_capture(tmp_path / "full.gz", simple_capture_lines() * 1)
    data = path.read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) - 20])
    with pytest.raises(IngestError, match="truncated"):
        _read(cut)


def test_capture_without_snapshot_is_refused(tmp_path):
    lines = [line for line in simple_capture_lines() if "lastUpdateId" not in line]
    with pytest.raises(IngestError, match="no REST depth snapshot"):
        _read(write_capture(tmp_path / "nosnap.gz", lines))


@pytest.mark.parametrize("corruption", ["garbage", "gap", "truncated", "crossed_snapshot"])
def test_a_bad_file_leaves_no_catalog_behind(tmp_path, capsys, corruption):
    lines = simple_capture_lines()
    if corruption == "garbage":
        lines.insert(2, "{oops")
    if corruption == "gap":
        del lines[4]
    if corruption == "crossed_snapshot":
        lines[1] = snapshot_line(T0_NS + 1_000_000, 105, [("100.5", "1.000")], [("100.1", "1.500")])
    path = write_capture(tmp_path / "bad.gz", lines)
    if corruption == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    catalog = tmp_path / "catalog"
    code = cmm(["catalog", "ingest", "binance-ws", str(path), "--catalog", str(catalog)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "nothing was written" in err
    assert not catalog.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_repair_writes_a_report_of_every_fix(tmp_path, capsys):
    lines = simple_capture_lines()
    lines.insert(3, "garbage")
    path = write_capture(tmp_path / "bad.gz", lines)
    report = tmp_path / "report.json"
    code = cmm(["catalog", "ingest", "binance-ws", str(path), "--catalog", str(tmp_path / "cat"), "--repair", "--report", str(report), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["problems"] == {"garbage": 1}
    problems = json.loads(report.read_text())["problems"]
    assert problems[0]["line"] == 4 and problems[0]["action"] == "drop the line"


# -- property: a book rebuilt from valid diffs is never crossed and equals the intended book ---------

_levels = st.dictionaries(st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=5000), max_size=12)


@st.composite
def _book_paths(draw):
    """A sequence of valid (uncrossed) L2 books on a 0.1 tick grid around 1000.0."""
    books = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        mid_ticks = draw(st.integers(min_value=9_950, max_value=10_050))
        bids = {mid_ticks - k: size for k, size in draw(_levels).items()}
        asks = {mid_ticks + k: size for k, size in draw(_levels).items()}
        books.append((bids, asks))
    return books


def _fmt(ticks: int) -> str:
    return f"{ticks // 10}.{ticks % 10}"


@settings(max_examples=200, deadline=None)
@given(_book_paths())
def test_rebuilt_book_is_never_crossed_after_a_batch(tmp_path_factory, books):
    """Any capture whose diffs lead through valid books rebuilds to exactly those books, never crossed."""
    t, uid = T0_NS, 1000
    first_bids, first_asks = books[0]
    lines = [
        diff_line(t, uid - 10, uid - 5, uid - 11, [], []),
        snapshot_line(
            t + 1,
            uid,
            [(_fmt(p), f"{s / 1000:.3f}") for p, s in first_bids.items()],
            [(_fmt(p), f"{s / 1000:.3f}") for p, s in first_asks.items()],
        ),
    ]
    prev_bids, prev_asks, prev_u = first_bids, first_asks, uid
    expected_by_update_id = {uid: books[0]}
    for step, (bids, asks) in enumerate(books[1:], start=1):
        def changes(old, new):
            out = [(_fmt(p), "0.000") for p in old if p not in new]
            out += [(_fmt(p), f"{s / 1000:.3f}") for p, s in new.items() if old.get(p) != s]
            return out

        # Deletes first on the side that moves away, so no intermediate state is implied.
        lines.append(diff_line(t + 10 * step, prev_u + 1, prev_u + 3, prev_u, changes(prev_bids, bids), changes(prev_asks, asks)))
        prev_bids, prev_asks, prev_u = bids, asks, prev_u + 3
        expected_by_update_id[prev_u] = (bids, asks)
    path = write_capture(tmp_path_factory.mktemp("prop") / "p.gz", lines)
    result = _read(path)
    book = OrderBook(result.deltas[0].instrument_id, BookType.L2_MBP)
    for delta in result.deltas:
        book.apply_delta(delta)
        if delta.flags & F_LAST:
            bids, asks = expected_by_update_id[delta.sequence]  # a diff that changes nothing emits no batch
            best_bid, best_ask = book.best_bid_price(), book.best_ask_price()
            assert best_bid is None or best_ask is None or best_bid < best_ask
            assert {round(float(l.price) * 10): round(float(l.size()) * 1000) for l in book.bids()} == bids
            assert {round(float(l.price) * 10): round(float(l.size()) * 1000) for l in book.asks()} == asks
    assert result.crossed == 0
