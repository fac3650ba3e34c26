"""The synthetic L2 market: a queue-reactive book around a regime-switching latent price.

Owns the generative model and its parameters, in plain numpy: given ``SynthParams``, a duration
and a seed it returns a ``Tape`` of integer book changes (ticks, lots) and trades. It must not
know about NautilusTrader objects, catalogs or real data files (``generate`` turns a tape into
Nautilus data; ``calibrate`` fits the parameters).

The model, step by step (one step = one venue batch, ~50 ms like Binance's ``depth@0ms``):

1. *Regime*: a Markov chain over volatility regimes (low / mid / high) with a mean dwell time;
   each regime has its own latent-price jump rate and market-order rate (volatility clustering).
2. *Latent price* ``F`` (ticks): self-exciting (Hawkes) compound Poisson jumps with heavy-tailed
   sizes and sign momentum (a jump continues the previous one's direction with probability
   ``jump_continue_prob``).
3. *Market orders* (trades first, against the book as last shown, so every trade hits displayed
   size): noise takers at the regime rate, side tilted towards the larger touch queue (the
   queue-reactive part: ``mo_imbalance_tilt``), plus informed takers that hit a *stale* touch
   (an ask at or below ``F``, a bid at or above ``F``). Each order sweeps the book from the touch
   and is split into maker fills.
4. *Limit orders and cancels*: per level, by distance from its side's touch, Poisson arrivals
   of limit orders and cancels whose rate grows with the queue (one cancel clock per resting
   order-sized unit); a stale touch gets no new orders and decays at ``stale_decay_rate``.
5. *Price moves*: a touch whose queue is empty moves: to the latent price's quote if it is stale
   (quotes in front of ``F`` are pulled); otherwise it is re-quoted in place (resilience) or, with
   ``noise_move_prob``, gives way to the next non-empty level and the latent price follows (a
   noise depletion then moves the price for good). The other side re-quotes at one tick from the
   new touch with a fresh queue, leaving part of its old touch behind.

Imbalance therefore predicts the next mid move for two reasons the real market shares: a
stale touch thins out before the price jumps, and a small queue is the one that empties.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

GRID = 1 << 16  # ticks held in the price arrays; re-centred when the touch nears an edge
EDGE = 4096  # re-centre when the touch is this close to an edge (must exceed MAX_GAP + depth)
MAX_GAP = 1024  # the latent price never runs further than this from the mid (ticks): the largest
# calibrated jump is a few hundred ticks, so this only bounds pathological parameter choices


@dataclass
class SynthParams:
    """Everything the generator needs; sizes in base units, rates per second, distances in ticks."""

    tick: float = 0.1
    lot: float = 0.001
    start_price: float = 60000.0
    depth_levels: int = 40  # levels simulated (and shown) on each side, from the touch
    batch_interval_min_s: float = 0.05
    batch_interval_mean_s: float = 0.0526
    # Latent price and regimes (low, mid, high volatility).
    regime_dwell_s: float = 26.0
    jump_rate: list[float] = field(default_factory=lambda: [0.25, 0.8, 3.0])
    jump_continue_prob: float = 0.7
    jump_excitation: float = 0.3  # branching ratio: expected jumps triggered by one jump
    jump_excitation_decay_s: float = 1.0
    jump_size_ticks: list[float] = field(default_factory=lambda: [1, 1, 3, 8, 13, 19, 22, 31, 40, 49, 73, 97, 289, 623])
    # Market orders.
    mo_rate: list[float] = field(default_factory=lambda: [6.0, 8.0, 25.0])  # noise takers, both sides
    mo_imbalance_tilt: float = 0.1  # P(buy) = 1/2 + tilt * touch imbalance
    informed_mo_rate: float = 20.0  # takers hitting a stale touch, per second while it is stale
    mo_size: list[float] = field(default_factory=lambda: [0.002, 0.002, 0.002, 0.005, 0.01, 0.016, 0.03, 0.05, 0.1, 0.2, 0.65, 1.5, 7.0, 49.0])
    fill_size: list[float] = field(default_factory=lambda: [0.001, 0.002, 0.002, 0.002, 0.004, 0.008, 0.016, 0.03, 0.056, 0.11, 0.26, 0.49, 1.15, 5.9])
    # Limit orders and cancels.
    limit_size: list[float] = field(default_factory=lambda: [0.002, 0.002, 0.002, 0.006, 0.024, 0.05, 0.08, 0.14, 0.16, 0.3, 0.75, 1.3, 4.1, 13.6])
    touch_size: list[float] = field(default_factory=lambda: [0.002, 0.003, 0.018, 0.13, 0.34, 0.8, 1.5, 2.7, 4.2, 6.0, 8.5, 10.5, 20.6, 132.0])
    touch_add_rate: float = 14.0
    touch_cancel_rate: float = 0.5  # per resting order-sized unit
    level_add_rate: list[float] = field(default_factory=lambda: [0.2] * 39)  # distances 1..depth-1
    level_cancel_rate: list[float] = field(default_factory=lambda: [1.0] * 39)
    stale_decay_rate: float = 4.0
    old_touch_keep: float = 0.5  # fraction of an abandoned touch left in the book
    noise_move_prob: float = 0.3  # an emptied, non-stale touch gives way (else it is re-quoted)
    stale_level_survive_prob: float = 0.3  # a quote in the latent price's way outlives the touch
    refill_delay_prob: float = 0.05  # a re-quote waits one batch (spreads wider than a tick)
    quantile_levels: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999])

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse parameters the generator cannot honour, with the reason."""
        if self.tick <= 0 or self.lot <= 0:
            raise ValueError("tick and lot must be positive")
        if not 2 <= self.depth_levels <= 500:
            raise ValueError("depth_levels must be in 2..500")
        if len(self.level_add_rate) != self.depth_levels - 1 or len(self.level_cancel_rate) != self.depth_levels - 1:
            raise ValueError("level_add_rate and level_cancel_rate need depth_levels - 1 values (distances 1..)")
        if len(self.jump_rate) != len(self.mo_rate) or not self.jump_rate:
            raise ValueError("jump_rate and mo_rate need one value per regime")
        q = len(self.quantile_levels)
        for name in ("jump_size_ticks", "mo_size", "fill_size", "limit_size", "touch_size"):
            values = getattr(self, name)
            if len(values) != q or any(b < a for a, b in zip(values, values[1:])) or values[0] <= 0:
                raise ValueError(f"{name} must hold {q} positive non-decreasing quantiles")
        rates = [*self.jump_rate, *self.mo_rate, *self.level_add_rate, *self.level_cancel_rate]
        if min(rates) < 0 or self.touch_add_rate <= 0 or self.touch_cancel_rate < 0 or self.informed_mo_rate < 0:
            raise ValueError("rates must be non-negative (touch_add_rate positive)")
        for name in ("jump_continue_prob", "old_touch_keep", "refill_delay_prob", "noise_move_prob", "stale_level_survive_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability")
        if abs(self.mo_imbalance_tilt) > 0.5:
            raise ValueError("mo_imbalance_tilt must be within [-0.5, 0.5]")
        if not 0 < self.batch_interval_min_s <= self.batch_interval_mean_s:
            raise ValueError("need 0 < batch_interval_min_s <= batch_interval_mean_s")
        if not 0 <= self.jump_excitation < 1 or self.jump_excitation_decay_s <= 0:
            raise ValueError("jump_excitation must be in [0, 1) and jump_excitation_decay_s positive")
        if self.regime_dwell_s <= 0 or self.stale_decay_rate < 0 or self.start_price <= 100 * self.tick:
            raise ValueError("regime_dwell_s must be positive and start_price well above the tick")

    @property
    def regimes(self) -> int:
        return len(self.jump_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SynthParams:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown synthetic-market parameters: {sorted(unknown)}")
        return cls(**data)


@dataclass
class Tape:
    """What the venue published, in integers: book batches and trades, in time order.

    Book changes: ``book_ts[i]`` is the batch time of change ``i``; ``book_side`` 0 bid / 1 ask;
    ``book_price`` ticks; ``book_size`` lots after the change (0 = level deleted); ``book_prev``
    lots before it. The first batch (all changes with ``book_ts == snapshot_ts``) is the snapshot.
    Trades: ``trade_side`` +1 buyer / -1 seller aggressor; ``trade_order`` numbers the market
    order a fill belongs to (fills of one order share their timestamp).
    """

    snapshot_ts: int
    book_ts: np.ndarray
    book_side: np.ndarray
    book_price: np.ndarray
    book_size: np.ndarray
    book_prev: np.ndarray
    trade_ts: np.ndarray
    trade_price: np.ndarray
    trade_size: np.ndarray
    trade_side: np.ndarray
    trade_order: np.ndarray
    steps: int
    regime_time_s: list[float]

    @property
    def batches(self) -> int:
        return int(len(np.unique(self.book_ts)))


class QuantileSampler:
    """Inverse-CDF sampling from a quantile table, log-linear between knots, rounded to units.

    Sizes are heavy-tailed and positive, so interpolating in log space keeps the body and the
    tail of the measured distribution; the extreme tail beyond the last knot is clipped (a model
    fitted on minutes of data cannot speak for it).
    """

    def __init__(self, levels: list[float], values: list[float], unit: float) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)
        self.log_values = np.log(np.asarray(values, dtype=np.float64))
        self.unit = unit

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n)
        x = np.exp(np.interp(u, self.levels, self.log_values))
        return np.maximum(np.rint(x / self.unit), 1).astype(np.int64)

    def mean_units(self) -> float:
        u = np.linspace(0.0005, 0.9995, 2000)
        return float(np.mean(np.maximum(np.rint(np.exp(np.interp(u, self.levels, self.log_values)) / self.unit), 1)))


@dataclass
class _Book:
    """Mutable state: sizes (lots) on an absolute tick grid, touches, latent price, regime."""

    bids: np.ndarray
    asks: np.ndarray
    offset: int  # absolute tick of grid index 0
    bid: int
    ask: int
    fair: float  # latent price, grid index units
    regime: int = 0
    last_jump: int = 1
    excitation: float = 0.0  # self-excited part of the jump rate, per second
    refill_pending: int = 0  # +1: bid side must re-quote, -1: ask side, 0: none
    refill_hold: bool = False  # the pending re-quote waits for the next step


class Market:
    """Runs the model; one instance per (params, seed), deterministic."""

    def __init__(self, params: SynthParams, seed: int) -> None:
        params.validate()
        self.p = params
        self.rng = np.random.default_rng(seed)
        lv = params.quantile_levels
        self.jump = QuantileSampler(lv, params.jump_size_ticks, 1.0)
        self.mo_size = QuantileSampler(lv, params.mo_size, params.lot)
        self.fill_size = QuantileSampler(lv, params.fill_size, params.lot)
        self.limit_size = QuantileSampler(lv, params.limit_size, params.lot)
        self.touch_size = QuantileSampler(lv, params.touch_size, params.lot)
        self.unit_lots = self.limit_size.mean_units()
        k = params.depth_levels
        self.add_rate = np.concatenate([[params.touch_add_rate], params.level_add_rate])
        self.cancel_rate = np.concatenate([[params.touch_cancel_rate], params.level_cancel_rate])
        self.k = k
        self.regime_time = [0.0] * params.regimes
        start = int(round(params.start_price / params.tick))
        mid_index = GRID // 2
        book = _Book(np.zeros(GRID, np.int64), np.zeros(GRID, np.int64), start - mid_index, mid_index - 1, mid_index, mid_index - 0.5)
        book.bids[book.bid] = self.touch_size(self.rng, 1)[0]
        book.asks[book.ask] = self.touch_size(self.rng, 1)[0]
        book.regime = int(self.rng.integers(params.regimes))
        self.book = book
        self.shown_bids = book.bids.copy()
        self.shown_asks = book.asks.copy()
        # Grid ranges that may hold size, per side (bid, ask): the book's window after the last
        # step, and the window of the last published batch.
        self.live_lo = [book.bid, book.ask]
        self.live_hi = [book.bid, book.ask]
        self.shown_lo = [book.bid, book.ask]
        self.shown_hi = [book.bid, book.ask]

    # -- the pieces of one step ------------------------------------------------------------

    def _regime_and_jumps(self, dt: float) -> None:
        p, b, rng = self.p, self.book, self.rng
        if p.regimes > 1 and rng.random() < -math.expm1(-dt / p.regime_dwell_s):
            b.regime = int((b.regime + rng.integers(1, p.regimes)) % p.regimes)
        # Self-excitation (a Hawkes kernel with branching ratio ``jump_excitation``): each jump
        # raises the jump rate for a while, so moves come in bursts, as they do on the venue.
        b.excitation *= math.exp(-dt / p.jump_excitation_decay_s)
        n = rng.poisson((p.jump_rate[b.regime] + b.excitation) * dt)
        if n:
            b.excitation += n * p.jump_excitation / p.jump_excitation_decay_s
            sizes = self.jump(rng, n)
            for size in sizes:
                if rng.random() >= p.jump_continue_prob:
                    b.last_jump = -b.last_jump
                b.fair += b.last_jump * float(size)
            mid = (b.bid + b.ask) / 2
            b.fair = min(max(b.fair, mid - MAX_GAP), mid + MAX_GAP)

    def _market_orders(self, t0: int, dt: float, trades: list[tuple[int, int, int, int, int]], order_no: int) -> int:
        """Draw and execute this step's market orders; returns the next order number."""
        p, b, rng = self.p, self.book, self.rng
        qb, qa = b.bids[b.bid], b.asks[b.ask]
        imbalance = (qb - qa) / max(qb + qa, 1)
        rate = p.mo_rate[b.regime] * dt
        p_buy = 0.5 + p.mo_imbalance_tilt * imbalance
        n_buy = rng.poisson(rate * p_buy + (p.informed_mo_rate * dt if b.fair >= b.ask else 0.0))
        n_sell = rng.poisson(rate * (1 - p_buy) + (p.informed_mo_rate * dt if b.fair <= b.bid else 0.0))
        n = n_buy + n_sell
        if not n:
            return order_no
        sides = np.array([1] * n_buy + [-1] * n_sell)
        rng.shuffle(sides)
        times = np.sort(rng.integers(1, int(dt * 1e9), size=n)) + t0
        sizes = self.mo_size(rng, n)
        for side, ts, size in zip(sides.tolist(), times.tolist(), sizes.tolist()):
            self._execute(side, size, ts, order_no, trades)
            order_no += 1
        return order_no

    def _execute(self, side: int, size: int, ts: int, order_no: int, trades: list[tuple[int, int, int, int, int]]) -> None:
        """Sweep displayed levels from the touch; split what each level gives into maker fills."""
        b, rng = self.book, self.rng
        levels, idx, step = (b.asks, b.ask, 1) if side > 0 else (b.bids, b.bid, -1)
        remaining = size
        for _ in range(self.k):
            available = int(levels[idx])
            if available:
                take = min(available, remaining)
                levels[idx] = available - take
                remaining -= take
                fills = self.fill_size(rng, 8)
                i = 0
                while take > 0:
                    if i == len(fills):
                        fills, i = self.fill_size(rng, 8), 0
                    f = min(int(fills[i]), take)
                    trades.append((ts, idx + b.offset, f, side, order_no))
                    take -= f
                    i += 1
                if not remaining:
                    return
            idx += step

    def _limits_and_cancels(self, dt: float) -> None:
        """Poisson limit arrivals and queue-proportional cancels on both sides, vectorised."""
        b, rng, k = self.book, self.rng, self.k
        for bid_side in (True, False):
            if bid_side:
                view = b.bids[b.bid - k + 1 : b.bid + 1][::-1]
                stale = b.fair <= b.bid
            else:
                view = b.asks[b.ask : b.ask + k]
                stale = b.fair >= b.ask
            add = self.add_rate * dt
            if stale:
                add = add.copy()
                add[0] = 0.0
            n_add = rng.poisson(add)
            total = int(n_add.sum())
            if total:
                np.add.at(view, np.repeat(np.arange(k), n_add), self.limit_size(rng, total))
            resting = view > 0
            units = np.where(resting, np.maximum(view / self.unit_lots, 1.0), 0.0)
            n_cancel = rng.poisson(self.cancel_rate * units * dt)
            total = int(n_cancel.sum())
            if total:
                removed = np.zeros(k, np.int64)
                np.add.at(removed, np.repeat(np.arange(k), n_cancel), self.limit_size(rng, total))
                np.maximum(view - removed, 0, out=view)
            if stale and view[0]:
                view[0] = rng.binomial(int(view[0]), math.exp(-self.p.stale_decay_rate * dt))

    def _settle(self) -> None:
        """Move emptied touches; re-quote the other side at one tick. Keeps bid < ask.

        An empty touch in front of the latent price (stale) moves to the latent price's quote:
        the quotes in between were pulled. An empty touch that is not stale is re-quoted at the
        same price (resilience) unless, with ``noise_move_prob``, the price gives way to the next
        level and the latent price follows.
        """
        b, p, rng, k = self.book, self.p, self.rng, self.k
        for side in (1, -1):
            levels = b.asks if side > 0 else b.bids
            touch = b.ask if side > 0 else b.bid
            if levels[touch]:
                continue
            if (b.fair >= b.ask) if side > 0 else (b.fair <= b.bid):
                # Quotes between here and the latent price's quote are pulled, each surviving
                # (to be swept or pulled in a later batch) with ``stale_level_survive_prob``.
                target = int(math.floor(b.fair)) + 1 if side > 0 else int(math.ceil(b.fair)) - 1
                span = abs(target - touch) - 1
                if span > 0 and p.stale_level_survive_prob > 0:
                    between = levels[touch + 1 : target] if side > 0 else levels[target + 1 : touch][::-1]
                    survivors = np.flatnonzero((between > 0) & (rng.random(span) < p.stale_level_survive_prob))
                    if len(survivors):
                        target = touch + side * (1 + int(survivors[0]))
            elif rng.random() >= p.noise_move_prob:
                levels[touch] = self.touch_size(rng, 1)[0]
                continue
            else:
                behind = levels[touch + 1 : touch + k] if side > 0 else levels[touch - k + 1 : touch][::-1]
                nz = np.flatnonzero(behind)
                target = touch + side * (1 + int(nz[0]) if len(nz) else 1)
                b.fair += target - touch
            if side > 0:
                levels[touch:target] = 0
                b.ask = target
            else:
                levels[target + 1 : touch + 1] = 0
                b.bid = target
            if not levels[target] or not ((b.fair >= b.ask) if side > 0 else (b.fair <= b.bid)):
                levels[target] += self.touch_size(rng, 1)[0]
            b.refill_pending = side
            b.refill_hold = rng.random() < p.refill_delay_prob
        if b.ask - b.bid <= 1:
            b.refill_pending = 0
        elif b.refill_pending and not b.refill_hold:
            if b.refill_pending > 0:  # the ask moved away: bids re-quote one tick below it
                b.bids[b.bid] = rng.binomial(int(b.bids[b.bid]), p.old_touch_keep)
                b.bid = b.ask - 1
                b.bids[b.bid] += self.touch_size(rng, 1)[0]
            else:
                b.asks[b.ask] = rng.binomial(int(b.asks[b.ask]), p.old_touch_keep)
                b.ask = b.bid + 1
                b.asks[b.ask] += self.touch_size(rng, 1)[0]
            b.refill_pending = 0
        # An old touch thinned to nothing by the re-quote leaves the touch where it is; a touch
        # is never empty after settling, so the best price is always the tracked one.
        if b.bids[b.bid] == 0:
            b.bids[b.bid] = self.touch_size(rng, 1)[0]
        if b.asks[b.ask] == 0:
            b.asks[b.ask] = self.touch_size(rng, 1)[0]
        assert b.bid < b.ask, "book crossed"

    def _recentre(self) -> None:
        b = self.book
        if EDGE < b.bid and b.ask < GRID - EDGE:
            return
        shift = (b.bid + b.ask) // 2 - GRID // 2
        for name in ("bids", "asks", "shown_bids", "shown_asks"):
            holder = b if name in ("bids", "asks") else self
            old = getattr(holder, name)
            new = np.zeros_like(old)
            if shift > 0:
                new[: GRID - shift] = old[shift:]
            else:
                new[-shift:] = old[: GRID + shift]
            setattr(holder, name, new)
        b.offset += shift
        b.bid -= shift
        b.ask -= shift
        b.fair -= shift
        self.shown_lo = [x - shift for x in self.shown_lo]
        self.shown_hi = [x - shift for x in self.shown_hi]
        self.live_lo = [x - shift for x in self.live_lo]
        self.live_hi = [x - shift for x in self.live_hi]

    def _truncate(self) -> None:
        """Cut the book to ``depth_levels`` from each touch: levels left further behind are gone."""
        b, k = self.book, self.k
        lo = b.bid - k + 1
        b.bids[min(lo, self.live_lo[0]) : lo] = 0
        hi = b.ask + k - 1
        b.asks[hi + 1 : max(hi, self.live_hi[1]) + 1] = 0
        self.live_lo = [lo, b.ask]
        self.live_hi = [b.bid, hi]

    def _publish(self, ts: int, forced: set[tuple[int, int]], out: list[tuple[int, int, int, int, int]]) -> None:
        """Append every level that differs from the last batch (and every traded level)."""
        b = self.book
        for side, levels, shown in ((0, b.bids, self.shown_bids), (1, b.asks, self.shown_asks)):
            start = min(self.live_lo[side], self.shown_lo[side])
            stop = max(self.live_hi[side], self.shown_hi[side]) + 1
            changed = set((start + np.flatnonzero(levels[start:stop] != shown[start:stop])).tolist())
            changed.update(i for s, i in forced if s == side)
            for i in sorted(changed):
                out.append((ts, side, i + b.offset, int(levels[i]), int(shown[i])))
            shown[start:stop] = levels[start:stop]
            self.shown_lo[side], self.shown_hi[side] = self.live_lo[side], self.live_hi[side]

    # -- driving ---------------------------------------------------------------------------

    def _interval(self) -> float:
        p = self.p
        extra = p.batch_interval_mean_s - p.batch_interval_min_s
        return p.batch_interval_min_s + (self.rng.exponential(extra) if extra > 0 else 0.0)

    def step(self, t0: int, dt: float, trades: list, order_no: int) -> int:
        self.book.refill_hold = False
        self._regime_and_jumps(dt)
        order_no = self._market_orders(t0, dt, trades, order_no)
        self._settle()
        self._limits_and_cancels(dt)
        self._settle()
        self._truncate()
        self._recentre()
        self.regime_time[self.book.regime] += dt
        return order_no

    def run(self, seconds: float, start_ns: int, burn_in_s: float = 30.0, progress: Callable[[float], None] | None = None) -> Tape:
        """Burn in (unrecorded), publish a snapshot at ``start_ns``, then ``seconds`` of market."""
        scratch: list = []
        t = 0.0
        while t < burn_in_s:
            dt = self._interval()
            self.step(0, dt, scratch, 0)
            t += dt
        self.regime_time = [0.0] * self.p.regimes
        b = self.book
        book: list[tuple[int, int, int, int, int]] = []
        for side, levels in ((0, b.bids), (1, b.asks)):
            for i in np.flatnonzero(levels).tolist():
                book.append((start_ns, side, i + b.offset, int(levels[i]), 0))
        self.shown_bids[:] = b.bids
        self.shown_asks[:] = b.asks
        self.shown_lo = list(self.live_lo)
        self.shown_hi = list(self.live_hi)
        trades: list[tuple[int, int, int, int, int]] = []
        end_ns = start_ns + int(seconds * 1e9)
        ts, steps, order_no = start_ns, 0, 0
        while True:
            dt = self._interval()
            nxt = ts + int(dt * 1e9)
            if nxt > end_ns:
                break
            first_trade = len(trades)
            order_no = self.step(ts, dt, trades, order_no)
            forced = {(0 if side < 0 else 1, price - b.offset) for _, price, _, side, _ in trades[first_trade:]}
            self._publish(nxt, forced, book)
            ts = nxt
            steps += 1
            if progress is not None:
                progress((ts - start_ns) / 1e9)
        return _tape(start_ns, book, trades, steps, self.regime_time)


def _tape(snapshot_ts: int, book: list, trades: list, steps: int, regime_time: list[float]) -> Tape:
    bk = np.asarray(book, dtype=np.int64).reshape(-1, 5)
    tr = np.asarray(trades, dtype=np.int64).reshape(-1, 5)
    return Tape(
        snapshot_ts=snapshot_ts,
        book_ts=bk[:, 0],
        book_side=bk[:, 1],
        book_price=bk[:, 2],
        book_size=bk[:, 3],
        book_prev=bk[:, 4],
        trade_ts=tr[:, 0],
        trade_price=tr[:, 1],
        trade_size=tr[:, 2],
        trade_side=tr[:, 3],
        trade_order=tr[:, 4],
        steps=steps,
        regime_time_s=list(regime_time),
    )


def simulate(params: SynthParams, seconds: float, seed: int, start_ns: int, progress: Callable[[float], None] | None = None) -> Tape:
    """Deterministic for (params, seconds, seed, start_ns)."""
    return Market(params, seed).run(seconds, start_ns, progress=progress)
