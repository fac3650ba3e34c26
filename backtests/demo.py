"""``cmm demo``: the main job on the embedded default data, from nothing to a report.

Stages (each prints its progress, each result lands under ``--out``):
1. synthetic L2 market (``cmm catalog synth``), calibrated on the real BTCUSDT-PERP capture;
2. teacher features: samples on a 100 ms grid, prompts, the default LLM's hidden states;
3. the normalized fluorescent probe: F_task / F_data heat maps and the decomposition plan;
4. distillation: students + Hájek-MoE + every baseline, evaluated; the bundle;
5. the prediction report: comparison table and chart;
6. backtests of CMM and every baseline market maker (fixed spread, Avellaneda-Stoikov, GLFT,
   teacher-direct paying the LLM's latency) through NautilusTrader on the held-out last 40 % of the
   market, queue-position fills; one report.html per run and the comparison (compare.html).

Synthetic data is for this demo only: results on it are not headline numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

INSTRUMENT = "BTCUSDT-PERP.SIM"


def _stage(number: int, total: int, title: str) -> float:
    print(f"\n== [{number}/{total}] {title}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, minutes: float, seed: int, samples: int, model: str | None) -> dict[str, object]:
    """Run every stage, writing under ``out``; returns the summary also saved as JSON."""
    from backtests.cli import main as cmm_main
    from catalog.info import catalog_info, format_info
    from training.distill_job import run_distill
    from training.eval_table import write_tables
    from training.extract_job import run_extract
    from training.probe_job import run_probe

    out.mkdir(parents=True, exist_ok=True)
    catalog_dir, features_dir, probe_dir, bundle_dir = out / "catalog", out / "features", out / "probe", out / "bundle"
    summary: dict[str, object] = {"out": str(out.resolve()), "instrument_id": INSTRUMENT, "stages": {}}
    stages: dict[str, object] = summary["stages"]  # type: ignore[assignment]
    total = 6

    started = _stage(1, total, f"synthetic L2 market: {minutes:g} min, seed {seed} -> {catalog_dir}")
    if catalog_dir.exists():
        print(f"catalog already exists at {catalog_dir}; reusing it (delete it to regenerate)")
    else:
        code = cmm_main(["catalog", "synth", "--catalog", str(catalog_dir), "--minutes", str(minutes), "--seed", str(seed), "--instrument-id", INSTRUMENT])
        if code:
            raise SystemExit(code)
    print(format_info(catalog_info(catalog_dir)))
    stages["synth"] = {"seconds": round(time.perf_counter() - started, 1)}

    started = _stage(2, total, f"teacher features: {samples} samples, default LLM unless --model (resumable)")
    record = run_extract(catalog_dir, INSTRUMENT, features_dir, model=model, max_samples=samples, stain_samples=min(64, samples // 4), seed=seed)
    print(f"teacher {record['model_id']}: {record['latency']['ms_per_decision_batch1']:.0f} ms per decision (batch of one)")
    stages["teacher"] = {"seconds": round(time.perf_counter() - started, 1), "model_id": record["model_id"], "latency": record["latency"]}

    started = _stage(3, total, "normalized fluorescent probe -> F_task, F_data, plan.json")
    probe = run_probe(features_dir, probe_dir)
    print((probe_dir / "teacher_vs_numeric.md").read_text())
    print("plan:", ", ".join(s["name"] for s in probe["plan"]["students"]))  # type: ignore[index]
    stages["probe"] = {"seconds": round(time.perf_counter() - started, 1), "maps": [str(probe_dir / "f_task.png"), str(probe_dir / "f_data.png")]}

    started = _stage(4, total, "distillation: students + Hajek-MoE + baselines -> bundle")
    evaluation = run_distill([features_dir], bundle_dir, plan_path=probe_dir / "plan.json", seed=seed)
    stages["distill"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "cmm_us_per_decision": evaluation["inference_time_per_decision"]["cmm_hajek_moe"],
        "bundle": str(bundle_dir),
    }

    started = _stage(5, total, "report")
    report_md, report_png = out / "report.md", out / "report.png"
    table = write_tables([bundle_dir], report_md, report_png)
    print(table)
    stages["report"] = {"seconds": round(time.perf_counter() - started, 1), "markdown": str(report_md), "chart": str(report_png)}

    started = _stage(6, total, "backtests on the held-out last 40 %: CMM and every baseline (NautilusTrader, queue-position fills)")
    backtests_dir = out / "backtests"
    sweep_file = write_demo_backtests(out, catalog_dir, bundle_dir)
    from backtests.sweep import run_sweep

    sweep = run_sweep(sweep_file, backtests_dir)
    print((backtests_dir / "compare.md").read_text())
    stages["backtests"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "comparison": str(backtests_dir / "compare.html"),
        "failed": sweep["failed"],
    }

    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\ndone: backtest comparison {backtests_dir / 'compare.html'} (one report.html per run beside it),")
    print(f"prediction report {report_md}, chart {report_png}, maps in {probe_dir}, bundle {bundle_dir}")
    print("(synthetic market: a demonstration, not a result; real-data results are in docs/results.md)")
    return summary


# gamma: the values tuned on the real BTCUSDT-PERP capture's training part (backtests/configs/
# real-sweep.yaml), which the synthetic market is calibrated on.
DEMO_STRATEGIES = {
    "cmm": {},
    "teacher_direct": {},
    "fixed_spread": {"half_spread_ticks": 1.0},
    "avellaneda_stoikov": {"gamma": 0.01, "tau_s": 1.0},
    "glft": {"gamma": 0.0001},
}


def write_demo_backtests(out: Path, catalog_dir: Path, bundle_dir: Path) -> Path:
    """The demo's backtest config and sweep file, written as YAML so they can be read and rerun
    (``cmm backtest out/demo/backtests.yaml``, ``cmm sweep out/demo/sweep.yaml --out ...``)."""
    import yaml

    config = {
        "catalog": str(catalog_dir.resolve()),
        "instrument_id": INSTRUMENT,
        "time_range": {"start_fraction": 0.6, "end_fraction": 1.0},
        "bundle": str(bundle_dir.resolve()),
        "venue": {
            "oms_type": "NETTING",
            "account_type": "MARGIN",
            "starting_balances": ["100000 USDT"],
            "fees": {"maker": -0.00005, "taker": 0.0004},
            "fill_model": {"name": "queue-risk-averse"},
        },
        "strategy": {"name": "cmm", "params": {"q_max": 0.05, "min_size": 0.001, "max_size": 0.01, "order_size": 0.002}},
    }
    config_file = out / "backtests.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"configs": [config_file.name], "strategies": DEMO_STRATEGIES}, sort_keys=False))
    return sweep_file


def _run(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), args.minutes, args.seed, args.samples, args.model)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job end to end on the embedded synthetic market",
        description=(
            "Run the CMM pipeline end to end on the embedded synthetic market (no data or network needed): "
            "synthetic catalog, teacher features, probe and plan, distillation with every baseline, prediction report, "
            "and NautilusTrader backtests of CMM and every baseline market maker with a comparison report."
        ),
    )
    parser.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of synthetic market (default: 10)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument("--samples", type=int, default=800, help="samples the teacher reads (default: 800, a few minutes on 2 CPU cores)")
    parser.add_argument("--model", metavar="PATH", help="teacher: a local Hugging Face causal-LM folder (default: SmolLM2-135M-Instruct)")
    parser.set_defaults(func=_run)
