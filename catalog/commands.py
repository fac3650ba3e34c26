"""The ``cmm catalog`` subcommands: argument parsing and printing only; the work is elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nautilus_trader.model.identifiers import InstrumentId

from catalog.errors import CatalogError, IngestError
from catalog.formats import IngestOptions
from catalog.ingest import FORMATS, format_summary, ingest_files
from catalog.info import catalog_info, format_info
from catalog.validation import ValidationPolicy


def _instrument_id(text: str | None) -> InstrumentId | None:
    if text is None:
        return None
    try:
        return InstrumentId.from_str(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid instrument id {text!r} (expected SYMBOL.VENUE): {exc}") from exc


def _run_ingest(args: argparse.Namespace) -> int:
    options = IngestOptions(instrument_id=_instrument_id(args.instrument_id), policy=ValidationPolicy(repair=args.repair))
    try:
        summary = ingest_files(
            args.format,
            [Path(p) for p in args.paths],
            Path(args.catalog),
            options,
            overwrite=args.overwrite,
            report_path=Path(args.report) if args.report else None,
        )
    except (IngestError, CatalogError) as exc:
        print(f"cmm catalog ingest: error: {exc}", file=sys.stderr)
        print("nothing was written to the catalog", file=sys.stderr)
        return 2
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _run_info(args: argparse.Namespace) -> int:
    try:
        info = catalog_info(args.catalog)
    except CatalogError as exc:
        print(f"cmm catalog info: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info) if args.json else format_info(info))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cmm catalog ...`` to the top-level parser."""
    parser = subparsers.add_parser("catalog", help="build and inspect ParquetDataCatalogs of L2 data", description="Build and inspect NautilusTrader ParquetDataCatalogs of L2 order-book data.")
    commands = parser.add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest",
        help="ingest real exchange data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Ingest real exchange data into a catalog, validated and written atomically.\n\n"
            "formats:\n"
            "  binance-ws  raw Binance WebSocket captures (gzip '<recv_ns> <json>' lines: REST snapshot,\n"
            "              depthUpdate, trade, bookTicker); several files of one capture, in order\n"
            "  tardis      Tardis.dev CSV (incremental_book_L2, book_snapshot_N, trades)\n"
            "  databento   Databento DBN (.dbn or .dbn.zst: mbo, mbp-1, mbp-10, trades, definition)\n"
            "  lobster     LOBSTER message + orderbook CSV pair\n\n"
            "By default the first problem (sequence gap, crossed/locked book, non-monotonic timestamp,\n"
            "bad price or size, garbage line, truncated file) stops the ingest with file:line and\n"
            "nothing is written. --repair fixes what it can and writes a JSON report of every fix."
        ),
    )
    ingest.add_argument("format", choices=sorted(FORMATS), metavar="FORMAT", help=f"one of: {', '.join(FORMATS)}")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="input files, in time order")
    ingest.add_argument("--catalog", required=True, metavar="DIR", help="catalog directory (created if absent)")
    ingest.add_argument("--instrument-id", metavar="ID", help="override the instrument id (e.g. BTCUSDT-PERP.BINANCE)")
    ingest.add_argument("--json", action="store_true", help="print one JSON object: instrument_id, deltas, trades, start, end, gaps, crossed, files")
    ingest.add_argument("--repair", action="store_true", help="repair problems instead of stopping, and write a report")
    ingest.add_argument("--report", metavar="PATH", help="where to write the repair report (default: CATALOG/ingest_reports/)")
    ingest.add_argument("--overwrite", action="store_true", help="allow replacing data that overlaps data already in the catalog")
    ingest.set_defaults(func=_run_ingest)

    info = commands.add_parser("info", help="what a catalog holds", description="Instruments, row counts and time ranges per data type.")
    info.add_argument("--catalog", required=True, metavar="DIR")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_run_info)

    try:
        from catalog.synth.cli import register as register_synth
    except ImportError:  # the generator is optional at import time; its tests say if it is broken
        return
    register_synth(commands)
