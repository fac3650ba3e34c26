"""``cmm backtest``, ``cmm compare`` and ``cmm sweep``."""

from __future__ import annotations

import argparse
import json
import sys


def _backtest(args: argparse.Namespace) -> int:
    from backtests.config import ConfigError
    from backtests.runner import run_backtest

    try:
        results = run_backtest(args.config, args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results["metrics"]))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from backtests.compare import run_compare

    try:
        path = run_compare(args.results, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"comparison written to {args.out}/compare.md, compare.png, compare.html")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from backtests.config import ConfigError
    from backtests.sweep import run_sweep

    try:
        result = run_sweep(args.sweep, args.out, args.ray_address, args.ray_workers, args.markdown)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if result["failed"] else 0


def register(sub: argparse._SubParsersAction) -> None:
    backtest = sub.add_parser(
        "backtest",
        help="run one backtest config through NautilusTrader's BacktestNode",
        description=(
            "Translate a YAML run config (catalog, instrument, time range, venue with fill/latency/fee models, "
            "strategy and its parameters, model bundle; see backtests/config.py) into NautilusTrader's "
            "BacktestRunConfig and run it with BacktestNode, streaming from the catalog. Writes results.json "
            "(metrics of METHOD.md section 9), record.npz and a self-contained report.html into --out. Bad configs "
            "are refused with the path of the offending key before the engine starts (exit code 2)."
        ),
    )
    backtest.add_argument("config", help="YAML run config, e.g. backtests/configs/real/btcusdt-perp.yaml")
    backtest.add_argument("--out", default=None, metavar="DIR", help="output folder (default: out/backtests/<config name>)")
    backtest.add_argument("--json", action="store_true", help="also print the metrics as one JSON line")
    backtest.set_defaults(func=_backtest)

    compare = sub.add_parser(
        "compare",
        help="table and plots across backtest runs",
        description="Compare runs (results.json files or their folders): compare.md, compare.png, compare.html in --out.",
    )
    compare.add_argument("results", nargs="+", help="results.json files or run folders")
    compare.add_argument("--out", required=True, metavar="DIR")
    compare.set_defaults(func=_compare)

    sweep = sub.add_parser(
        "sweep",
        help="a grid of backtests (configs x strategies x fill models), locally or on Ray",
        description=(
            "Run every combination of a sweep file's configs, strategies and fill models as ordinary backtests, "
            "each into its own folder under --out; finished folders are skipped (resume), a failed task is retried "
            "once and then reported in sweep.json. Without --ray-address/--ray-workers the runs are sequential in "
            "this process; --ray-workers N starts a local Ray instance with N workers; --ray-address joins an "
            "existing cluster (needs the cluster extra: pip install -e .[cluster]). Exit code 1 if any task failed."
        ),
    )
    sweep.add_argument("sweep", help="sweep YAML, e.g. backtests/configs/real-sweep.yaml")
    sweep.add_argument("--out", required=True, metavar="DIR")
    sweep.add_argument("--ray-address", default=None, help="join this Ray cluster (e.g. auto, or HOST:6379)")
    sweep.add_argument("--ray-workers", type=int, default=None, help="start a local Ray instance with this many workers")
    sweep.add_argument("--markdown", default=None, metavar="FILE", help="also write the comparison as a document (e.g. docs/results.md)")
    sweep.set_defaults(func=_sweep)
