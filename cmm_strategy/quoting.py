"""Pure quoting math of every CMM market-making strategy (METHOD.md section 7).

``quote`` turns one book state, the students' predictions and the current inventory into the bid and
ask ladders to rest. It is the only place where prices and sizes are decided, so the safety
invariants (bid < ask, tick grid, post-only never crosses, |q| never past q_max, more inventory never
raises quotes, lot-multiple sizes in [min, max], unusable inputs cancel everything) are property-tested
on this function alone (``tests/test_quoting_properties.py``).

Owns: reservation price, half-spread, tick/lot rounding, inventory caps, post-only adjustment, ladder.
Must not: touch Nautilus objects, keep state between calls, do I/O or logging, or allocate arrays. It
runs on every book update, so it works in plain Python ints/floats: prices are integer numbers of
ticks and sizes integer numbers of lots internally, which keeps the grid invariants exact; callers
build exact Nautilus ``Price``/``Quantity`` from ``price_ticks``/``size_lots``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

# Snapping tolerance for float -> integer tick/lot conversion: a value that is nominally on the grid
# (k * tick up to float noise) must land on k, not k - 1 or k + 1. Absolute part for small counts,
# relative part because e.g. 100000.01 / 0.01 carries ~1e-9 ticks of error.
_EPS_ABS = 1e-9
_EPS_REL = 1e-12
# math.expm1 raises OverflowError above ~709.78; anything that large means "huge volume".
_EXPM1_MAX = 709.0

BUY = "BUY"
SELL = "SELL"


@dataclass(frozen=True)
class QuoteParams:
    """Strategy knobs of the quoting rule; validated once so ``quote`` needs no checks on them.

    alpha: weight of the predicted mid move (predictions are in ticks; ``alpha * pred * tick`` is a
        price shift). Any finite sign.
    skew: inventory skew as a fraction of the half-spread ``h`` at |q| = q_max (>= 0; >= 0 is what
        makes "more inventory never raises quotes" hold).
    eta: half-spread multiplier of the predicted spread in ticks, ``h = max(tick, eta*spread*tick/2)``
        (>= 0).
    q_max: hard limit on |position|, base units (> 0).
    min_size: smallest order size, base units (>= 0); a side that cannot quote this much is absent.
    max_size: largest order size per order, base units (> 0, >= min_size).
    size_fraction: share of the predicted traded volume (base units over the horizon) quoted per order
        (>= 0).
    levels: ladder levels per side (int >= 1).
    level_spacing_ticks: distance between ladder levels, ticks (int >= 1).
    post_only: when True, quotes are moved so that they can never take liquidity.
    """

    alpha: float
    skew: float
    eta: float
    q_max: float
    min_size: float
    max_size: float
    size_fraction: float
    levels: int = 1
    level_spacing_ticks: int = 1
    post_only: bool = True

    def __post_init__(self) -> None:
        for name in ("alpha", "skew", "eta", "q_max", "min_size", "max_size", "size_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"QuoteParams.{name} must be a finite number, got {value!r}")
        if self.skew < 0:
            raise ValueError(f"QuoteParams.skew must be >= 0 (else more inventory raises quotes), got {self.skew}")
        if self.eta < 0:
            raise ValueError(f"QuoteParams.eta must be >= 0, got {self.eta}")
        if self.q_max <= 0:
            raise ValueError(f"QuoteParams.q_max must be > 0, got {self.q_max}")
        if self.min_size < 0:
            raise ValueError(f"QuoteParams.min_size must be >= 0, got {self.min_size}")
        if self.max_size <= 0:
            raise ValueError(f"QuoteParams.max_size must be > 0, got {self.max_size}")
        if self.max_size < self.min_size:
            raise ValueError(f"QuoteParams.max_size ({self.max_size}) must be >= min_size ({self.min_size})")
        if self.size_fraction < 0:
            raise ValueError(f"QuoteParams.size_fraction must be >= 0, got {self.size_fraction}")
        for name in ("levels", "level_spacing_ticks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QuoteParams.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.post_only, bool):
            raise ValueError(f"QuoteParams.post_only must be a bool, got {self.post_only!r}")


@dataclass(frozen=True, slots=True)
class Quote:
    """One order to rest. ``price`` is ``price_ticks`` ticks and ``size`` is ``size_lots`` lots, as the
    nearest floats to the exact decimals; use the integers for exact Nautilus Price/Quantity."""

    side: str
    price: float
    size: float
    price_ticks: int
    size_lots: int


@dataclass(frozen=True, slots=True)
class Quotes:
    """The full desired state of one instrument: bids best-first, asks best-first.

    cancel_all: the inputs were unusable (NaN/inf, crossed book, bad tick/lot): rest nothing.
    reason: why a side is short or empty ("ok" when both sides are fully quoted).
    """

    bids: tuple[Quote, ...]
    asks: tuple[Quote, ...]
    cancel_all: bool
    reason: str


_GRIDS: dict[float, tuple[int, int]] = {}


def _grid(step: float) -> tuple[int, int]:
    """``step`` as an exact fraction ``units / scale`` with scale a power of ten (0.25 -> (25, 100)),
    cached: it is needed every quote. ``n * units / scale`` is then the correctly rounded float of
    n steps (int / int true division is correctly rounded), i.e. ``float("100000.02")``, not
    ``10000002 * 0.01 == 100000.02000000001``."""
    g = _GRIDS.get(step)
    if g is None:
        exponent = int(Decimal(repr(step)).normalize().as_tuple().exponent)
        scale = 10 ** max(0, -exponent)
        g = (int(round(step * scale)), scale)
        _GRIDS[step] = g
    return g


def _cancel(reason: str) -> Quotes:
    return Quotes((), (), True, reason)


def _input_problem(
    mid: float, best_bid: float, best_ask: float, tick: float, lot: float,
    pred_mid_ticks: float, pred_spread_ticks: float, pred_volume_log: float, inventory: float,
) -> str | None:
    """Why the inputs cannot be quoted on, or None. Written so that NaN fails every comparison."""
    isfinite = math.isfinite
    if not (isfinite(pred_mid_ticks) and isfinite(pred_spread_ticks) and isfinite(pred_volume_log)):
        return "non-finite prediction"
    if not (isfinite(mid) and isfinite(best_bid) and isfinite(best_ask)):
        return "non-finite mid or book"
    if not isfinite(inventory):
        return "non-finite inventory"
    if not (tick > 0 and lot > 0 and isfinite(tick) and isfinite(lot)):
        return "tick and lot must be positive and finite"
    if not best_bid < best_ask:
        return "crossed or locked input book"
    return None


def _base_lots(pred_volume_log: float, lot: float, eps: float, p: QuoteParams) -> int:
    """Per-order size in lots: size_fraction * expm1(volume_log), clipped to [min, max], rounded down."""
    if p.size_fraction > 0:
        volume = math.expm1(pred_volume_log) if pred_volume_log < _EXPM1_MAX else math.inf
        size = p.size_fraction * volume
    else:
        size = 0.0
    size = min(max(size, p.min_size), p.max_size)
    return math.floor(size / lot + eps)


def _ladder(
    side: str, top_ticks: int, step_ticks: int, base_lots: int, min_lots: int, cap_lots: int,
    tick: float, lot: float, levels: int,
) -> tuple[Quote, ...]:
    """Levels from ``top_ticks`` outward by ``step_ticks`` (signed), each of ``base_lots`` cut so the
    side's total stays within ``cap_lots``; stops at the first level below ``min_lots`` or price <= 0."""
    px_units, px_scale = _grid(tick)
    sz_units, sz_scale = _grid(lot)
    out: list[Quote] = []
    remaining = cap_lots
    ticks = top_ticks
    for _ in range(levels):
        lots = base_lots if base_lots < remaining else remaining
        if lots < min_lots or ticks < 1:
            break
        out.append(Quote(side, ticks * px_units / px_scale, lots * sz_units / sz_scale, ticks, lots))
        remaining -= lots
        ticks += step_ticks
    return tuple(out)


def quote(
    mid: float,
    best_bid: float,
    best_ask: float,
    tick: float,
    lot: float,
    pred_mid_ticks: float,
    pred_spread_ticks: float,
    pred_volume_log: float,
    inventory: float,
    params: QuoteParams,
) -> Quotes:
    """Desired quotes for one book state (METHOD.md section 7).

    mid, best_bid, best_ask: prices; tick, lot: instrument increments; pred_mid_ticks: predicted mid
    move (ticks); pred_spread_ticks: predicted mean spread (ticks); pred_volume_log: predicted
    log(1 + traded base quantity); inventory: signed position (base units).

    r = mid + alpha*pred_mid*tick - skew*(q/q_max)*h, h = max(tick, eta*pred_spread*tick/2);
    bid = floor(r - h), ask = ceil(r + h) on the tick grid, then (post-only) bid <= best_ask - tick and
    ask >= best_bid + tick. Bids may buy at most q_max - q in total, asks sell at most q_max + q.
    """
    problem = _input_problem(
        mid, best_bid, best_ask, tick, lot, pred_mid_ticks, pred_spread_ticks, pred_volume_log, inventory
    )
    if problem is not None:
        return _cancel(problem)
    p = params

    # Prices, in ticks. One eps per call keeps rounding monotone in inventory.
    m = mid / tick
    eps_px = _EPS_ABS + _EPS_REL * abs(m)
    bb = math.floor(best_bid / tick + eps_px)
    ba = math.ceil(best_ask / tick - eps_px)
    if bb >= ba:
        return _cancel("crossed or locked input book on the tick grid")
    h = p.eta * pred_spread_ticks * 0.5
    if h < 1.0:
        h = 1.0
    r = m + p.alpha * pred_mid_ticks - p.skew * (inventory / p.q_max) * h
    lo, hi = r - h, r + h
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _cancel("reservation price overflow")
    bid = math.floor(lo + eps_px)
    ask = math.ceil(hi - eps_px)
    if p.post_only:
        if bid >= ba:
            bid = ba - 1
        if ask <= bb:
            ask = bb + 1
    if bid >= ask:  # unreachable for an uncrossed book (h >= 1 tick); kept as the last safety net
        return Quotes((), (), False, "post-only adjustment collided: bid >= ask")

    # Sizes, in lots. Capacities are what each side may fill in total without |q| > q_max.
    q_lots = p.q_max / lot
    eps_sz = _EPS_ABS + _EPS_REL * q_lots
    inv_lots = inventory / lot
    cap_bid_f = q_lots - inv_lots
    cap_ask_f = q_lots + inv_lots
    if not (math.isfinite(cap_bid_f) and math.isfinite(cap_ask_f)):
        return _cancel("inventory or q_max overflow in lots")
    cap_bid = math.floor(cap_bid_f + eps_sz) if cap_bid_f > 0 else 0
    cap_ask = math.floor(cap_ask_f + eps_sz) if cap_ask_f > 0 else 0
    min_lots = math.ceil(p.min_size / lot - eps_sz)
    if min_lots < 1:
        min_lots = 1
    base = _base_lots(pred_volume_log, lot, eps_sz, p)

    spacing = p.level_spacing_ticks
    bids = _ladder(BUY, bid, -spacing, base, min_lots, cap_bid, tick, lot, p.levels)
    asks = _ladder(SELL, ask, spacing, base, min_lots, cap_ask, tick, lot, p.levels)
    return Quotes(bids, asks, False, _reason(bids, asks, base, min_lots, cap_bid, cap_ask, p.levels))


def _reason(
    bids: tuple[Quote, ...], asks: tuple[Quote, ...], base: int, min_lots: int, cap_bid: int, cap_ask: int,
    levels: int,
) -> str:
    """Human-readable account of short sides; "ok" on the common path (no string building)."""
    if len(bids) == levels and len(asks) == levels:
        return "ok"
    if base < min_lots:
        return "size below min_size after lot rounding: no quotes"
    parts = []
    for name, got, cap in (("bid", bids, cap_bid), ("ask", asks, cap_ask)):
        if len(got) < levels:
            why = "inventory limit q_max" if cap < min_lots or sum(x.size_lots for x in got) + min_lots > cap else "price <= 0"
            parts.append(f"{name} {len(got)}/{levels} levels ({why})")
    return "; ".join(parts)
