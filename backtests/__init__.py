"""Backtest configs, runner, metrics, reports, benchmarks, and the ``cmm`` command line."""
