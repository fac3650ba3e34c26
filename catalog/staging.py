"""Atomic writes into a ``ParquetDataCatalog``.

Everything an ingest produces is written first into a staging catalog next to the target (same
filesystem), and only moved into the target once the whole input has been read and validated. If
anything fails, the staging directory is removed and the target is untouched: no half-written
catalog is ever left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nautilus_trader.persistence.catalog import ParquetDataCatalog

from catalog.errors import CatalogError


def _relative_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


# Market data directories whose files must never overlap in time; instrument definitions may be
# rewritten freely (the same definition written twice is harmless).
MARKET_DATA_DIRS = frozenset({"order_book_delta", "order_book_depth10", "trade_tick", "quote_tick", "bar"})
_INTERVAL = re.compile(r"^(.+?)_(.+?)\.parquet$")


def _interval(name: str) -> tuple[str, str] | None:
    match = _INTERVAL.match(name)
    return (match.group(1), match.group(2)) if match else None


def _overlapping_files(target: Path, files: list[Path]) -> list[tuple[Path, Path]]:
    """(existing file, new file) pairs of market data that overlap in time for one type and instrument."""
    overlaps: list[tuple[Path, Path]] = []
    for rel in files:
        if len(rel.parts) < 4 or rel.parts[0] != "data" or rel.parts[1] not in MARKET_DATA_DIRS:
            continue
        new = _interval(rel.name)
        existing_dir = target / rel.parent
        if new is None or not existing_dir.is_dir():
            continue
        for old_file in existing_dir.glob("*.parquet"):
            old = _interval(old_file.name)
            # ISO-8601 names with fixed width compare correctly as strings.
            if old and not (new[1] < old[0] or old[1] < new[0]):
                overlaps.append((old_file, rel))
    return overlaps


@contextmanager
def staged_catalog(target: str | os.PathLike[str], overwrite: bool = False) -> Iterator[ParquetDataCatalog]:
    """Yield a catalog to write into; on a clean exit its files are moved into ``target``.

    ``overwrite=False`` refuses new market data that overlaps in time data already in the target
    (same data type and instrument), so a repeated ingest cannot silently clobber data;
    ``overwrite=True`` removes the overlapping old files first, keeping the catalog's intervals disjoint.
    """
    target_path = Path(target).resolve()
    target_path.parent.mkdir(parents=True, exist_ok=True)
    staging = target_path.parent / f".{target_path.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield ParquetDataCatalog(str(staging))
        files = _relative_files(staging)
        overlaps = _overlapping_files(target_path, files)
        if overlaps and not overwrite:
            existing, new = overlaps[0]
            raise CatalogError(
                f"{target_path} already holds {existing.relative_to(target_path)}, which overlaps the new data "
                f"{new}; ingest into a new catalog or pass --overwrite",
            )
        for existing, _ in overlaps:
            existing.unlink(missing_ok=True)
        for rel in files:
            destination = target_path / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
