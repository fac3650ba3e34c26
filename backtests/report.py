"""``report.html`` for one backtest run: one self-contained page (plots inlined as PNG) that opens
offline, where people look rather than read: equity, inventory, quotes against the mid with fills,
markouts, and the probe maps of the bundle the strategy ran.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from backtests.metrics import Markout1s, Markout5s, RunRecord  # noqa: E402

SECTIONS = ("summary", "equity", "inventory", "quotes", "markouts", "probe", "config")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _seconds(record: RunRecord, ts: np.ndarray) -> np.ndarray:
    return (np.asarray(ts, dtype=np.int64) - record.start_ns) / 1e9


def _equity_png(record: RunRecord) -> str:
    grid = record.grid(250_000_000)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(_seconds(record, grid), record.pnl_at(grid), label="PnL to mid, net of fees", color="tab:blue")
    ax.plot(_seconds(record, grid), record.pnl_at(grid, rebates=False), label="without maker rebates", color="tab:orange", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel(record.currency)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _inventory_png(record: RunRecord) -> str:
    grid = record.grid(100_000_000)
    fig, ax = plt.subplots(figsize=(10, 2.6))
    ax.step(_seconds(record, grid), record.position_at(grid), where="post", color="tab:purple")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel("position")
    return _png(fig)


def _quotes_png(record: RunRecord, segments: list, span_s: float = 60.0) -> str:
    """The busiest ``span_s`` of the run (most fills), so individual quotes are visible."""
    start = record.start_ns
    if len(record.fill_ts):
        counts = [np.sum((record.fill_ts >= t) & (record.fill_ts < t + span_s * 1e9)) for t in record.fill_ts]
        start = int(record.fill_ts[int(np.argmax(counts))]) - int(5e9)
    end = start + int(span_s * 1e9)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    keep = (record.mid_ts >= start) & (record.mid_ts <= end)
    t0 = record.start_ns
    ax.plot((record.mid_ts[keep] - t0) / 1e9, record.mid_px[keep], color="black", lw=0.8, label="mid")
    for side, price, a, b in segments:
        if b < start or a > end:
            continue
        color = "tab:green" if side == "BUY" else "tab:red"
        ax.hlines(price, (max(a, start) - t0) / 1e9, (min(b, end) - t0) / 1e9, color=color, lw=1.5, alpha=0.7)
    sel = (record.fill_ts >= start) & (record.fill_ts <= end)
    buys, sells = sel & (record.fill_sign > 0), sel & (record.fill_sign < 0)
    ax.scatter((record.fill_ts[buys] - t0) / 1e9, record.fill_px[buys], marker="^", color="tab:green", s=30, zorder=3, label="buy fill")
    ax.scatter((record.fill_ts[sells] - t0) / 1e9, record.fill_px[sells], marker="v", color="tab:red", s=30, zorder=3, label="sell fill")
    ax.set_xlabel("seconds into the window")
    ax.set_ylabel("price")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _markouts_png(record: RunRecord) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
    for ax, metric in zip(axes, (Markout1s(), Markout5s())):
        values = metric.values(record)
        if len(values):
            ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
            ax.axvline(values.mean(), color="black", lw=1, label=f"mean {values.mean():.2f}")
            ax.legend(fontsize=8)
        ax.set_title(f"markout {metric.horizon_s:g} s after maker fills (ticks, + = good)", fontsize=9)
    return _png(fig)


def _probe_png(bundle: Path | None) -> str | None:
    if bundle is None:
        return None
    maps_path = bundle / "probe_maps.json"
    if not maps_path.is_file():
        return None
    maps = json.loads(maps_path.read_text())
    f_task = np.array([[np.nan if v is None else v for v in row] for row in maps["f_task"]], dtype=float)
    panels = [("F_task (layer x target)", f_task.T, maps["targets"])]
    if maps.get("f_data"):
        f_data = np.array([[np.nan if v is None else v for v in row] for row in maps["f_data"]], dtype=float)
        panels.append(("F_data (layer x input component)", f_data.T, maps["components"]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.6 + 1.4 * len(panels)))
    for ax, (title, values, labels) in zip(np.atleast_1d(axes), panels):
        im = ax.imshow(values, aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("teacher layer (hidden state index)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02)
    return _png(fig)


def _table(rows: list[tuple[str, str, str]]) -> str:
    body = "".join(f"<tr><td>{html.escape(a)}</td><td class=num>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>" for a, b, c in rows)
    return f"<table><tr><th>metric</th><th>value</th><th>unit</th></tr>{body}</table>"


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_report(run_dir: str | Path) -> Path:
    """Read ``results.json``, ``record.npz`` and ``segments.json`` from ``run_dir``; write ``report.html``."""
    from backtests.runner import load_record

    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    record = load_record(run_dir / "record.npz")
    segments = json.loads((run_dir / "segments.json").read_text()) if (run_dir / "segments.json").is_file() else []
    bundle = Path(results["bundle"]) if results.get("bundle") else None
    probe = _probe_png(bundle)
    metrics = results["metrics"]
    units = results.get("units", {})
    summary = _table([(k, _fmt(v), units.get(k, "")) for k, v in metrics.items()])
    img = lambda src, alt: f'<img alt="{alt}" src="{src}">'  # noqa: E731
    parts = [
        f"<h1>{html.escape(results['name'])}: {html.escape(results['strategy'])} on {html.escape(results['instrument_id'])}</h1>",
        f"<p>window {html.escape(results['window']['start'])} to {html.escape(results['window']['end'])}; fill model "
        f"{html.escape(str(results.get('fill_model')))}; fees {html.escape(json.dumps(results.get('fees')))}; "
        f"PnL in {html.escape(results['currency'])}</p>",
        f'<section id="summary"><h2>Summary</h2>{summary}</section>',
        f'<section id="equity"><h2>Equity (PnL marked to mid)</h2>{img(_equity_png(record), "equity curve")}</section>',
        f'<section id="inventory"><h2>Inventory</h2>{img(_inventory_png(record), "inventory")}</section>',
        f'<section id="quotes"><h2>Quotes against the mid, fills marked (busiest minute)</h2>{img(_quotes_png(record, segments), "quotes")}</section>',
        f'<section id="markouts"><h2>Markouts</h2>{img(_markouts_png(record), "markouts")}</section>',
        '<section id="probe"><h2>Probe maps of the bundle</h2>'
        + (img(probe, "probe maps") if probe else "<p>No probe maps: this strategy runs no bundle, or the bundle predates probe_maps.json.</p>")
        + "</section>",
        f'<section id="config"><h2>Run</h2><pre>{html.escape(json.dumps({k: results[k] for k in ("config", "strategy_params", "strategy_counters", "reconciliation", "wall_seconds")}, indent=1))}</pre></section>',
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}td.num{text-align:right}"
        "img{max-width:100%}section{margin-bottom:1.5em}"
    )
    page = f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(results['name'])}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    path = run_dir / "report.html"
    path.write_text(page)
    return path
