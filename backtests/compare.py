"""``cmm compare``: one table and one figure across runs (strategies x instruments x fill models).

Reads ``results.json`` files (or run folders holding one) and writes ``compare.md``, ``compare.json``,
``compare.png`` and a self-contained ``compare.html`` into the output folder.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLUMNS = (
    ("pnl", "PnL (rebates)", "{:.4g}"),
    ("pnl_no_rebates", "PnL (no rebates)", "{:.4g}"),
    ("fills", "fills", "{}"),
    ("fill_rate", "fill rate", "{:.2f}"),
    ("map", "MAP", "{:.3g}"),
    ("pnl_per_map", "PnL/MAP", "{:.3g}"),
    ("markout_1s_ticks", "markout 1s (ticks)", "{:.2f}"),
    ("markout_5s_ticks", "markout 5s (ticks)", "{:.2f}"),
    ("max_abs_position", "max abs q", "{:.3g}"),
    ("quote_updates", "quote updates", "{}"),
    ("decision_us_p50", "decision p50 (us)", "{:.1f}"),
    ("decision_us_p99", "decision p99 (us)", "{:.1f}"),
)


def load_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    out = []
    for p in (Path(x) for x in paths):
        file = p / "results.json" if p.is_dir() else p
        if not file.is_file():
            raise FileNotFoundError(f"{p}: no results.json (run `cmm backtest` first)")
        out.append(json.loads(file.read_text()))
    if not out:
        raise ValueError("nothing to compare")
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


HEAD = ("instrument", "fill model", "strategy", "ccy", *(c[1] for c in COLUMNS))


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Rows grouped by instrument, then fill model, then strategy (CMM first), as formatted cells."""
    order = {"cmm": 0, "teacher_direct": 1}
    rows = sorted(results, key=lambda r: (r["instrument_id"], str(r.get("fill_model")), order.get(r["strategy"], 2), r["strategy"]))
    out = []
    for r in rows:
        m = r["metrics"]
        cells = [r["instrument_id"], str(r.get("fill_model")), r["strategy"], r.get("currency", "")]
        out.append(cells + [_cell(m.get(key), fmt) for key, _, fmt in COLUMNS])
    return out


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * 4 + "---:|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines) + "\n"


def html_table(results: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i >= 4 else ''}>{html.escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>"
        for cells in table_rows(results)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def comparison_png(results: list[dict[str, Any]], path: Path) -> None:
    """PnL with and without rebates, and 1 s markout, per run; one panel row per instrument."""
    instruments = sorted({r["instrument_id"] for r in results})
    fig, axes = plt.subplots(len(instruments), 2, figsize=(12, 2.8 * len(instruments)), squeeze=False)
    for row, instrument in zip(axes, instruments):
        runs = sorted((r for r in results if r["instrument_id"] == instrument), key=lambda r: (str(r.get("fill_model")), r["strategy"]))
        labels = [f"{r['strategy']}\n{r.get('fill_model')}" for r in runs]
        x = np.arange(len(runs))
        pnl = [r["metrics"]["pnl"] or 0.0 for r in runs]
        pnl_nr = [r["metrics"]["pnl_no_rebates"] or 0.0 for r in runs]
        row[0].bar(x - 0.2, pnl, 0.4, label="with rebates")
        row[0].bar(x + 0.2, pnl_nr, 0.4, label="without rebates")
        row[0].axhline(0, color="grey", lw=0.5)
        row[0].set_title(f"{instrument}: PnL marked to mid ({runs[0].get('currency', '')})", fontsize=9)
        row[0].legend(fontsize=7)
        markout = [r["metrics"].get("markout_1s_ticks") or 0.0 for r in runs]
        row[1].bar(x, markout, color="tab:purple")
        row[1].axhline(0, color="grey", lw=0.5)
        row[1].set_title(f"{instrument}: mean 1 s markout of maker fills (ticks)", fontsize=9)
        for ax in row:
            ax.set_xticks(x, labels, fontsize=6, rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_compare(paths: list[str | Path], out: str | Path) -> Path:
    results = load_results(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(json.dumps([{k: r[k] for k in ("name", "strategy", "instrument_id", "fill_model", "metrics")} for r in results], indent=1))
    comparison_png(results, out / "compare.png")
    png = base64.b64encode((out / "compare.png").read_bytes()).decode()
    rows = "".join(f"<li><a href=\"{html.escape(r['name'])}/report.html\">{html.escape(r['name'])}</a></li>" for r in results)
    (out / "compare.html").write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>comparison</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}td.num{text-align:right}</style></head><body>"
        f"<h1>Comparison of {len(results)} runs</h1><section id=\"figure\"><img alt=\"comparison\" style=\"max-width:100%\" "
        f"src=\"data:image/png;base64,{png}\"></section><section id=\"table\">{html_table(results)}</section>"
        f"<section id=\"runs\"><ul>{rows}</ul></section></body></html>"
    )
    return out / "compare.md"
