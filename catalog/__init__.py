"""Market data into a NautilusTrader ``ParquetDataCatalog``.

One converter module per venue format (``binance_ws``, ``tardis``, ``databento``, ``lobster``), the
synthetic market generator (``synth``), validation kept apart from parsing (``validation``), and an
atomic writer (``staging``) so that a failed ingest never leaves a half-written catalog behind.
"""
