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
from math import exp, log1p, nan

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
    # Plain Python floats, not numpy: the vectors are 2-5 long and every numpy call costs ~1 us,
    # which made the feature update the largest part of a decision (``cmm bench``).
    _ofi: list[float] = field(init=False)
    _signed_volume: list[float] = field(init=False)
    _trade_count: list[float] = field(init=False)
    _ofi_taus: tuple[float, ...] = field(init=False)
    _trade_taus: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not (self.tick > 0 and self.lot > 0):
            raise ValueError(f"tick and lot must be positive, got tick={self.tick}, lot={self.lot}")
        self._ofi_taus = tuple(float(t) for t in self.spec.ofi_taus_s)
        self._trade_taus = tuple(float(t) for t in self.spec.trade_taus_s)
        self._ofi = [0.0] * len(self._ofi_taus)
        self._signed_volume = [0.0] * len(self._trade_taus)
        self._trade_count = [0.0] * len(self._trade_taus)
        # Top levels (best first, at most ``spec.levels``); missing levels are simply absent.
        self._bid_px: list[float] = []
        self._bid_sz: list[float] = []
        self._ask_px: list[float] = []
        self._ask_sz: list[float] = []
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

    def set_levels(self, bid_px, bid_sz, ask_px, ask_sz) -> None:
        """Top levels used by ``write`` (best-first arrays or lists per side, may be short or empty);
        reading all levels of a deep book is costly, so callers may call this only when they are
        about to ``write``, and ``on_top`` after every batch."""
        n = self.spec.levels
        self._bid_px = _head(bid_px, n)
        self._bid_sz = _head(bid_sz, n)
        self._ask_px = _head(ask_px, n)
        self._ask_sz = _head(ask_sz, n)

    def on_top(self, ts_ns: int, pb: float, qb: float, pa: float, qa: float) -> None:
        """Best bid/ask after every complete batch: drives OFI, the mid and realized volatility."""
        self._decay_ofi(ts_ns)
        ppb, pqb, ppa, pqa = self._prev_best
        if not math.isnan(ppb):
            # Cont, Kukanov & Stoikov (2014) order-flow imbalance at the touch, in lots.
            e = (qb if pb >= ppb else 0.0) - (pqb if pb <= ppb else 0.0) - (qa if pa <= ppa else 0.0) + (pqa if pa >= ppa else 0.0)
            add = e / self.lot
            self._ofi = [o + add for o in self._ofi]
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
        add = aggressor_sign * size / self.lot
        self._signed_volume = [v + add for v in self._signed_volume]
        self._trade_count = [c + 1.0 for c in self._trade_count]
        self._last_trade_ns = ts_ns

    # -- decays ------------------------------------------------------------------------------

    def _decay_ofi(self, ts_ns: int) -> None:
        if self._ofi_ns >= 0 and ts_ns > self._ofi_ns:
            a = -((ts_ns - self._ofi_ns) / NS)
            self._ofi = [o * exp(a / tau) for o, tau in zip(self._ofi, self._ofi_taus)]
        self._ofi_ns = max(ts_ns, self._ofi_ns)

    def _decay_trades(self, ts_ns: int) -> None:
        if self._trade_decay_ns >= 0 and ts_ns > self._trade_decay_ns:
            a = -((ts_ns - self._trade_decay_ns) / NS)
            factor = [exp(a / tau) for tau in self._trade_taus]
            self._signed_volume = [v * f for v, f in zip(self._signed_volume, factor)]
            self._trade_count = [c * f for c, f in zip(self._trade_count, factor)]
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
        values: list[float] = []
        append = values.append
        # Missing levels (a thin book) get a distance one tick beyond the last known level.
        for side, prices, sizes in ((1.0, self._bid_px, self._bid_sz), (-1.0, self._ask_px, self._ask_sz)):
            known = len(prices)
            prev = 0.5
            for k in range(n):
                if k < known:
                    d = (mid - prices[k]) / tick if side > 0 else (prices[k] - mid) / tick
                    s = log1p(sizes[k] / lot / scale)
                else:
                    d, s = nan, 0.0
                if d != d:
                    d = prev + 1.0
                prev = d
                append(d)
                append(s)
        pb, qb, pa, qa = self._prev_best
        total = qb + qa
        micro = (pa * qb + pb * qa) / total if total > 0 else mid
        append((pa - pb) / tick)
        append((micro - mid) / tick)
        append((qb - qa) / total if total > 0 else 0.0)
        if self._ofi_ns >= 0 and ts_ns > self._ofi_ns:
            a = -((ts_ns - self._ofi_ns) / NS)
            values += [o * exp(a / tau) for o, tau in zip(self._ofi, self._ofi_taus)]
        else:
            values += self._ofi
        if self._trade_decay_ns >= 0 and ts_ns > self._trade_decay_ns:
            a = -((ts_ns - self._trade_decay_ns) / NS)
            for v, c, tau in zip(self._signed_volume, self._trade_count, self._trade_taus):
                f = exp(a / tau)
                append(v * f)
                append(c * f)
        else:
            for v, c in zip(self._signed_volume, self._trade_count):
                append(v)
                append(c)
        dt = max(ts_ns - self._last_book_ns, 0) / NS
        append(math.sqrt(max(self._variance * exp(-dt / self.spec.vol_tau_s), 0.0)))
        since = (ts_ns - self._last_trade_ns) / NS if self._last_trade_ns >= 0 else 3600.0
        append(log1p(max(since, 0.0)))
        out[:] = values
        return out


def _head(values, n: int) -> list[float]:
    """The first ``n`` entries of a best-first level array or list, as a new list."""
    head = values[:n]
    if isinstance(head, np.ndarray):
        return head.tolist()
    return head if type(head) is list else list(head)  # a list slice is already a new list
