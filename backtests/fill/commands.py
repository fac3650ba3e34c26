"""``cmm fill-validate``: score the queue fill models against exact L3 queues and write the table."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

DOC_BEGIN = "<!-- fill-validate:begin -->"
DOC_END = "<!-- fill-validate:end -->"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fill-validate",
        help="score the L2 queue fill models against exact CME ES L3 (MBO) queues",
        description=(
            "Replay the CME ES MBO sample (shared real data) as L2, drop synthetic 1-lot passive orders at "
            "the back of the best price levels every --every seconds, and compare each queue model's fill "
            "count and fill times with the exact FIFO answer from the order-by-order data. Writes the "
            "table between the markers in --out (created if missing), or prints JSON with --json."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/fill-model.md"),
        help="markdown file to update",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the scores as JSON instead of writing --out",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=15.0,
        help="seconds between placements (default 15)",
    )
    parser.add_argument(
        "--horizon",
        type=float,
        default=600.0,
        help="seconds each order is watched (default 600)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=2,
        help="price levels per side to place at (default 2)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from backtests.fill.l3_validation import ES_MBO, format_table, run_validation
    from catalog.realdata import missing_reason, real_data_dir

    if missing_reason():
        print(missing_reason(), file=sys.stderr)
        return 2
    result = run_validation(
        real_data_dir() / ES_MBO,
        every_s=args.every,
        horizon_s=args.horizon,
        depth=args.depth,
    )
    if args.json:
        print(json.dumps({"closest": result.closest(), **asdict(result)}, indent=2))
        return 0
    command = f"cmm fill-validate --every {args.every:g} --horizon {args.horizon:g} --depth {args.depth}"
    block = "\n".join(
        [
            DOC_BEGIN,
            f"Source: `{result.source}`; command: `{command}`. Closest to exact: **{result.closest()}**.",
            "",
            format_table(result),
            DOC_END,
        ]
    )
    text = (
        args.out.read_text()
        if args.out.exists()
        else f"# Fill model\n\n{DOC_BEGIN}\n{DOC_END}\n"
    )
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(format_table(result))
    print(f"written to {args.out}")
    return 0
