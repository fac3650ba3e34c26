"""The teacher's prompt: a short, fixed text rendering of ``x_t``, versioned.

Rendered from the feature vector itself (not from the book) so that staining an input component
for the data-fluorescence map is a swap of feature columns followed by a re-render. Prices are
distances from the mid in ticks, sizes in lots (rounded), flows signed. About 100 tokens with the
SmolLM2 tokenizer; ``prompt_components`` names which feature columns each input component owns.
"""

from __future__ import annotations

import math

import numpy as np

PROMPT_VERSION = "p1"

# Input components for staining (METHOD.md section 3): name -> feature-name prefixes it owns.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "bid_prices": ("bid_dist_",),
    "bid_sizes": ("bid_size_",),
    "ask_prices": ("ask_dist_",),
    "ask_sizes": ("ask_size_",),
    "flow": ("ofi_", "imbalance_l1", "microprice_offset"),
    "trades": ("signed_volume_", "trade_count_", "log_time_since_trade"),
    "volatility": ("realized_vol", "spread_ticks"),
}


def prompt_components(feature_names: list[str]) -> dict[str, np.ndarray]:
    """Column indices of each component; every feature belongs to exactly one component."""
    out: dict[str, np.ndarray] = {}
    claimed: set[int] = set()
    for name, prefixes in COMPONENTS.items():
        cols = [j for j, f in enumerate(feature_names) if f.startswith(prefixes)]
        out[name] = np.asarray(cols, dtype=np.int64)
        claimed.update(cols)
    missing = [f for j, f in enumerate(feature_names) if j not in claimed]
    if missing:
        raise ValueError(f"features with no prompt component: {missing}")
    return out


def _num(value: float, digits: int = 0) -> str:
    if not math.isfinite(value):
        return "na"
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def _lots(log_size: float) -> str:
    """Lots with two significant digits, thousands as k: short and still monotone."""
    lots = math.expm1(max(log_size, 0.0))
    if lots >= 1000:
        return f"{lots / 1000:.1f}k" if lots < 10_000 else f"{lots / 1000:.0f}k"
    return f"{lots:.0f}" if lots >= 1 else f"{lots:.1f}"


def render_prompt(x: np.ndarray, feature_names: list[str], instrument: str = "") -> str:
    """Text for one sample; fixed layout so that only the numbers change between samples.

    Level prices are ticks away from the best price of their side (the best's own distance is
    half the spread, which is given), sizes are lots.
    """
    f = dict(zip(feature_names, (float(v) for v in x)))
    levels = sum(1 for name in feature_names if name.startswith("bid_dist_"))

    def side(prefix: str) -> str:
        best = f[f"{prefix}_dist_0"]
        return " ".join(f"{f[f'{prefix}_dist_{k}'] - best:.0f}:{_lots(f[f'{prefix}_size_{k}'])}" for k in range(levels))

    ofi = " ".join(_num(f[name]) for name in feature_names if name.startswith("ofi_"))
    trades = " ".join(
        f"{_num(f[name])}/{f['trade_count_' + name.removeprefix('signed_volume_')]:.0f}"
        for name in feature_names
        if name.startswith("signed_volume_")
    )
    since = math.expm1(f["log_time_since_trade"])
    return (
        f"{instrument or 'Book'} L2, ticks:lots\n"
        f"Bid {side('bid')}\n"
        f"Ask {side('ask')}\n"
        f"Spread {f['spread_ticks']:.0f} micro {_num(f['microprice_offset'], 1)} imb {_num(f['imbalance_l1'], 1)} ofi {ofi}\n"
        f"Flow {trades} last {since:.1f}s vol {f['realized_vol']:.0f}\n"
        "Next mid:"
    )


def stain(x: np.ndarray, donor: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``x`` with one component's columns taken from ``donor`` (METHOD.md section 3)."""
    stained = np.array(x, copy=True)
    stained[..., columns] = donor[..., columns]
    return stained
