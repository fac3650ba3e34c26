"""The baselines' online estimators recover known parameters from simulated markets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmm_strategy.estimators import RealizedVolatility, TradeIntensity


def test_realized_volatility_recovers_the_sigma_of_a_random_walk():
    rng = np.random.default_rng(0)
    sigma, dt_s = 3.0, 0.1
    vol = RealizedVolatility(half_life_s=600.0)
    mid = 0.0
    for i in range(20_000):
        mid += rng.normal(0.0, sigma * math.sqrt(dt_s))
        vol.update(int(i * dt_s * 1e9), mid)
    assert vol.sigma == pytest.approx(sigma, rel=0.05)


def test_realized_volatility_returns_the_prior_before_one_second_of_data():
    vol = RealizedVolatility(prior_ticks_per_sqrt_s=7.0)
    vol.update(0, 100.0)
    vol.update(500_000_000, 130.0)
    assert vol.sigma == 7.0


def test_trade_intensity_recovers_a_and_kappa_of_exponential_depths():
    """Trades arrive at rate A_total with depths d ~ Exp(kappa) (ticks), so the rate reaching depth
    d is A_total exp(-kappa d): the fit must return kappa and A = A_total."""
    rng = np.random.default_rng(1)
    rate, kappa = 20.0, 0.4
    est = TradeIntensity(window_s=600.0, max_depth_ticks=15, refit_every_s=1.0)
    t = 0.0
    mid = 1000.0
    while t < 600.0:
        t += rng.exponential(1.0 / rate)
        depth = rng.exponential(1.0 / kappa)
        est.on_trade(int(t * 1e9), mid + depth * rng.choice([-1.0, 1.0]), mid)
    est.maybe_refit(int(601 * 1e9))
    assert est.fitted
    # depths are binned to whole ticks before counting, which biases A a little; kappa is unbiased
    assert est.kappa == pytest.approx(kappa, rel=0.1)
    assert est.a == pytest.approx(rate, rel=0.25)


def test_trade_intensity_keeps_its_priors_without_enough_trades():
    est = TradeIntensity(prior_a=3.0, prior_kappa=0.5)
    est.on_trade(0, 100.0, 100.0)
    est.maybe_refit(5_000_000_000)
    assert (est.a, est.kappa, est.fitted) == (3.0, 0.5, False)
