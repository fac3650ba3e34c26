"""The ``synth`` and ``calibrate`` subcommands, registered on a parent argparse ``subparsers``.

Owns argument parsing and the user-facing messages only: generation is ``generate``, fitting is
``calibrate``. It must not hold model or statistics logic. Each subcommand sets ``func``, a callable
taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from catalog.errors import CatalogError, IngestError

DEFAULT_MINUTES = 10.0
DEFAULT_SEED = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` and ``calibrate`` to ``subparsers``."""
    from catalog.synth.generate import DEFAULT_INSTRUMENT_ID, DEFAULT_PARAMS_PATH

    synth = subparsers.add_parser(
        "synth",
        help="generate a synthetic L2 market (deltas + trades) into a ParquetDataCatalog",
        description="Simulate the calibrated queue-reactive market and write it atomically into a catalog.",
    )
    synth.add_argument("--catalog", required=True, type=Path, help="catalog directory (created if missing)")
    synth.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help=f"simulated minutes (default {DEFAULT_MINUTES:g})")
    synth.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed; same seed, same data (default {DEFAULT_SEED})")
    synth.add_argument("--instrument-id", default=DEFAULT_INSTRUMENT_ID, help=f"instrument id (default {DEFAULT_INSTRUMENT_ID})")
    synth.add_argument("--params", type=Path, default=None, help=f"calibration JSON (default the shipped {DEFAULT_PARAMS_PATH.name})")
    synth.add_argument("--overwrite", action="store_true", help="replace data already in the catalog for the same span")
    synth.add_argument("--json", action="store_true", help="print the summary as JSON")
    synth.set_defaults(func=run_synth)

    calibrate = subparsers.add_parser(
        "calibrate",
        help="fit the synthetic market's parameters to a real Binance capture",
        description="Measure the stylized facts of real Binance WebSocket captures and fit the synthetic market to them.",
    )
    calibrate.add_argument("paths", nargs="+", type=Path, help="Binance WebSocket capture files (.gz), in order")
    calibrate.add_argument("--out", required=True, type=Path, help="calibration JSON to write")
    calibrate.add_argument("--iterations", type=int, default=10, help="simulated-moment refinement steps (default 10)")
    calibrate.add_argument("--sim-minutes", type=float, default=30.0, help="minutes simulated per step (default 30)")
    calibrate.add_argument("--json", action="store_true", help="print the fitted statistics as JSON")
    calibrate.set_defaults(func=run_calibrate)


def run_synth(args: argparse.Namespace) -> int:
    from catalog.synth.generate import generate, load_params, write_result

    try:
        params = load_params(args.params)
        result = generate(params, args.minutes, args.seed, args.instrument_id, progress=not args.json)
        write_result(result, args.catalog, overwrite=args.overwrite)
    except (CatalogError, ValueError, OSError, KeyError) as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 1
    summary = {"catalog": str(args.catalog), **result.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"wrote {summary['deltas']:,} deltas in {summary['batches']:,} batches and {summary['trades']:,} trades "
            f"({summary['minutes']:g} min of {summary['instrument_id']}, seed {summary['seed']}) to {args.catalog} "
            f"in {summary['elapsed_s']} s",
        )
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions
    from catalog.synth.calibrate import CALIBRATION_SEED, calibration_payload, dumps, fit
    from catalog.synth.stats import market_stats

    started = time.perf_counter()
    try:
        result = read_binance_ws(list(args.paths), IngestOptions())
        real = market_stats(result.deltas, result.trades)
        bar = tqdm(total=args.iterations, desc="calibrating", unit="step", disable=args.json or args.iterations == 0)
        params, sim = fit(real, args.iterations, args.sim_minutes, CALIBRATION_SEED, progress=lambda i, s: bar.update(1 if i else 0))
        bar.update(bar.total - bar.n)
        bar.close()
        payload = calibration_payload(real, params, sim, list(args.paths), result.instrument_id, args.iterations, args.sim_minutes, CALIBRATION_SEED)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dumps(payload))
    except (IngestError, CatalogError, ValueError, OSError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"out": str(args.out), "targets": payload["targets"], "fitted": payload["fitted"]}))
    else:
        width = max(len(k) for k in payload["targets"])
        print(f"{'statistic':<{width}}  {'real':>10}  {'synthetic':>10}")
        for key, target in payload["targets"].items():
            print(f"{key:<{width}}  {target:>10.4g}  {payload['fitted'][key]:>10.4g}")
        print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
