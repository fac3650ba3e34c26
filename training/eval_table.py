"""Comparison tables and a bar chart from ``eval.json`` files (``cmm eval-table``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

ORDER = [
    "cmm_hajek_moe",
    "hajek_uniform_gate",
    "plain_average",
    "softmax_gate_raw_outputs",
    "linear_stacking",
    "teacher_best_layer",
    "direct_student_ground_truth",
    "student_output_kd",
    "student_fitnets_feature_kd",
    "ridge_on_x",
]


def _load(path: Path) -> dict:
    path = path / "eval.json" if path.is_dir() else path
    return json.loads(path.read_text())


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(evaluations: list[dict], names: list[str]) -> str:
    """Per dataset and target: R2, IC ± se vs truth, IC vs teacher, and time per decision."""
    out = []
    for evaluation, name in zip(evaluations, names):
        targets = evaluation["targets"]
        out.append(f"### {', '.join(evaluation['instruments'])} ({name}; n_eval={evaluation['n_eval']}, seed {evaluation['seed']})\n")
        header = "| model | µs/decision | " + " | ".join(f"{t} R2 / IC ± se / IC vs teacher" for t in targets) + " |"
        out += [header, "|" + "---|" * (len(targets) + 2)]
        models = [m for m in ORDER if m in evaluation["models"]] + [m for m in evaluation["models"] if m not in ORDER]
        for model in models:
            timing = evaluation["inference_time_per_decision"].get(model, {})
            cells = []
            for target in targets:
                r = evaluation["models"][model][target]
                cells.append(f"{_fmt(r['r2'])} / {_fmt(r['ic'])} ± {_fmt(r['ic_se'])} / {_fmt(r['teacher_ic'])}")
            out.append(f"| {model} | {_fmt(timing.get('us_p50'), 1)} | " + " | ".join(cells) + " |")
        moe = evaluation.get("moe", {})
        if moe:
            first = next(iter(moe))
            shares = ", ".join(f"{s}: gate {v['mean_gate']:.2f}, var share {v['variance_share']:.2f}" for s, v in moe[first].items())
            out.append(f"\nHájek-MoE on {first}: {shares}\n")
    return "\n".join(out)


def bar_chart(evaluations: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(evaluations), 1, figsize=(12, 3.6 * len(evaluations)), squeeze=False, constrained_layout=True)
    for ax, evaluation, name in zip(axes[:, 0], evaluations, names):
        targets = evaluation["targets"]
        models = [m for m in ORDER if m in evaluation["models"]]
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            ic = [evaluation["models"][model][t]["ic"] for t in targets]
            se = [evaluation["models"][model][t]["ic_se"] for t in targets]
            ax.bar(np.arange(len(targets)) + i * width, np.nan_to_num(ic), width, yerr=np.nan_to_num(se), label=model, capsize=2)
        ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2)
        ax.set_xticklabels(targets)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("Spearman IC (test) ± se")
        ax.set_title(f"{', '.join(evaluation['instruments'])} ({name}), n_eval={evaluation['n_eval']}")
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_tables(paths: list[Path], md_out: Path | None, png_out: Path | None) -> str:
    evaluations = [_load(p) for p in paths]
    names = [p.name if p.is_dir() else p.parent.name for p in paths]
    text = markdown_table(evaluations, names)
    if md_out:
        md_out.parent.mkdir(parents=True, exist_ok=True)
        md_out.write_text(text + "\n")
    if png_out:
        png_out.parent.mkdir(parents=True, exist_ok=True)
        bar_chart(evaluations, names, png_out)
    return text
