"""Run the synthetic market and turn its tape into NautilusTrader data, optionally into a catalog.

Owns the bridge from the numpy ``Tape`` to ``OrderBookDelta`` batches (snapshot first, ``F_LAST``
on every batch's last delta) and ``TradeTick``s, the instrument the data is published under, the
shipped default parameters and the atomic write through ``catalog.staging``. It must not contain
model logic (``model``) or statistics (``stats``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nautilus_trader.model.data import OrderBookDelta, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import FIXED_PRECISION
from tqdm import tqdm

from catalog.instruments import BinanceMarket, binance_instrument, generic_instrument
from catalog.staging import staged_catalog
from catalog.synth.model import SynthParams, Tape, simulate

DEFAULT_PARAMS_PATH = Path(__file__).resolve().parents[1] / "calibration" / "btcusdt_perp.json"
DEFAULT_INSTRUMENT_ID = "BTCUSDT-PERP.SIM"
DEFAULT_START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z: a fixed, obviously synthetic date
PROGRESS_MIN_SECONDS = 600.0  # a progress bar from ten simulated minutes (~1.5 s of work) up

_F_LAST = int(RecordFlag.F_LAST)
_F_SNAPSHOT = int(RecordFlag.F_SNAPSHOT)


@dataclass
class SynthResult:
    """What one generation produced, ready to write."""

    instrument: Instrument
    deltas: list[OrderBookDelta]
    trades: list[TradeTick]
    tape: Tape
    params: SynthParams
    seed: int
    seconds: float
    elapsed_s: float

    def summary(self) -> dict[str, object]:
        events = len(self.deltas) + len(self.trades)
        return {
            "instrument_id": str(self.instrument.id),
            "seed": self.seed,
            "minutes": self.seconds / 60,
            "batches": self.tape.batches,
            "deltas": len(self.deltas),
            "trades": len(self.trades),
            "market_orders": int(len(np.unique(self.tape.trade_order))),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(events / max(self.elapsed_s, 1e-9)),
            "regime_time_s": [round(x, 1) for x in self.tape.regime_time_s],
        }


def load_params(path: str | Path | None = None) -> SynthParams:
    """Parameters from a calibration JSON (``{"params": {...}}``); the shipped one by default."""
    source = Path(path) if path is not None else DEFAULT_PARAMS_PATH
    data = json.loads(source.read_text())
    return SynthParams.from_dict(data["params"] if "params" in data else data)


def _decimals(step: float) -> int:
    for decimals in range(10):
        if abs(round(step * 10**decimals) - step * 10**decimals) < 1e-9:
            return decimals
    raise ValueError(f"step {step} has more than 9 decimals")


def synthetic_instrument(instrument_id: str | InstrumentId, params: SynthParams, ts: int = 0) -> Instrument:
    """The real BTCUSDT-PERP filters under the synthetic id when it is a BTC id on that grid (so a
    backtest quotes exactly as it would on Binance), else a generic perp with the model's grid."""
    iid = instrument_id if isinstance(instrument_id, InstrumentId) else InstrumentId.from_str(instrument_id)
    if "BTC" in iid.symbol.value.upper() and abs(params.tick - 0.1) < 1e-12 and abs(params.lot - 0.001) < 1e-12:
        return binance_instrument(BinanceMarket.USDM, "BTCUSDT", instrument_id=iid, ts=ts)
    return generic_instrument(iid, _decimals(params.tick), _decimals(params.lot), ts=ts)


def tape_to_nautilus(tape: Tape, instrument: Instrument, params: SynthParams) -> tuple[list[OrderBookDelta], list[TradeTick]]:
    """Book changes -> delta batches (the first one a CLEAR + ADD snapshot), fills -> trade ticks."""
    iid = instrument.id
    pp, sp = instrument.price_precision, instrument.size_precision
    tick_raw = round(params.tick * 10**FIXED_PRECISION)
    lot_raw = round(params.lot * 10**FIXED_PRECISION)
    from_raw = OrderBookDelta.from_raw
    actions = (BookAction.UPDATE, BookAction.ADD, BookAction.DELETE)
    sides = (OrderSide.BUY, OrderSide.SELL)
    clear = OrderBookDelta.clear(iid, 0, tape.snapshot_ts, tape.snapshot_ts)
    # The model never publishes an empty book (both touches always hold size), so the snapshot
    # batch always has ADDs after this CLEAR and its last one carries F_LAST.
    deltas = [OrderBookDelta(iid, BookAction.CLEAR, clear.order, _F_SNAPSHOT, 0, tape.snapshot_ts, tape.snapshot_ts)]
    ts = tape.book_ts
    last = np.ones(len(ts), dtype=bool)
    last[:-1] = ts[1:] != ts[:-1]
    batch = np.cumsum(np.concatenate([[1], (ts[1:] != ts[:-1]).astype(np.int64)])) - 1
    snapshot = ts == tape.snapshot_ts
    action = np.where(tape.book_size == 0, 2, np.where(tape.book_prev == 0, 1, 0))
    flags = last * _F_LAST | snapshot * _F_SNAPSHOT
    for t, side, price, size, act, flag, seq in zip(
        ts.tolist(),
        tape.book_side.tolist(),
        [price * tick_raw for price in tape.book_price.tolist()],  # Python ints: raw prices exceed int64
        [size * lot_raw for size in tape.book_size.tolist()],
        action.tolist(),
        flags.tolist(),
        batch.tolist(),
    ):
        deltas.append(from_raw(iid, actions[act], sides[side], price, pp, size, sp, 0, flag, seq, t, t))
    trade_from_raw = TradeTick.from_raw
    aggressors = {1: AggressorSide.BUYER, -1: AggressorSide.SELLER}
    trades = [
        trade_from_raw(iid, price, pp, size, sp, aggressors[side], TradeId(f"S{n}"), t, t)
        for n, (t, price, size, side) in enumerate(
            zip(
                tape.trade_ts.tolist(),
                [price * tick_raw for price in tape.trade_price.tolist()],
                [size * lot_raw for size in tape.trade_size.tolist()],
                tape.trade_side.tolist(),
            ),
            start=1,
        )
    ]
    return deltas, trades


def generate(
    params: SynthParams,
    minutes: float,
    seed: int,
    instrument_id: str | InstrumentId = DEFAULT_INSTRUMENT_ID,
    start_ns: int = DEFAULT_START_NS,
    progress: bool = True,
) -> SynthResult:
    """Simulate ``minutes`` of market and build the Nautilus objects; deterministic for the seed."""
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    seconds = minutes * 60.0
    started = time.perf_counter()
    bar = None
    if progress and seconds >= PROGRESS_MIN_SECONDS:
        bar = tqdm(total=round(seconds), unit="s", desc="synth market", leave=False)

    def advance(simulated_s: float) -> None:
        done = min(int(simulated_s), bar.total)
        if done > bar.n:
            bar.update(done - bar.n)

    try:
        tape = simulate(params, seconds, seed, start_ns, progress=advance if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    instrument = synthetic_instrument(instrument_id, params, ts=start_ns)
    deltas, trades = tape_to_nautilus(tape, instrument, params)
    return SynthResult(instrument, deltas, trades, tape, params, seed, seconds, time.perf_counter() - started)


def write_result(result: SynthResult, catalog_dir: str | Path, overwrite: bool = False) -> None:
    """Write instrument, deltas and trades atomically: all of it lands in the catalog or none."""
    with staged_catalog(catalog_dir, overwrite=overwrite) as catalog:
        catalog.write_data([result.instrument])
        catalog.write_data(result.deltas)
        if result.trades:
            catalog.write_data(result.trades)
