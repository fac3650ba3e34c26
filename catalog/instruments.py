"""Instrument definitions for the venues we ingest.

Binance's exchange filters (tick size, lot size, contract size) are static facts of the venue, so
they live here once, keyed by market and symbol, rather than being fetched (nothing here may use
the network). ``size_precision`` follows the data: Binance spot books carry a few aggregated level
sizes finer than the 0.00001 BTC order step, so the spot pair keeps 6 size decimals for data while
``lot_size`` holds the order step that quoting must respect.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from nautilus_trader.model.currencies import BTC, ETH, USD, USDT
from nautilus_trader.model.identifiers import InstrumentId, Symbol
from nautilus_trader.model.instruments import CryptoPerpetual, CurrencyPair, Instrument
from nautilus_trader.model.objects import Money, Price, Quantity

from catalog.errors import CatalogError


class BinanceMarket(str, Enum):
    """The three Binance markets whose raw WebSocket captures we read."""

    USDM = "usdm"  # USD-M linear perpetual futures
    SPOT = "spot"
    COINM = "coinm"  # COIN-M inverse perpetual futures (contracts of 100 USD)


@dataclass(frozen=True)
class BinanceSpec:
    """Exchange filters of one Binance symbol, as published by the venue (2024-08)."""

    market: BinanceMarket
    symbol: str
    base: str
    quote: str
    price_precision: int
    size_precision: int
    lot: str  # order quantity step (LOT_SIZE.stepSize, or 1 contract on COIN-M)
    min_notional: str | None = None
    contract_size: int = 1  # COIN-M: USD face value of one contract


_CURRENCIES = {"BTC": BTC, "ETH": ETH, "USDT": USDT, "USD": USD}

BINANCE_SPECS: dict[tuple[BinanceMarket, str], BinanceSpec] = {
    (BinanceMarket.USDM, "BTCUSDT"): BinanceSpec(BinanceMarket.USDM, "BTCUSDT", "BTC", "USDT", 1, 3, "0.001", "100"),
    (BinanceMarket.USDM, "ETHUSDT"): BinanceSpec(BinanceMarket.USDM, "ETHUSDT", "ETH", "USDT", 2, 3, "0.001", "20"),
    (BinanceMarket.SPOT, "BTCUSDT"): BinanceSpec(BinanceMarket.SPOT, "BTCUSDT", "BTC", "USDT", 2, 6, "0.00001", "5"),
    (BinanceMarket.SPOT, "ETHUSDT"): BinanceSpec(BinanceMarket.SPOT, "ETHUSDT", "ETH", "USDT", 2, 6, "0.0001", "5"),
    (BinanceMarket.COINM, "BTCUSD_PERP"): BinanceSpec(BinanceMarket.COINM, "BTCUSD_PERP", "BTC", "USD", 1, 0, "1", None, 100),
    (BinanceMarket.COINM, "ETHUSD_PERP"): BinanceSpec(BinanceMarket.COINM, "ETHUSD_PERP", "ETH", "USD", 2, 0, "1", None, 10),
}

# Binance VIP 0 fees; maker rebates are a backtest venue setting, not an instrument fact.
_FEES = {
    BinanceMarket.USDM: (Decimal("0.0002"), Decimal("0.0005")),
    BinanceMarket.COINM: (Decimal("0.0002"), Decimal("0.0005")),
    BinanceMarket.SPOT: (Decimal("0.001"), Decimal("0.001")),
}


def default_binance_instrument_id(market: BinanceMarket, symbol: str) -> InstrumentId:
    """Nautilus' own naming (its Binance adapter): ``BTCUSDT-PERP.BINANCE``, ``BTCUSDT.BINANCE``,
    ``BTCUSD-PERP.BINANCE`` for COIN-M ``BTCUSD_PERP``: an underscore in a Nautilus symbol marks a
    spread, whose fills the matching engine splits into legs (and fails on)."""
    if market is BinanceMarket.USDM:
        return InstrumentId.from_str(f"{symbol}-PERP.BINANCE")
    if market is BinanceMarket.COINM:
        return InstrumentId.from_str(f"{symbol.replace('_', '-')}.BINANCE")
    return InstrumentId.from_str(f"{symbol}.BINANCE")


def binance_instrument(
    market: BinanceMarket,
    symbol: str,
    instrument_id: InstrumentId | None = None,
    ts: int = 0,
) -> Instrument:
    """Build the Nautilus instrument for a Binance symbol; unknown symbols are refused clearly."""
    spec = BINANCE_SPECS.get((market, symbol.upper()))
    if spec is None:
        known = ", ".join(f"{m.value}:{s}" for m, s in BINANCE_SPECS)
        raise CatalogError(f"no instrument definition for Binance {market.value} symbol {symbol!r} (known: {known})")
    instrument_id = instrument_id or default_binance_instrument_id(market, spec.symbol)
    price_increment = Price(Decimal(1).scaleb(-spec.price_precision), spec.price_precision)
    size_increment = Quantity(Decimal(1).scaleb(-spec.size_precision), spec.size_precision)
    lot = Quantity.from_str(spec.lot)
    maker, taker = _FEES[market]
    base, quote = _CURRENCIES[spec.base], _CURRENCIES[spec.quote]
    common = dict(
        instrument_id=instrument_id,
        raw_symbol=Symbol(spec.symbol),
        price_precision=spec.price_precision,
        size_precision=spec.size_precision,
        price_increment=price_increment,
        size_increment=size_increment,
        lot_size=lot,
        min_quantity=lot,
        maker_fee=maker,
        taker_fee=taker,
        ts_event=ts,
        ts_init=ts,
        info={"market": market.value, "order_step": spec.lot},
    )
    if market is BinanceMarket.SPOT:
        return CurrencyPair(
            base_currency=base,
            quote_currency=quote,
            min_notional=Money(spec.min_notional, quote) if spec.min_notional else None,
            **common,
        )
    inverse = market is BinanceMarket.COINM
    return CryptoPerpetual(
        base_currency=base,
        quote_currency=quote,
        settlement_currency=base if inverse else quote,
        is_inverse=inverse,
        multiplier=Quantity.from_int(spec.contract_size),
        margin_init=Decimal("0.05"),
        margin_maint=Decimal("0.025"),
        min_notional=Money(spec.min_notional, quote) if spec.min_notional else None,
        **common,
    )


def generic_instrument(
    instrument_id: InstrumentId,
    price_precision: int,
    size_precision: int,
    ts: int = 0,
) -> Instrument:
    """A linear USDT-style perpetual for venues whose filters we do not hold (Tardis samples, synthetic).

    Precisions come from the data; the tick is one unit of the last price decimal.
    """
    symbol = instrument_id.symbol.value
    base = BTC if "BTC" in symbol or "XBT" in symbol else ETH if "ETH" in symbol else USD
    return CryptoPerpetual(
        instrument_id=instrument_id,
        raw_symbol=Symbol(symbol),
        base_currency=base,
        quote_currency=USDT if base is not USD else USD,
        settlement_currency=USDT if base is not USD else USD,
        is_inverse=False,
        price_precision=price_precision,
        size_precision=size_precision,
        price_increment=Price(Decimal(1).scaleb(-price_precision), price_precision),
        size_increment=Quantity(Decimal(1).scaleb(-size_precision), size_precision),
        margin_init=Decimal("0.05"),
        margin_maint=Decimal("0.025"),
        maker_fee=Decimal("0.0002"),
        taker_fee=Decimal("0.0005"),
        ts_event=ts,
        ts_init=ts,
    )


def order_step(instrument: Instrument) -> float:
    """The order quantity step (lot) of an instrument, as it survives a catalog round trip.

    ``lot_size`` is not persisted by the catalog (it reads back as 1), so the step is taken from
    ``info["order_step"]`` (written by us), else ``min_quantity``, else ``size_increment``.
    """
    info = instrument.info or {}
    if info.get("order_step"):
        return float(info["order_step"])
    if instrument.min_quantity is not None:
        return float(instrument.min_quantity)
    return float(instrument.size_increment)
