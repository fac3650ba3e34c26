"""The numeric state ``x_t`` (METHOD.md section 1), computed incrementally, numpy only.

One implementation serves both sides: training replays a catalog through it to build samples, and
``CMMStrategy`` calls it on every complete book batch, so the features a student was trained on are
exactly the features it sees live. Windows are exponential decays with time constants in seconds
(event-time exact, O(1) per event, no ring buffers), so replaying the same events gives the same
numbers to the last bit.

Owns: the feature definitions, their names and order, the spec version. Must not: touch Nautilus
objects beyond reading plain numbers, allocate on the hot path, or know about tasks or targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000


@dataclass(frozen=True)
class FeatureSpec:
    """Which features ``x_t`` holds; stored in every bundle so runtime and training agree.

    levels: book levels per side (price distance from mid in ticks, size in lots).
    ofi_taus_s: time constants of the decayed order-flow imbalance at the touch (Cont et al.).
    trade_taus_s: time constants of decayed signed trade volume (lots) and trade count.
    vol_tau_s: time constant of the realized variance of mid changes (ticks^2 per second).
    size_scale: sizes enter as log1p(size / lot / size_scale), which keeps heavy tails tame.
    """

    levels: int = 5
    ofi_taus_s: tuple[float, ...] = (0.5, 2.0, 10.0)
    trade_taus_s: tuple[float, ...] = (1.0, 5.0)
    vol_tau_s: float = 10.0
    size_scale: float = 1.0
    version: str = "x1"

    def names(self) -> list[str]:
        names: list[str] = []
        for side in ("bid", "ask"):
            for k in range(self.levels):
                names += [f"{side}_dist_{k}", f"{side}_size_{k}"]
        names += ["spread_ticks", "microprice_offset", "imbalance_l1"]
        names += [f"ofi_{tau:g}s" for tau in self.ofi_taus_s]
        for tau in self.trade_taus_s:
            names += [f"signed_volume_{tau:g}s", f"trade_count_{tau:g}s"]
        names += ["realized_vol", "log_time_since_trade"]
        return names

    @property
    def dim(self) -> int:
        return len(self.names())

    def to_dict(self) -> dict[str, object]:
        return {
            "levels": self.levels,
            "ofi_taus_s": list(self.ofi_taus_s),
            "trade_taus_s": list(self.trade_taus_s),
            "vol_tau_s": self.vol_tau_s,
            "size_scale": self.size_scale,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureSpec:
        return cls(
            levels=int(data["levels"]),  # type: ignore[arg-type]
            ofi_taus_s=tuple(float(x) for x in data["ofi_taus_s"]),  # type: ignore[union-attr]
            trade_taus_s=tuple(float(x) for x in data["trade_taus_s"]),  # type: ignore[union-attr]
            vol_tau_s=float(data["vol_tau_s"]),  # type: ignore[arg-type]
            size_scale=float(data["size_scale"]),  # type: ignore[arg-type]
            version=str(data["version"]),
        )


@dataclass
class FeatureState:
    """Incremental state behind ``x_t`` for one instrument.

    Call ``on_top`` (or ``on_book``) after every complete book batch and ``on_trade`` for every
    trade, in event order; ``set_levels`` then ``write`` fill a preallocated vector with ``x_t``.
    """

    spec: FeatureSpec
    tick: float
    lot: float
    _ofi: np.ndarray = field(init=False)
    _signed_volume: np.ndarray = field(init=False)
    _trade_count: np.ndarray = field(init=False)
    _ofi_taus: np.ndarray = field(init=False)
    _trade_taus: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not (self.tick > 0 and self.lot > 0):
            raise ValueError(f"tick and lot must be positive, got tick={self.tick}, lot={self.lot}")
        self._ofi_taus = np.asarray(self.spec.ofi_taus_s, dtype=np.float64)
        self._trade_taus = np.asarray(self.spec.trade_taus_s, dtype=np.float64)
        self._ofi = np.zeros(len(self._ofi_taus))
        self._signed_volume = np.zeros(len(self._trade_taus))
        self._trade_count = np.zeros(len(self._trade_taus))
        n = self.spec.levels
        self._bid_px = np.full(n, np.nan)
        self._bid_sz = np.zeros(n)
        self._ask_px = np.full(n, np.nan)
        self._ask_sz = np.zeros(n)
        self._variance = 0.0  # decayed sum of squared mid changes, ticks^2 per second
        self._last_book_ns = -1
        self._last_trade_ns = -1
        self._ofi_ns = -1
        self._trade_decay_ns = -1
        self._mid = math.nan
        self._prev_best = (math.nan, 0.0, math.nan, 0.0)
        self.ready = False

    # -- events ------------------------------------------------------------------------------

    def on_book(self, ts_ns: int, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray) -> None:
        """Book after a complete batch, best-first level arrays per side (may be short or empty)."""
        self.set_levels(bid_px, bid_sz, ask_px, ask_sz)
        if len(bid_px) == 0 or len(ask_px) == 0:
            self.ready = False
            return
        self.on_top(ts_ns, float(bid_px[0]), float(bid_sz[0]), float(ask_px[0]), float(ask_sz[0]))

    def set_levels(self, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray) -> None:
        """Top levels used by ``write``; reading all levels of a deep book is costly, so callers
        may call this only when they are about to ``write``, and ``on_top`` after every batch."""
        n = self.spec.levels
        nb, na = min(n, len(bid_px)), min(n, len(ask_px))
        self._bid_px[:] = np.nan
        self._ask_px[:] = np.nan
        self._bid_sz[:] = 0.0
        self._ask_sz[:] = 0.0
        self._bid_px[:nb] = bid_px[:nb]
        self._bid_sz[:nb] = bid_sz[:nb]
        self._ask_px[:na] = ask_px[:na]
        self._ask_sz[:na] = ask_sz[:na]

    def on_top(self, ts_ns: int, pb: float, qb: float, pa: float, qa: float) -> None:
        """Best bid/ask after every complete batch: drives OFI, the mid and realized volatility."""
        self._decay_ofi(ts_ns)
        ppb, pqb, ppa, pqa = self._prev_best
        if not math.isnan(ppb):
            # Cont, Kukanov & Stoikov (2014) order-flow imbalance at the touch, in lots.
            e = (qb if pb >= ppb else 0.0) - (pqb if pb <= ppb else 0.0) - (qa if pa <= ppa else 0.0) + (pqa if pa >= ppa else 0.0)
            self._ofi += e / self.lot
        self._prev_best = (pb, qb, pa, qa)
        mid = 0.5 * (pb + pa)
        if not math.isnan(self._mid) and self._last_book_ns >= 0:
            dt = max(ts_ns - self._last_book_ns, 0) / NS
            self._variance *= math.exp(-dt / self.spec.vol_tau_s)
            move = (mid - self._mid) / self.tick
            self._variance += move * move / self.spec.vol_tau_s
        self._mid = mid
        self._last_book_ns = ts_ns
        self.ready = True

    def on_trade(self, ts_ns: int, size: float, aggressor_sign: int) -> None:
        """A trade: ``aggressor_sign`` +1 buyer-initiated, -1 seller-initiated, 0 unknown."""
        self._decay_trades(ts_ns)
        self._signed_volume += aggressor_sign * size / self.lot
        self._trade_count += 1.0
        self._last_trade_ns = ts_ns

    # -- decays ------------------------------------------------------------------------------

    def _decay_ofi(self, ts_ns: int) -> None:
        if self._ofi_ns >= 0 and ts_ns > self._ofi_ns:
            self._ofi *= np.exp(-((ts_ns - self._ofi_ns) / NS) / self._ofi_taus)
        self._ofi_ns = max(ts_ns, self._ofi_ns)

    def _decay_trades(self, ts_ns: int) -> None:
        if self._trade_decay_ns >= 0 and ts_ns > self._trade_decay_ns:
            factor = np.exp(-((ts_ns - self._trade_decay_ns) / NS) / self._trade_taus)
            self._signed_volume *= factor
            self._trade_count *= factor
        self._trade_decay_ns = max(ts_ns, self._trade_decay_ns)

    # -- output ------------------------------------------------------------------------------

    @property
    def mid(self) -> float:
        return self._mid

    def write(self, ts_ns: int, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (length ``spec.dim``) with ``x_t`` as of ``ts_ns``; decays are read, not applied."""
        if not self.ready:
            out[:] = np.nan
            return out
        n, tick, lot, scale = self.spec.levels, self.tick, self.lot, self.spec.size_scale
        mid = self._mid
        i = 0
        out[i : i + 2 * n : 2] = (mid - self._bid_px) / tick
        out[i + 1 : i + 2 * n : 2] = np.log1p(self._bid_sz / lot / scale)
        i += 2 * n
        out[i : i + 2 * n : 2] = (self._ask_px - mid) / tick
        out[i + 1 : i + 2 * n : 2] = np.log1p(self._ask_sz / lot / scale)
        i += 2 * n
        # Missing levels (a thin book) get a distance one tick beyond the last known level.
        block = out[: 4 * n]
        if np.isnan(block).any():
            dists = block[0 : 4 * n : 2]
            for side in (0, 1):
                d = dists[side * n : (side + 1) * n]
                for k in range(n):
                    if math.isnan(d[k]):
                        d[k] = (d[k - 1] if k else 0.5) + 1.0
            block[0 : 4 * n : 2] = dists
        pb, qb, pa, qa = self._prev_best
        spread = (pa - pb) / tick
        total = qb + qa
        micro = (pa * qb + pb * qa) / total if total > 0 else mid
        out[i] = spread
        out[i + 1] = (micro - mid) / tick
        out[i + 2] = (qb - qa) / total if total > 0 else 0.0
        i += 3
        m = len(self._ofi_taus)
        if self._ofi_ns >= 0 and ts_ns > self._ofi_ns:
            out[i : i + m] = self._ofi * np.exp(-((ts_ns - self._ofi_ns) / NS) / self._ofi_taus)
        else:
            out[i : i + m] = self._ofi
        i += m
        k = len(self._trade_taus)
        factor = np.exp(-((ts_ns - self._trade_decay_ns) / NS) / self._trade_taus) if self._trade_decay_ns >= 0 and ts_ns > self._trade_decay_ns else 1.0
        out[i : i + 2 * k : 2] = self._signed_volume * factor
        out[i + 1 : i + 2 * k : 2] = self._trade_count * factor
        i += 2 * k
        dt = max(ts_ns - self._last_book_ns, 0) / NS
        out[i] = math.sqrt(max(self._variance * math.exp(-dt / self.spec.vol_tau_s), 0.0))
        since = (ts_ns - self._last_trade_ns) / NS if self._last_trade_ns >= 0 else 3600.0
        out[i + 1] = math.log1p(max(since, 0.0))
        return out
