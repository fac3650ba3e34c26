"""``cmm catalog info``: what a catalog holds, read from Parquet metadata without loading the data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from catalog.errors import CatalogError
from catalog.ingest import iso_ns
from catalog.staging import MARKET_DATA_DIRS


def _ts_range(files: list[Path]) -> tuple[int | None, int | None]:
    lows, highs = [], []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        names = meta.schema.names
        if "ts_init" not in names:
            continue
        column = names.index("ts_init")
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max:
                lows.append(stats.min)
                highs.append(stats.max)
    return (min(lows) if lows else None, max(highs) if highs else None)


def catalog_info(catalog_dir: str | Path) -> dict[str, object]:
    """Instruments, and per data type and instrument: row count, file count and ts_init range."""
    root = Path(catalog_dir) / "data"
    if not root.is_dir():
        raise CatalogError(f"{catalog_dir} is not a catalog (no data/ folder); create one with `cmm catalog ingest` or `cmm catalog synth`")
    instruments: list[dict[str, str]] = []
    data: list[dict[str, object]] = []
    for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for id_dir in sorted(p for p in type_dir.iterdir() if p.is_dir()):
            files = sorted(id_dir.glob("*.parquet"))
            if type_dir.name not in MARKET_DATA_DIRS:
                instruments.append({"instrument_id": id_dir.name, "type": type_dir.name})
                continue
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            start, end = _ts_range(files)
            data.append(
                {
                    "data_type": type_dir.name,
                    "instrument_id": id_dir.name,
                    "rows": rows,
                    "files": len(files),
                    "start": iso_ns(start),
                    "end": iso_ns(end),
                },
            )
    return {"catalog": str(Path(catalog_dir).resolve()), "instruments": instruments, "data": data}


def format_info(info: dict[str, object]) -> str:
    """Table for the terminal."""
    lines = [f"catalog {info['catalog']}", "instruments:"]
    for inst in info["instruments"]:  # type: ignore[union-attr]
        lines.append(f"  {inst['instrument_id']:<28} {inst['type']}")
    lines.append(f"{'data type':<20} {'instrument':<28} {'rows':>12} {'files':>6}  range (ts_init, UTC)")
    for row in info["data"]:  # type: ignore[union-attr]
        lines.append(
            f"{row['data_type']:<20} {row['instrument_id']:<28} {row['rows']:>12,} {row['files']:>6}  {row['start']} .. {row['end']}",
        )
    return "\n".join(lines)
