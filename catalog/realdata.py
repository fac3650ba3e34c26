"""Where the real exchange data lives: ``../shared/data/real`` next to the repository.

Real data is never copied into the repository (licence); tests and benchmarks read it in place and
skip with a clear reason when it is absent. ``CMM_REAL_DATA`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

BINANCE_CAPTURES: dict[str, list[str]] = {
    "BTCUSDT-PERP.BINANCE": ["hftbacktest-binance/usdm/btcusdt_20240808.gz"],
    "ETHUSDT-PERP.BINANCE": ["hftbacktest-binance/usdm/ethusdt_20240808.gz"],
    "BTCUSDT.BINANCE": ["hftbacktest-binance/spot/btcusdt_20240808.gz", "hftbacktest-binance/spot/btcusdt_20240809.gz"],
    "BTCUSD-PERP.BINANCE": ["hftbacktest-binance/cm/btcusd_perp_20240808.gz", "hftbacktest-binance/cm/btcusd_perp_20240809.gz"],
}


def real_data_dir() -> Path:
    """The real-data folder (it may not exist: callers check ``.is_dir()``)."""
    override = os.environ.get("CMM_REAL_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data" / "real"


def missing_reason() -> str | None:
    """Why real-data work cannot run here, or None when the data is present."""
    root = real_data_dir()
    if root.is_dir():
        return None
    return f"real data not found at {root} (the shared/ folder beside the repo, or CMM_REAL_DATA): real-data tests are skipped"


def capture_paths(instrument_id: str) -> list[Path]:
    """The capture files of one of the four Binance instruments, in order."""
    return [real_data_dir() / rel for rel in BINANCE_CAPTURES[instrument_id]]
