"""The one command line, ``cmm``: each package registers its own subcommands.

Imports are lazy per subcommand group so ``cmm catalog ...`` never pays for torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmm",
        description=(
            "Cooperative Market Making on NautilusTrader: L2 data catalogs, LLM teacher distillation "
            "into tiny students mixed by a Hajek-MoE, and market-making backtests."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from catalog.commands import register as register_catalog

    register_catalog(sub)
    from training.commands import register as register_training

    register_training(sub)
    from backtests.demo import register as register_demo

    register_demo(sub)
    from backtests.bench import register as register_bench

    register_bench(sub)
    from backtests.fill.commands import register as register_fill

    register_fill(sub)
    from backtests.paper.commands import register as register_paper

    register_paper(sub)
    from backtests.commands import register as register_backtests

    register_backtests(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
