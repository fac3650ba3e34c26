"""``cmm catalog ingest``: run a format reader, validate, and write atomically into a catalog.

Owns the glue between readers (one module per format) and the catalog: format lookup, the
repair report, the atomic write, and the JSON summary. It must not parse any format itself.
"""

from __future__ import annotations

import importlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from catalog.errors import CatalogError
from catalog.formats import IngestOptions, IngestResult, Reader
from catalog.staging import staged_catalog

# Format name -> "module:function". Imported lazily so one broken optional reader (or a missing
# optional dependency) cannot break the others.
FORMATS: dict[str, str] = {
    "binance-ws": "catalog.binance_ws:read_binance_ws",
    "tardis": "catalog.tardis:read_tardis",
    "databento": "catalog.databento:read_databento",
    "lobster": "catalog.lobster:read_lobster",
}


def reader_for(fmt: str) -> Reader:
    """The reader function of a format, or a clear error listing the known formats."""
    target = FORMATS.get(fmt)
    if target is None:
        raise CatalogError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def iso_ns(ts: int | None) -> str | None:
    """UNIX nanoseconds -> ISO-8601 UTC with nanoseconds kept (the catalog's own resolution)."""
    if ts is None:
        return None
    seconds, nanos = divmod(int(ts), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def summarize(result: IngestResult) -> dict[str, object]:
    """The ``--json`` object: what went into the catalog, and what validation found."""
    stamps = [x.ts_init for x in (result.deltas[:1] + result.deltas[-1:] + result.trades[:1] + result.trades[-1:])]
    return {
        "instrument_id": result.instrument_id,
        "deltas": len(result.deltas),
        "trades": len(result.trades),
        "start": iso_ns(min(stamps)) if stamps else None,
        "end": iso_ns(max(stamps)) if stamps else None,
        "gaps": result.gaps,
        "crossed": result.crossed,
        "files": result.files,
    }


def write_result(result: IngestResult, catalog_dir: Path, overwrite: bool = False) -> None:
    """Write instruments, deltas and trades; all or nothing."""
    if not result.deltas and not result.trades:
        raise CatalogError(f"nothing to write from {', '.join(result.files)}: no book deltas and no trades were read")
    with staged_catalog(catalog_dir, overwrite=overwrite) as staging:
        staging.write_data(result.instruments)
        if result.deltas:
            staging.write_data(result.deltas)
        if result.trades:
            staging.write_data(result.trades)


def ingest_files(
    fmt: str,
    paths: list[Path],
    catalog_dir: Path,
    options: IngestOptions,
    overwrite: bool = False,
    report_path: Path | None = None,
) -> dict[str, object]:
    """Read, validate and write one ingest; returns the summary (plus timing and problem counts)."""
    reader = reader_for(fmt)
    started = time.perf_counter()
    result = reader([Path(p) for p in paths], options)
    read_seconds = time.perf_counter() - started
    write_result(result, Path(catalog_dir), overwrite=overwrite)
    summary = summarize(result)
    summary["problems"] = options.policy.counts()
    if options.policy.problems:
        report_path = report_path or Path(catalog_dir) / "ingest_reports" / f"{result.instrument_id}_{int(time.time())}.json"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        options.policy.write_report(report_path)
        summary["report"] = str(report_path)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["read_deltas_per_s"] = round(len(result.deltas) / read_seconds) if read_seconds > 0 else None
    return summary


def format_summary(summary: dict[str, object]) -> str:
    """A short human-readable rendering of the summary for the terminal."""
    lines = [
        f"instrument  {summary['instrument_id']}",
        f"deltas      {summary['deltas']:,}",
        f"trades      {summary['trades']:,}",
        f"range       {summary['start']} .. {summary['end']}",
        f"gaps        {summary['gaps']}   crossed {summary['crossed']}",
        f"files       {len(summary['files'])}",  # type: ignore[arg-type]
    ]
    if summary.get("report"):
        lines.append(f"repairs     {json.dumps(summary['problems'])} (report: {summary['report']})")
    return "\n".join(lines)
