"""Paper trading: the backtested strategy on live (or replayed) market data with simulated execution.

``cmm paper CONFIG`` runs a NautilusTrader TradingNode: a Binance public market-data client (or, with
``--replay CATALOG``, a client that replays a catalog on the wall clock through the same live data
path), the sandbox execution client, and the run config's strategy. See ``docs/paper.md``.
"""
