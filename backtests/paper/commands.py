"""``cmm paper``: run a paper trading session from a backtest run config.

Heavy imports (NautilusTrader's live stack, the strategy) happen only when the command runs, so
``cmm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Paper trading: the run config's strategy (same YAML as the backtests) on live market data with
simulated execution, inside a NautilusTrader TradingNode.

  live    cmm paper CONFIG                  Binance public streams (USD-M, COIN-M or spot, from the
                                            instrument id); needs the internet, no API key.
  replay  cmm paper CONFIG --replay CATALOG [--speed X]
                                            replays a catalog on the wall clock (X times faster)
                                            through the live data path; for offline machines and tests.

Orders go to NautilusTrader's sandbox, which fills them against the L2 book the node receives.
Stop with Ctrl-C (SIGINT) or SIGTERM: orders are cancelled, the position is flattened and
OUT/report.json is written (PnL marked to mid, fills, MAP, decision latency). While running, a
health line is logged every paper.health_interval_s seconds and appended to OUT/health.jsonl.
With --record DIR the book deltas and trades received are written to a catalog in DIR.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paper",
        help="paper trading on live (or replayed) market data with simulated execution",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="run config YAML (the backtests' schema; paper settings in its paper: block)")
    parser.add_argument("--replay", metavar="CATALOG", help="replay this ParquetDataCatalog instead of connecting to the exchange")
    parser.add_argument("--speed", type=float, metavar="X", help="replay speed: market seconds per wall second (default: paper.speed or 1)")
    parser.add_argument("--record", metavar="DIR", help="write the received book deltas and trades into a catalog in DIR")
    parser.add_argument("--out", metavar="DIR", help="where report.json, health.jsonl and the log go (default: out/paper/<config name>)")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S wall seconds (default: paper.duration_s, else run until stopped)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="NautilusTrader log level (default INFO)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from backtests.config import ConfigError, load_run_config
    from backtests.paper.node import PaperOptions, build_session, run_session

    try:
        if args.speed is not None and args.replay is None:
            raise ConfigError("--speed: only with --replay (a live feed runs at market speed)")
        if args.replay is not None and not Path(args.replay).is_dir():
            raise ConfigError(f"--replay: no catalog folder at {args.replay}")
        if args.duration is not None and not args.duration > 0:
            raise ConfigError(f"--duration: must be positive, got {args.duration}")
        spec = load_run_config(args.config)
        options = PaperOptions(
            out=Path(args.out) if args.out else Path("out") / "paper" / spec.name,
            replay=Path(args.replay).resolve() if args.replay else None,
            speed=args.speed,
            duration_s=args.duration,
            record=Path(args.record).resolve() if args.record else None,
            log_level=args.log_level,
        )
        session = build_session(spec, options)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_session(session)
    print(json.dumps(report))
    return 0 if report["stop_reason"] != "start-up failed" else 1
