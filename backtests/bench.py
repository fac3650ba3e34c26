"""``cmm bench``: the figures CMM exists for, measured side by side in one run.

Benchmarks, not tests: each figure is a median over repeated runs after a warm-up (pyperf style),
and ratios are taken within one run because absolute times drift on shared machines. This module
grows with the project; today it measures the binance-ws ingestion.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
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


def real_states(count: int) -> tuple[np.ndarray, list[str]]:
    """``x_t`` of real BTCUSDT-PERP book states (every grid sample of the capture, repeated to ``count``)."""
    from training.samples import SampleConfig, build_samples

    with tempfile.TemporaryDirectory() as tmp:
        write_result(read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions()), Path(tmp) / "catalog")
        samples = build_samples(Path(tmp) / "catalog", "BTCUSDT-PERP.BINANCE", SampleConfig(), progress=False)
    reps = -(-count // len(samples.x))
    return np.tile(samples.x, (reps, 1))[:count], samples.feature_names


def bench_bundle(bundle_dir: Path, states: np.ndarray, repeats: int) -> dict[str, object]:
    """One CMM decision (all students + Hájek-MoE, numpy, batch of one) over real book states."""
    from cmm_strategy.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    for x in states[:500]:
        bundle.predict(x)
    runs = []
    for _ in range(repeats):
        times = np.empty(len(states))
        for i, x in enumerate(states):
            start = time.perf_counter_ns()
            bundle.predict(x)
            times[i] = time.perf_counter_ns() - start
        runs.append((np.percentile(times, 50) / 1000.0, np.percentile(times, 99) / 1000.0))
    return {
        "cmm_predict_us_p50": round(statistics.median(r[0] for r in runs), 2),
        "cmm_predict_us_p99": round(statistics.median(r[1] for r in runs), 2),
        "cmm_predict_states": len(states),
        "cmm_bundle": str(bundle_dir),
        "cmm_students": len(bundle.students),
    }


def bench_teacher(states: np.ndarray, names: list[str], count: int) -> dict[str, object]:
    """The default teacher's per-decision forward pass (batch of one) on the same kind of states."""
    from training.prompt import render_prompt
    from training.teacher.extract import measure_latency
    from training.teacher.models import load_teacher

    teacher = load_teacher(None)
    step = max(1, len(states) // count)
    prompts = [render_prompt(x, names, "BTCUSDT-PERP") for x in states[::step][:count]]
    latency = measure_latency(teacher, prompts, repeats=3, batch_size=16)
    return {
        "teacher_ms_per_decision": round(latency["ms_per_decision_batch1"], 2),
        "teacher_ms_per_sample_batched": round(latency["ms_per_sample_batched"], 2),
        "teacher_model": teacher.model_id,
        "teacher_prompt_tokens_mean": round(latency["mean_prompt_tokens"], 1),
    }


def run_bench(quick: bool, bundle_dir: Path | None = None) -> dict[str, object]:
    figures: dict[str, object] = {
        "command": "cmm bench" + (" --quick" if quick else "") + (f" --bundle {bundle_dir}" if bundle_dir else ""),
        "machine": machine(),
    }
    reason = missing_reason()
    if reason:
        figures["skipped"] = reason
        return figures
    figures.update(bench_ingest(repeats=3 if quick else 7))
    if bundle_dir is not None:
        states, names = real_states(10_000)
        figures.update(bench_bundle(bundle_dir, states, repeats=3 if quick else 5))
        figures.update(bench_teacher(states, names, count=16 if quick else 32))
        figures["speedup"] = round(figures["teacher_ms_per_decision"] * 1000.0 / figures["cmm_predict_us_p50"])  # type: ignore[operator]
    return figures


_DESCRIPTIONS = {
    "ingest_deltas_per_s": "binance-ws ingest, parse + validate + atomic catalog write (deltas/s, median)",
    "ingest_read_only_deltas_per_s": "binance-ws ingest, parse + validate only (deltas/s, median)",
    "ingest_deltas": "deltas in the file",
    "ingest_repeats": "timed repeats after one warm-up",
    "ingest_data": "data used (../shared/data/real/hftbacktest-binance/usdm/)",
    "cmm_predict_us_p50": "one CMM decision: all students + Hajek-MoE, numpy, batch of one (µs, median over states, median of runs)",
    "cmm_predict_us_p99": "same, 99th percentile (µs)",
    "cmm_predict_states": "real BTCUSDT-PERP book states (x_t on the 100 ms grid, cycled)",
    "cmm_bundle": "bundle measured",
    "cmm_students": "students in the bundle",
    "teacher_ms_per_decision": "default teacher forward pass, batch of one (ms, median)",
    "teacher_ms_per_sample_batched": "default teacher, batch of 16 (ms per sample)",
    "teacher_model": "teacher",
    "teacher_prompt_tokens_mean": "prompt length (tokens)",
    "speedup": "teacher ms per decision / CMM µs per decision (same run)",
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
    lines += [
        "",
        "## Reading these figures",
        "",
        "- `cmm_predict_*` is one decision of the model alone (all students + Hájek-MoE, numpy, batch of one) on",
        "  real book states; the strategy's full decision (feature update + model + quote) and the backtest",
        "  throughput ratio join when `CMMStrategy` lands. The single-decision path uses preallocated buffers and",
        "  fused block-diagonal matrices (`cmm_strategy/bundle.py`); what is left is about 15 numpy calls of",
        "  ~0.3-3 µs each (the two matmuls around the cosine of the random features are the largest).",
        "- `speedup` divides the teacher's batch-of-one forward pass by the CMM median, both from this run.",
        "- `ingest_*` includes building Nautilus objects and Nautilus' own order book for validation; the",
        "  write step is the catalog's Parquet serialization.",
    ]
    machine_info = figures["machine"]
    lines += ["", "## Machine", "", "```json", json.dumps(machine_info, indent=2), "```", ""]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    figures = run_bench(args.quick, Path(args.bundle) if args.bundle else None)
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
    parser.add_argument("--bundle", metavar="DIR", help="a bundle from `cmm distill`: adds CMM decision latency, teacher latency and the speedup")
    parser.set_defaults(func=_run)
