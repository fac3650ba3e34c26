"""``cmm probe``: fluorescence maps, teacher heads, the numeric baseline, and ``plan.json``.

Reads a features directory written by ``cmm teacher extract`` (never runs the teacher) and writes:

    OUT/f_task.json, f_task.png            F_task[l, t] and per regime F_task[l, t, d]
    OUT/f_data.json, f_data.png            F_data[l, c] and the raw ratios r_l(c)
    OUT/plan.json                          the decomposition plan derived from the maps
    OUT/teacher_vs_numeric.json / .md      best teacher layer vs a ridge on x_t alone, per target
    OUT/teacher_predictions.parquet        the teacher's predictions (best-layer heads) per sample
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.metrics import prediction_metrics
from training.plan import REGIME_NAMES, derive_plan
from training.probe import TaskProbe, data_fluorescence, probe_tasks
from training.ridge import fit_ridge
from training.samples import TASKS, SampleSet
from training.teacher.cache import FeatureCache


class FeaturesDirError(ValueError):
    """A features directory that is missing pieces; the message says which and how to make them."""


def load_features(features_dir: Path) -> tuple[SampleSet, dict, np.ndarray, np.ndarray]:
    """Samples, extract record, and the hidden states aligned to the samples that have them."""
    extract_path = features_dir / "extract.json"
    samples_path = features_dir / "samples.parquet"
    for path in (extract_path, samples_path):
        if not path.exists():
            raise FeaturesDirError(f"{path} is missing: run `cmm teacher extract --out {features_dir}` first")
    record = json.loads(extract_path.read_text())
    samples = SampleSet.load(samples_path)
    keys, hidden = FeatureCache(features_dir / "teacher_cache", record["model_id"], record["prompt_version"]).load()
    if len(keys) == 0:
        raise FeaturesDirError(f"no teacher features in {features_dir / 'teacher_cache'}: run `cmm teacher extract` first")
    rows = np.searchsorted(samples.ts, keys)
    if (rows >= len(samples.ts)).any() or not np.array_equal(samples.ts[np.clip(rows, 0, len(samples.ts) - 1)], keys):
        raise FeaturesDirError(f"teacher features in {features_dir} do not match samples.parquet: delete the cache and re-extract")
    return samples, record, rows, hidden


def _overlap(ts: np.ndarray, target: str) -> float:
    """Share of non-overlapping target windows: spacing of the evaluated samples over the horizon."""
    horizon = float(target.rsplit("_", 1)[1].rstrip("s"))
    spacing = float(np.median(np.diff(ts))) / 1e9 if len(ts) > 1 else horizon
    return min(1.0, spacing / horizon)


def compare_teacher_numeric(samples: SampleSet, rows: np.ndarray, hidden: np.ndarray, task_probe: TaskProbe) -> list[dict[str, object]]:
    """Per target: best teacher layer vs ridge on x_t, both fitted on the same training rows."""
    split = samples.split[rows]
    train, val, test = split == 0, split == 1, split == 2
    x, y = samples.x[rows], samples.y[rows]
    numeric = fit_ridge(x[train], y[train], x[val], y[val])
    numeric_pred = numeric.predict(x)
    teacher_pred = task_probe.teacher_predictions(hidden)
    table = []
    for t, name in enumerate(samples.target_names):
        train_mean = float(y[train, t].mean())
        overlap = _overlap(samples.ts[rows], name)
        row: dict[str, object] = {"target": name, "best_layer": int(task_probe.best_layer[t])}
        for label, pred in (("teacher", teacher_pred[:, t]), ("numeric", numeric_pred[:, t])):
            for split_name, mask in (("val", val), ("test", test)):
                metrics = prediction_metrics(y[mask, t], pred[mask], train_mean, overlap)
                for key in ("r2", "ic", "ic_se"):
                    row[f"{label}_{split_name}_{key}"] = metrics[key]
        table.append(row)
    return table


def _markdown_table(table: list[dict[str, object]], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| target | best layer | teacher R2 val | numeric R2 val | teacher R2 test | numeric R2 test | teacher IC test | numeric IC test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['target']} | {r['best_layer']} | {r['teacher_val_r2']:.3f} | {r['numeric_val_r2']:.3f} | "
            f"{r['teacher_test_r2']:.3f} | {r['numeric_test_r2']:.3f} | "
            f"{r['teacher_test_ic']:.3f} ± {r['teacher_test_ic_se']:.3f} | {r['numeric_test_ic']:.3f} ± {r['numeric_test_ic_se']:.3f} |",
        )
    return "\n".join(lines) + "\n"


def _heatmap(ax, data: np.ndarray, xlabels: list[str], title: str, fig) -> None:
    if np.isnan(data).any():
        missing = np.isnan(data).all(axis=0)
        for col in np.flatnonzero(missing):
            ax.text(col, data.shape[0] / 2, "no signal", rotation=90, ha="center", va="center", fontsize=7, color="white")
        data = np.nan_to_num(data)
    image = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(xlabels)))
    ax.set_xticklabels(xlabels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("layer (0 = embeddings)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def plot_maps(out: Path, f_task: np.ndarray, f_task_regime: np.ndarray, f_data: np.ndarray, targets: list[str], components: list[str], model_id: str, regime_counts: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + f_task_regime.shape[2], figsize=(4.2 * (1 + f_task_regime.shape[2]), 5.2), constrained_layout=True)
    _heatmap(axes[0], f_task, targets, f"F_task[l, t] (all regimes)\n{model_id}", fig)
    for d in range(f_task_regime.shape[2]):
        _heatmap(axes[d + 1], f_task_regime[:, :, d], targets, f"F_task[l, t, d={REGIME_NAMES[d]} vol] (n={regime_counts[d]}, out of fold)", fig)
    fig.savefig(out / "f_task.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 5.2), constrained_layout=True)
    _heatmap(ax, f_data / max(float(f_data.max()), 1e-12), components, f"F_data[l, c] / max (stained input components)\n{model_id}", fig)
    ax.set_xlabel("input component c")
    fig.savefig(out / "f_data.png", dpi=110)
    plt.close(fig)


def run_probe(features_dir: str | Path, out: str | Path, n_groups: int = 3, regime_threshold: float = 0.25) -> dict[str, object]:
    """Compute both maps, the plan and the comparison table; returns a summary."""
    features_dir, out = Path(features_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples, record, rows, hidden = load_features(features_dir)
    split = samples.split[rows]
    train, val = split == 0, split == 1
    if train.sum() < 20 or val.sum() < 10:
        raise FeaturesDirError(f"too few samples with teacher features (train {train.sum()}, val {val.sum()}): extract more (--max-samples)")
    y = samples.y[rows]
    task_probe = probe_tasks(hidden, y, train, val, samples.regime[rows], n_regimes=len(REGIME_NAMES))
    targets = samples.target_names

    stain = record["stain"]
    index = {int(k): i for i, k in enumerate(samples.ts[rows])}
    probed = [index[k] for k in stain["probed_keys"] if k in index]
    donors = [index[k] for k in stain["donor_keys"] if k in index]
    stained = {}
    for component in stain["components"]:
        cache = FeatureCache(features_dir / "stain_cache" / component, record["model_id"], f"{record['prompt_version']}-stain-s{stain['seed']}")
        keys, feats = cache.load()
        order = np.argsort(keys)
        lookup = dict(zip(keys[order].tolist(), feats[order]))
        stained[component] = np.stack([lookup[k] for k in stain["probed_keys"] if k in index])
    f_data, ratios, components = data_fluorescence(hidden[probed], stained, hidden[donors])

    plan = derive_plan(task_probe.f_task, task_probe.f_task_regime, f_data, targets, list(TASKS), n_groups, regime_threshold)
    plan.derivation["model_id"] = record["model_id"]
    plan.derivation["prompt_version"] = record["prompt_version"]
    plan.save(out / "plan.json")

    (out / "f_task.json").write_text(
        json.dumps(
            {
                "model_id": record["model_id"],
                "layers": list(range(hidden.shape[1])),
                "targets": targets,
                "regimes": list(REGIME_NAMES),
                "F_task": task_probe.f_task.tolist(),
                "F_task_regime": np.where(np.isnan(task_probe.f_task_regime), None, task_probe.f_task_regime).tolist(),
                "regime_counts_out_of_fold": task_probe.regime_counts.tolist(),
                "r2_val": task_probe.r2_val.tolist(),
                "r2_val_regime": task_probe.r2_val_regime.tolist(),
                "best_layer": task_probe.best_layer.tolist(),
                "n_train": int(train.sum()),
                "n_val": int(val.sum()),
            },
            indent=1,
        ),
    )
    (out / "f_data.json").write_text(
        json.dumps({"model_id": record["model_id"], "components": components, "F_data": f_data.tolist(), "r": ratios.tolist(), "n_probed": len(probed)}, indent=1),
    )
    plot_maps(out, task_probe.f_task, task_probe.f_task_regime, f_data, targets, components, record["model_id"], task_probe.regime_counts)

    table = compare_teacher_numeric(samples, rows, hidden, task_probe)
    (out / "teacher_vs_numeric.json").write_text(json.dumps(table, indent=1))
    title = f"{samples.meta['instrument_id']}: best teacher layer ({record['model_id']}) vs ridge on x_t, n={len(rows)}"
    (out / "teacher_vs_numeric.md").write_text(_markdown_table(table, title))

    predictions = task_probe.teacher_predictions(hidden)
    columns = {"ts": samples.ts[rows]}
    columns.update({f"teacher.{name}": predictions[:, t] for t, name in enumerate(targets)})
    pq.write_table(pa.table(columns).replace_schema_metadata({"cmm": json.dumps({"model_id": record["model_id"], "best_layer": task_probe.best_layer.tolist()})}), out / "teacher_predictions.parquet")
    return {"plan": json.loads(plan.to_json()), "table": table, "out": str(out)}
