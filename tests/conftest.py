"""Session-wide fixtures: built once, shared by every engine test module (they cost seconds each)."""

from __future__ import annotations

import pytest

from catalog.realdata import capture_paths, missing_reason


@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory):
    from tests.quick_bundle import build_quick_bundle

    return build_quick_bundle(tmp_path_factory.mktemp("quick_bundle"))


@pytest.fixture(scope="session")
def btc_capture():
    """The real BTCUSDT-PERP capture, parsed and validated (skips when ../shared is absent)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions

    return read_binance_ws(capture_paths("BTCUSDT-PERP.BINANCE"), IngestOptions())


@pytest.fixture(scope="session")
def real_catalog(tmp_path_factory):
    """A catalog of all four real Binance captures (skips when ../shared is absent)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions
    from catalog.ingest import write_result
    from catalog.realdata import BINANCE_CAPTURES

    folder = tmp_path_factory.mktemp("real_catalog") / "catalog"
    for instrument_id in BINANCE_CAPTURES:
        write_result(read_binance_ws(capture_paths(instrument_id), IngestOptions()), folder)
    return folder
