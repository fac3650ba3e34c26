"""Builds small Binance WebSocket captures (our own made-up lines, in the real format) for tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

T0_NS = 1_723_161_255_000_000_000


def snapshot_line(recv_ns: int, last_update_id: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> str:
    body = {"lastUpdateId": last_update_id, "E": recv_ns // 1_000_000, "T": recv_ns // 1_000_000, "bids": bids, "asks": asks}
    return f"{recv_ns} {json.dumps(body)}"


def diff_line(recv_ns: int, first: int, last: int, prev: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]], symbol: str = "BTCUSDT") -> str:
    ms = recv_ns // 1_000_000
    data = {"e": "depthUpdate", "E": ms, "T": ms, "s": symbol, "U": first, "u": last, "pu": prev, "b": bids, "a": asks}
    return f"{recv_ns} {json.dumps({'stream': symbol.lower() + '@depth@0ms', 'data': data})}"


def trade_line(recv_ns: int, trade_id: int, price: str, qty: str, buyer_is_maker: bool, symbol: str = "BTCUSDT") -> str:
    ms = recv_ns // 1_000_000
    data = {"e": "trade", "E": ms, "T": ms, "s": symbol, "t": trade_id, "p": price, "q": qty, "X": "MARKET", "m": buyer_is_maker}
    return f"{recv_ns} {json.dumps({'stream': symbol.lower() + '@trade', 'data': data})}"


def write_capture(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path


def simple_capture_lines() -> list[str]:
    """A valid USD-M capture: one diff before the snapshot, snapshot, three diffs, two trades."""
    t = T0_NS
    return [
        diff_line(t, 90, 100, 89, [("100.0", "1.000")], []),
        snapshot_line(t + 1_000_000, 105, [("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.500"), ("100.2", "3.000")]),
        diff_line(t + 2_000_000, 104, 110, 100, [("100.0", "1.200")], [("100.1", "0.000")]),
        trade_line(t + 2_500_000, 1, "100.2", "0.010", False),
        diff_line(t + 3_000_000, 111, 120, 110, [("99.9", "0.000"), ("99.8", "0.500")], [("100.3", "1.000")]),
        trade_line(t + 3_500_000, 2, "100.0", "0.020", True),
        diff_line(t + 4_000_000, 121, 130, 120, [("100.1", "0.300")], [("100.2", "0.000")]),
    ]
