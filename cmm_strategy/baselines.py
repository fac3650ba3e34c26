"""Classical market makers, on the same skeleton and the same ``quote`` as CMM.

Each baseline turns its formula into the three numbers ``quote`` takes (reservation shift in ticks,
full spread in ticks, no volume) and fixes the quoting knobs that would otherwise bend the formula
(``fixed_quote_params``), so the only difference from CMM is the model: same book, latency charging,
order management, risk limits and rounding.

Inventory enters the formulas in units of one order (``q = position / order_size``), prices in ticks
and time in seconds, as in the GLFT literature; sigma and the intensity ``A exp(-kappa d)`` are
estimated online from the feed (``cmm_strategy.estimators``).
"""

from __future__ import annotations

import math

from cmm_strategy.estimators import RealizedVolatility, TradeIntensity
from cmm_strategy.market_maker import MarketMaker, MarketMakerConfig


class FixedSpreadConfig(MarketMakerConfig, frozen=True):
    """Symmetric quotes ``half_spread_ticks`` around the mid, skewed by inventory (``skew``).

    Parameters
    ----------
    half_spread_ticks : float, default 1.0
        Distance of each quote from the mid [ticks] (at least one tick after rounding).
    """

    half_spread_ticks: float = 1.0


class FixedSpreadStrategy(MarketMaker):
    """The simplest honest market maker: constant spread and size, linear inventory skew."""

    def __init__(self, config: FixedSpreadConfig) -> None:
        super().__init__(config)
        self.fixed_quote_params = {
            "alpha": 0.0,
            "eta": 1.0,
            "size_fraction": 0.0,
            "min_size": config.order_size,
            "max_size": config.order_size,
        }

    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float]:
        return 0.0, 2.0 * self.config.half_spread_ticks, 0.0


class _OnlineEstimatesConfig(MarketMakerConfig, frozen=True):
    gamma: float = 0.01
    sigma_half_life_s: float = 30.0
    intensity_window_s: float = 60.0
    prior_sigma_ticks: float = 1.0
    prior_a: float = 1.0
    prior_kappa: float = 1.0


class _OnlineEstimates(MarketMaker):
    """sigma from the mid, (A, kappa) from trades relative to the mid before them."""

    def __init__(self, config: _OnlineEstimatesConfig) -> None:
        super().__init__(config)
        self.fixed_quote_params = {
            "alpha": 1.0,
            "skew": 0.0,
            "eta": 1.0,
            "size_fraction": 0.0,
            "min_size": config.order_size,
            "max_size": config.order_size,
        }

    def setup(self) -> None:
        c = self.config
        self.volatility = RealizedVolatility(c.sigma_half_life_s, c.prior_sigma_ticks)
        self.intensity = TradeIntensity(c.intensity_window_s, prior_a=c.prior_a, prior_kappa=c.prior_kappa)
        self._mid_ticks: float | None = None

    def on_book_top(self, ts: int, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
        self._mid_ticks = 0.5 * (bid + ask) / self.tick
        self.volatility.update(ts, self._mid_ticks)
        self.intensity.maybe_refit(ts)

    def on_trade(self, ts: int, price: float, size: float, sign: int) -> None:
        if self._mid_ticks is not None:
            self.intensity.on_trade(ts, price / self.tick, self._mid_ticks)


class AvellanedaStoikovConfig(_OnlineEstimatesConfig, frozen=True):
    """Avellaneda and Stoikov (2008) with a rolling horizon.

    r = mid - q gamma sigma^2 tau; full spread = gamma sigma^2 tau + (2 / gamma) ln(1 + gamma / kappa).

    Parameters
    ----------
    order_size : float, default 0.001
        Size of every order; also the inventory unit q.
    gamma : float, default 0.01
        Risk aversion [1 / (tick x order)].
    tau_s : float, default 1.0
        Rolling horizon tau [s] (the model's T - t, kept constant for a market maker that never ends).
    sigma_half_life_s, intensity_window_s, prior_sigma_ticks, prior_a, prior_kappa
        Online estimators (``cmm_strategy.estimators``); priors apply until enough data is seen.
    """

    tau_s: float = 1.0


class AvellanedaStoikovStrategy(_OnlineEstimates):
    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float]:
        c = self.config
        q = position / c.order_size
        sigma2_tau = self.volatility.sigma**2 * c.tau_s
        kappa = self.intensity.kappa
        shift = -q * c.gamma * sigma2_tau
        spread = c.gamma * sigma2_tau + (2.0 / c.gamma) * math.log1p(c.gamma / kappa)
        return shift, spread, 0.0


class GLFTConfig(_OnlineEstimatesConfig, frozen=True):
    """Gueant, Lehalle and Fernandez-Tapia (2013) closed-form approximation (Gueant 2017, order unit 1).

    c1 = (1/gamma) ln(1 + gamma/kappa); c2 = sqrt(gamma / (2 A kappa) (1 + gamma/kappa)^(kappa/gamma + 1));
    half spread = c1 + sigma c2 / 2; reservation shift = -q sigma c2.

    Parameters
    ----------
    order_size, gamma, sigma_half_life_s, intensity_window_s, prior_*
        As for ``AvellanedaStoikovConfig``; A and kappa are fitted to the trades of the last
        ``intensity_window_s`` seconds.
    """


class GLFTStrategy(_OnlineEstimates):
    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float]:
        c = self.config
        q = position / c.order_size
        sigma = self.volatility.sigma
        a, kappa, gamma = self.intensity.a, self.intensity.kappa, c.gamma
        ratio = gamma / kappa
        c1 = math.log1p(ratio) / gamma
        c2 = math.sqrt(gamma / (2.0 * a * kappa) * math.exp((kappa / gamma + 1.0) * math.log1p(ratio)))
        half = c1 + 0.5 * sigma * c2
        return -q * sigma * c2, 2.0 * half, 0.0
