"""``CMMStrategy``: the distilled students and Hajek-MoE on NautilusTrader's L2 hot path.

Per complete book batch: ``FeatureState`` is updated by the same code that produced the training
features (parity-tested against ``training.replay``), the bundle predicts the mid move, spread and
volume at ``horizon`` (numpy only), and ``MarketMaker`` turns them into quotes, charges the decision's
measured compute time, and manages orders and risk.
"""

from __future__ import annotations

import numpy as np

from cmm_strategy.bundle import CMMBundle, load_bundle
from cmm_strategy.features import FeatureState
from cmm_strategy.market_maker import MarketMaker, MarketMakerConfig


class CMMStrategyConfig(MarketMakerConfig, frozen=True):
    """``MarketMakerConfig`` plus the model.

    Parameters
    ----------
    bundle_path : str
        Folder of a bundle written by ``cmm distill`` (verified on load: version, checksums, shapes).
    horizon : str, default "1s"
        Which horizon's predictions drive the quotes (``mid_{h}``, ``spread_{h}``, ``volume_{h}``).
    """

    bundle_path: str = ""
    horizon: str = "1s"


class CMMStrategy(MarketMaker):
    """Quotes from the bundle's predictions; mid move shifts the reservation price (``alpha``), the
    predicted spread sets the half-spread (``eta``), the predicted volume the sizes."""

    def __init__(self, config: CMMStrategyConfig) -> None:
        super().__init__(config)
        self.bundle: CMMBundle | None = None
        self.features: FeatureState | None = None
        self._x: np.ndarray | None = None

    def setup(self) -> None:
        if not self.config.bundle_path:
            raise ValueError("CMMStrategyConfig.bundle_path is required")
        self.bundle = load_bundle(self.config.bundle_path)
        self.features = FeatureState(self.bundle.spec, tick=self.tick, lot=self.lot)
        self._x = np.empty(self.bundle.spec.dim)
        self._depth = self.bundle.spec.levels
        names = self.bundle.target_names
        wanted = [f"{task}_{self.config.horizon}" for task in ("mid", "spread", "volume")]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"bundle {self.config.bundle_path} has no targets {missing} (it has {names})")
        self._cols = [names.index(n) for n in wanted]

    def on_book_top(self, ts: int, bid: float, bid_size: float, ask: float, ask_size: float) -> None:
        self.features.on_top(ts, bid, bid_size, ask, ask_size)

    def on_trade(self, ts: int, price: float, size: float, sign: int) -> None:
        if self.features is not None:
            self.features.on_trade(ts, size, sign)

    def predict(self, ts: int, bid: float, ask: float, position: float) -> tuple[float, float, float]:
        features = self.features
        features.set_levels(*self.levels.top_lists(self._depth))
        x = features.write(ts, self._x)
        prediction = self.bundle.predict(x)
        c = self._cols
        volume = float(prediction[c[2]])
        if self._inverse:
            volume = self.volume_log_in_order_units(volume, 0.5 * (bid + ask))
        return float(prediction[c[0]]), float(prediction[c[1]]), volume
