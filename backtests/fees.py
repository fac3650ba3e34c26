"""Maker/taker fees as rates set in the run config, not taken from the instrument.

Venue fee tiers differ by account (a market maker's maker fee is often a rebate), so a backtest
config states its own rates; a negative maker rate is a rebate. Commission = notional x rate, in the
settlement currency (base currency for inverse instruments), as NautilusTrader's own model does.
"""

from __future__ import annotations

from nautilus_trader.backtest.config import FeeModelConfig, ImportableFeeModelConfig
from nautilus_trader.backtest.models import FeeModel
from nautilus_trader.model.enums import LiquiditySide
from nautilus_trader.model.objects import Money


class RateFeeModelConfig(FeeModelConfig, frozen=True):
    """maker, taker: fractions of notional (0.0002 = 2 bp; -0.0001 = 1 bp rebate)."""

    maker: float = 0.0
    taker: float = 0.0


class RateFeeModel(FeeModel):
    def __init__(self, config: RateFeeModelConfig | None = None) -> None:
        config = config or RateFeeModelConfig()
        self.maker = float(config.maker)
        self.taker = float(config.taker)

    def get_commission(self, order, fill_qty, fill_px, instrument) -> Money:
        notional = instrument.notional_value(quantity=fill_qty, price=fill_px, use_quote_for_inverse=False).as_double()
        if order.liquidity_side == LiquiditySide.MAKER:
            rate = self.maker
        elif order.liquidity_side == LiquiditySide.TAKER:
            rate = self.taker
        else:
            raise ValueError(f"order {order.client_order_id} has no liquidity side")
        currency = instrument.base_currency if instrument.is_inverse else instrument.quote_currency
        return Money(notional * rate, currency)


def importable_fee_model(maker: float, taker: float) -> ImportableFeeModelConfig:
    return ImportableFeeModelConfig(
        fee_model_path="backtests.fees:RateFeeModel",
        config_path="backtests.fees:RateFeeModelConfig",
        config={"maker": maker, "taker": taker},
    )
