"""``cmm bench``: the figures CMM exists for, measured side by side in one run.

Benchmarks, not tests: each figure is a median over repeated runs after a warm-up (pyperf style),
and ratios are taken within one run because absolute times drift on shared machines. This module
grows with the project; today it measures the binance-ws ingestion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.ingest import write_result
from catalog.realdata import capture_paths, missing_reason


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    versions = {}
    for package in ("nautilus_trader", "numpy", "torch", "transformers", "pyarrow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def bench_ingest(repeats: int) -> dict[str, object]:
    """binance-ws ingestion of the real BTCUSDT-PERP capture: parse+validate, and parse+validate+write."""
    paths = capture_paths("BTCUSDT-PERP.BINANCE")
    read_binance_ws(paths, IngestOptions())  # warm-up: imports, page cache
    read_rates, total_rates, deltas = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = read_binance_ws(paths, IngestOptions())
        read_done = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            write_result(result, Path(tmp) / "catalog")
        written = time.perf_counter()
        deltas = len(result.deltas)
        read_rates.append(deltas / (read_done - started))
        total_rates.append(deltas / (written - started))
    return {
        "ingest_deltas_per_s": round(statistics.median(total_rates)),
        "ingest_read_only_deltas_per_s": round(statistics.median(read_rates)),
        "ingest_deltas": deltas,
        "ingest_repeats": repeats,
        "ingest_data": [str(p.name) for p in paths],
    }


def run_bench(quick: bool) -> dict[str, object]:
    figures: dict[str, object] = {"command": "cmm bench" + (" --quick" if quick else ""), "machine": machine()}
    reason = missing_reason()
    if reason:
        figures["skipped"] = reason
        return figures
    figures.update(bench_ingest(repeats=3 if quick else 7))
    return figures


_DESCRIPTIONS = {
    "ingest_deltas_per_s": "binance-ws ingest, parse + validate + atomic catalog write (deltas/s, median)",
    "ingest_read_only_deltas_per_s": "binance-ws ingest, parse + validate only (deltas/s, median)",
    "ingest_deltas": "deltas in the file",
    "ingest_repeats": "timed repeats after one warm-up",
    "ingest_data": "data used (../shared/data/real/hftbacktest-binance/usdm/)",
}


def render_markdown(figures: dict[str, object]) -> str:
    """BENCHMARKS.md from one run: every figure names the command that measured it."""
    command = figures["command"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated from one `{command}` run (`{command} --write-md BENCHMARKS.md`); re-run it to refresh.",
        "Benchmarks, not tests: medians over repeated runs after a warm-up, on the machine below.",
        "",
        "| figure | value | what | command |",
        "|---|---|---|---|",
    ]
    for key, value in figures.items():
        if key in ("command", "machine"):
            continue
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"| `{key}` | {shown} | {_DESCRIPTIONS.get(key, '')} | `{command}` |")
    machine_info = figures["machine"]
    lines += ["", "## Machine", "", "```json", json.dumps(machine_info, indent=2), "```", ""]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    figures = run_bench(args.quick)
    if args.write_md:
        Path(args.write_md).write_text(render_markdown(figures))
    if not args.json:
        for key, value in figures.items():
            if key != "machine":
                print(f"{key:32} {value}")
        print(f"{'machine':32} {figures['machine']}")
    print(json.dumps(figures))
    sys.stdout.flush()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure throughput and latency figures (benchmarks, not tests)",
        description="Measure CMM's figures in one run (medians after warm-up). The last line is one JSON object.",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (finishes faster)")
    parser.add_argument("--write-md", metavar="PATH", help="also write the figures as markdown (BENCHMARKS.md)")
    parser.set_defaults(func=_run)
