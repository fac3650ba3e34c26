"""``cmm demo``: the main job on the embedded default data, from nothing to a report.

Today the pipeline is the data stage (later stages join as they land): build the synthetic
catalog from the shipped calibration, then print what the catalog holds and how the synthetic
market's stylized facts compare with the real capture's calibration targets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from catalog.info import catalog_info, format_info


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, minutes: float, seed: int) -> dict[str, object]:
    """Run every stage that exists, writing under ``out``; returns the summary also saved as JSON."""
    from backtests.cli import main as cmm_main

    out.mkdir(parents=True, exist_ok=True)
    catalog_dir = out / "catalog"
    summary: dict[str, object] = {"out": str(out.resolve()), "stages": {}}

    started = _stage(f"1/2 synthetic L2 market: {minutes:g} min, seed {seed} -> {catalog_dir}")
    if catalog_dir.exists():
        print(f"catalog already exists at {catalog_dir}; reusing it (delete it to regenerate)")
    else:
        code = cmm_main(["catalog", "synth", "--catalog", str(catalog_dir), "--minutes", str(minutes), "--seed", str(seed)])
        if code:
            raise SystemExit(code)
    summary["stages"]["synth"] = {"seconds": round(time.perf_counter() - started, 1)}  # type: ignore[index]

    started = _stage("2/2 catalog contents")
    info = catalog_info(catalog_dir)
    print(format_info(info))
    summary["stages"]["info"] = {"seconds": round(time.perf_counter() - started, 1), "catalog": info}  # type: ignore[index]

    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsummary written to {out / 'demo_summary.json'}")
    return summary


def _run(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), args.minutes, args.seed)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job end to end on the embedded synthetic market",
        description="Run the CMM pipeline end to end on the embedded synthetic market (no data or network needed).",
    )
    parser.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of synthetic market to generate (default: 10)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.set_defaults(func=_run)
