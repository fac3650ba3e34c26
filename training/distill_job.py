"""``cmm distill``: train the students and the Hájek-MoE, every baseline, evaluate, export.

Data: one or several features directories (``cmm teacher extract``), pooled. Every sample has
``x_t`` and targets; the samples the teacher has read also have hidden states and the teacher's
prediction. Students and baselines train on all training samples (the distillation terms only
where the teacher read); everything is evaluated on the test samples the teacher has read, so the
teacher and every model are scored on the same rows, against ground truth and against the teacher.

Owns the orchestration and ``eval.json``; the models live in ``students``, ``hajek``,
``combiners`` and ``ridge``; the bundle format in ``export`` / ``cmm_strategy.bundle``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cmm_strategy.bundle import load_bundle
from cmm_strategy.teacher_direct import TEACHER_PREDICTIONS
from training.combiners import fit_softmax_gate, fit_stacking, plain_average, predict_softmax_gate, predict_stacking, raw_outputs
from training.hajek import HajekConfig, fit_hajek_moe, moe_report
from training.export import write_bundle
from training.metrics import prediction_metrics
from training.plan import REGIME_NAMES, Plan, derive_plan, load_plan
from training.probe import data_fluorescence, probe_tasks
from training.probe_job import load_features
from training.ridge import fit_ridge
from training.samples import TASKS
from training.students import PCAProjection, SliceData, StudentConfig, Standardizer, student_outputs, train_student
from training.teacher.cache import FeatureCache


@dataclass
class Pooled:
    """All samples of the features directories, with the teacher's part where it read."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    regime: np.ndarray
    ts: np.ndarray
    instrument: np.ndarray
    read: np.ndarray  # bool: the teacher read this sample
    hidden: np.ndarray  # [n_read, L+1, H] in the order of np.flatnonzero(read)
    target_names: list[str]
    feature_names: list[str]
    meta: list[dict]
    records: list[dict]
    stained: dict[str, np.ndarray]
    stain_rows: np.ndarray  # pooled row index of each stained sample
    donor_rows: np.ndarray


def pool_features(features_dirs: list[str | Path]) -> Pooled:
    parts = []
    offset = 0
    stained: dict[str, list[np.ndarray]] = {}
    stain_rows: list[int] = []
    donor_rows: list[int] = []
    for i, folder in enumerate(Path(f) for f in features_dirs):
        samples, record, rows, hidden = load_features(folder)
        read = np.zeros(len(samples.ts), dtype=bool)
        read[rows] = True
        order = np.argsort(rows)  # hidden in pooled order of rows
        parts.append((samples, record, read, hidden[order]))
        index = {int(t): r for r, t in enumerate(samples.ts)}
        st = record["stain"]
        for component in st["components"]:
            cache = FeatureCache(folder / "stain_cache" / component, record["model_id"], f"{record['prompt_version']}-stain-s{st['seed']}")
            keys, feats = cache.load()
            lookup = dict(zip(keys.tolist(), feats))
            stained.setdefault(component, []).append(np.stack([lookup[k] for k in st["probed_keys"] if k in lookup and k in index]))
        stain_rows += [offset + index[k] for k in st["probed_keys"] if k in index]
        donor_rows += [offset + index[k] for k in st["donor_keys"] if k in index]
        offset += len(samples.ts)
    first = parts[0][0]
    for samples, record, _, hidden in parts[1:]:
        if samples.feature_names != first.feature_names or samples.target_names != first.target_names:
            raise ValueError("features directories were built with different feature or target definitions")
        if hidden.shape[1:] != parts[0][3].shape[1:] or record["model_id"] != parts[0][1]["model_id"]:
            raise ValueError("features directories come from different teachers; pool only one teacher's features")
    return Pooled(
        x=np.concatenate([p[0].x for p in parts]),
        y=np.concatenate([p[0].y for p in parts]),
        split=np.concatenate([p[0].split for p in parts]),
        regime=np.concatenate([p[0].regime for p in parts]),
        ts=np.concatenate([p[0].ts for p in parts]),
        instrument=np.concatenate([np.full(len(p[0].ts), i) for i, p in enumerate(parts)]),
        read=np.concatenate([p[2] for p in parts]),
        hidden=np.concatenate([p[3] for p in parts]),
        target_names=first.target_names,
        feature_names=first.feature_names,
        meta=[p[0].meta for p in parts],
        records=[p[1] for p in parts],
        stained={c: np.concatenate(v) for c, v in stained.items()},
        stain_rows=np.asarray(stain_rows),
        donor_rows=np.asarray(donor_rows),
    )


def _hidden_rows(pooled: Pooled) -> np.ndarray:
    """Map pooled row -> index into ``pooled.hidden`` (-1 where unread)."""
    out = np.full(len(pooled.x), -1)
    out[pooled.read] = np.arange(int(pooled.read.sum()))
    return out


def _pooled_overlap(pooled: Pooled, rows: np.ndarray, horizon_s: float) -> float:
    """Share of non-overlapping target windows among ``rows``, instrument by instrument.

    Pooled captures share wall-clock time, so spacing must be measured within each instrument:
    ``sum_i n_i min(1, spacing_i / H) / sum_i n_i``.
    """
    weighted, total = 0.0, 0
    for instrument in np.unique(pooled.instrument[rows]):
        ts = np.sort(pooled.ts[rows & (pooled.instrument == instrument)])
        spacing = float(np.median(np.diff(ts))) / 1e9 if len(ts) > 1 else horizon_s
        weighted += len(ts) * min(1.0, spacing / horizon_s)
        total += len(ts)
    return weighted / total if total else 1.0


def _time_numpy(fn, x: np.ndarray, repeats: int = 2000) -> dict[str, float]:
    """Per-decision wall time of ``fn(x)`` for a batch of one: median and p99 in microseconds."""
    for _ in range(200):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn(x)
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return {"us_p50": times[len(times) // 2] / 1000.0, "us_p99": times[int(len(times) * 0.99)] / 1000.0}


def _mlp_numpy(net, x_norm: Standardizer, y_norm: Standardizer):
    """A numpy forward for an MLP baseline, for an honest per-decision time."""
    layers = [(m.weight.detach().double().numpy().T, m.bias.detach().double().numpy()) for m in net.body if hasattr(m, "weight")]
    head = (net.head.weight.detach().double().numpy().T, net.head.bias.detach().double().numpy())
    mean, scale, ym, ys = x_norm.mean, x_norm.scale, y_norm.mean, y_norm.scale

    def forward(x: np.ndarray) -> np.ndarray:
        h = (x - mean) / scale
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return (h @ head[0] + head[1]) * ys + ym

    return forward


def run_distill(
    features_dirs: list[str | Path],
    out: str | Path,
    plan_path: str | Path | None = None,
    seed: int = 0,
    student_config: StudentConfig = StudentConfig(),
    moe_config: HajekConfig = HajekConfig(),
    progress: bool = True,
) -> dict[str, object]:
    """Train, evaluate and export; returns ``eval.json``'s content."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out)
    pooled = pool_features([Path(f) for f in features_dirs])
    targets = pooled.target_names
    train, val, test = pooled.split == 0, pooled.split == 1, pooled.split == 2
    hidx = _hidden_rows(pooled)
    read_train, read_val = pooled.read & train, pooled.read & val
    if read_train.sum() < 20 or read_val.sum() < 10:
        raise ValueError(f"too few teacher-read samples (train {read_train.sum()}, val {read_val.sum()}): extract more")

    # Teacher heads and the plan (derived from the maps unless the user gives one).
    h_read = pooled.hidden
    task_probe = probe_tasks(h_read, pooled.y[pooled.read], train[pooled.read], val[pooled.read], pooled.regime[pooled.read], len(REGIME_NAMES))
    if plan_path is not None:
        plan = load_plan(plan_path)
        if plan.num_layers != h_read.shape[1] or plan.targets != targets:
            raise ValueError(f"{plan_path}: plan is for {plan.num_layers} hidden states and targets {plan.targets}, the features have {h_read.shape[1]} and {targets}")
    else:
        stained_idx = hidx[pooled.stain_rows]
        donor_idx = hidx[pooled.donor_rows]
        f_data, _, _ = data_fluorescence(h_read[stained_idx], pooled.stained, h_read[donor_idx])
        plan = derive_plan(task_probe.f_task, task_probe.f_task_regime, f_data, targets, list(TASKS))
    teacher_pred = np.full(pooled.y.shape, np.nan)
    teacher_pred[pooled.read] = task_probe.teacher_predictions(h_read)

    x_norm = Standardizer.fit(pooled.x[train])
    y_norm = Standardizer.fit(pooled.y[train])
    xs, ys, yts = x_norm.apply(pooled.x), y_norm.apply(pooled.y), y_norm.apply(teacher_pred)

    def hint_for(layers: list[int]) -> np.ndarray:
        group_mean = h_read[:, layers, :].mean(axis=1).astype(np.float64)
        pca = PCAProjection.fit(group_mean[train[pooled.read]], student_config.pca_dim)
        hint = np.full((len(xs), len(pca.scale)), np.nan)
        hint[pooled.read] = pca.apply(group_mean)
        return hint

    # -- CMM students ----------------------------------------------------------------------
    nets, slices, z_all, own_preds, own_cols = [], [], [], [], []
    bar = tqdm(plan.students, desc="students", unit="student", disable=not progress)
    for k, student in enumerate(bar):
        cols = [targets.index(t) for t in student.targets]
        weight = np.where((pooled.regime == REGIME_NAMES.index(student.regime)) if student.regime != "all" else True, 1.0, student_config.regime_weight_out)
        data = SliceData(xs, ys[:, cols], yts[:, cols], hint_for(student.layers), weight.astype(np.float64) * np.ones(len(xs)), train, val)
        trained = train_student(data, student_config, seed + k)
        z, pred = student_outputs(trained.net, xs)
        nets.append(trained.net)
        slices.append(asdict(student))
        z_all.append(z)
        own_preds.append(pred)
        own_cols.append(cols)
    bar.close()

    fitted = fit_hajek_moe([z[train] for z in z_all], ys[train], [z[val] for z in z_all], ys[val], moe_config, seed)
    with torch.no_grad():
        zt = [torch.tensor(z, dtype=torch.float32) for z in z_all]
        cmm_pred = fitted.model(zt).double().numpy()
        uniform_pred = fitted.uniform(zt).double().numpy()
    report = moe_report(fitted.model, [z[test] for z in z_all], targets, [s["name"] for s in slices])

    # -- baselines -------------------------------------------------------------------------
    predictions: dict[str, np.ndarray] = {"cmm_hajek_moe": cmm_pred, "hajek_uniform_gate": uniform_pred}
    raw, _ = raw_outputs(z_all, own_preds, own_cols, ys, train, val)
    predictions["plain_average"] = plain_average(raw)
    gate = fit_softmax_gate(xs, raw, ys, train, val, seed)
    predictions["softmax_gate_raw_outputs"] = predict_softmax_gate(gate, xs, raw)
    predictions["linear_stacking"] = predict_stacking(fit_stacking(raw, ys, train, val), raw)
    ridge = fit_ridge(xs[train], ys[train], xs[val], ys[val])
    predictions["ridge_on_x"] = ridge.predict(xs)
    baseline_nets = {}
    middle = [h_read.shape[1] // 2]
    for name, cfg, hint_layers in (
        ("direct_student_ground_truth", StudentConfig(**{**asdict(student_config), "feature_weight": 0.0, "output_weight": 0.0}), middle),
        ("student_output_kd", StudentConfig(**{**asdict(student_config), "feature_weight": 0.0}), middle),
        ("student_fitnets_feature_kd", StudentConfig(**{**asdict(student_config), "output_weight": 0.0}), middle),
    ):
        data = SliceData(xs, ys, yts, hint_for(hint_layers), np.ones(len(xs)), train, val)
        trained = train_student(data, cfg, seed + 100)
        predictions[name] = student_outputs(trained.net, xs)[1]
        baseline_nets[name] = trained.net
    predictions = {name: y_norm.invert(p) for name, p in predictions.items()}
    predictions["teacher_best_layer"] = teacher_pred

    # -- export and evaluate ---------------------------------------------------------------
    starts = [int(m["split_bounds_ns"][0]) for m in pooled.meta]
    ends = [int(m["split_bounds_ns"][3]) for m in pooled.meta]
    info = {
        "feature_spec": pooled.meta[0]["feature_spec"],
        "feature_names": pooled.feature_names,
        "targets": targets,
        "tasks": list(TASKS),
        "horizons_s": pooled.meta[0]["horizons_s"],
        "plan": json.loads(plan.to_json()),
        "teacher": {"model_id": pooled.records[0]["model_id"], "prompt_version": pooled.records[0]["prompt_version"]},
        "training_data": {
            "instruments": [m["instrument_id"] for m in pooled.meta],
            "start_ns": min(starts),
            "end_ns": max(ends),
            "train_end_ns": [int(m["split_bounds_ns"][1]) for m in pooled.meta],
            "n_train": int(train.sum()),
            "n_val": int(val.sum()),
            "seed": seed,
        },
    }
    write_bundle(out, students=list(zip(slices, nets)), moe=fitted.model, x_norm=x_norm, y_norm=y_norm, student_config=student_config, moe_config=moe_config, info=info)
    bundle = load_bundle(out)
    numpy_pred = bundle.predict(pooled.x)
    parity = float(np.abs(numpy_pred - predictions["cmm_hajek_moe"]).max() / max(np.abs(predictions["cmm_hajek_moe"]).max(), 1e-9))

    eval_rows = test & pooled.read
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, pred in predictions.items():
        results[name] = {}
        for t, target in enumerate(targets):
            overlap = _pooled_overlap(pooled, eval_rows, float(target.rsplit("_", 1)[1].rstrip("s")))
            y_true = pooled.y[eval_rows, t]
            truth = prediction_metrics(y_true, pred[eval_rows, t], float(pooled.y[train, t].mean()), overlap)
            vs_teacher = prediction_metrics(teacher_pred[eval_rows, t], pred[eval_rows, t], float(np.nanmean(teacher_pred[read_train, t])), overlap)
            results[name][target] = {
                **{f"{k}": v for k, v in truth.items()},
                **{f"teacher_{k}": v for k, v in vs_teacher.items() if k != "n"},
            }

    x_one = pooled.x[np.flatnonzero(test)[0]]
    timing = {"cmm_hajek_moe": _time_numpy(bundle.predict, x_one)}
    for name, net in baseline_nets.items():
        timing[name] = _time_numpy(_mlp_numpy(net, x_norm, y_norm), x_one)
    ridge_w = ridge.coef
    timing["ridge_on_x"] = _time_numpy(lambda v: ((v - x_norm.mean) / x_norm.scale - ridge.x_mean) / ridge.x_scale @ ridge_w + ridge.y_mean, x_one)
    teacher_ms = statistics.median([r["latency"]["ms_per_decision_batch1"] for r in pooled.records])
    timing["teacher_best_layer"] = {"us_p50": teacher_ms * 1000.0, "us_p99": None, "source": "extract.json, batch of one, measured by cmm teacher extract"}

    evaluation = {
        "command": "cmm distill --features " + " ".join(str(f) for f in features_dirs) + f" --out {out}" + (f" --plan {plan_path}" if plan_path else "") + f" --seed {seed}",
        "features": [str(Path(f)) for f in features_dirs],
        "instruments": [m["instrument_id"] for m in pooled.meta],
        "seed": seed,
        "eval_rows": "test split, samples the teacher read",
        "n_eval": int(eval_rows.sum()),
        "n_train": int(train.sum()),
        "n_train_teacher_read": int(read_train.sum()),
        "targets": targets,
        "models": results,
        "inference_time_per_decision": timing,
        "moe": report,
        "numpy_vs_torch_max_rel_diff": parity,
        "student_config": asdict(student_config),
        "moe_config": asdict(moe_config),
        "plan_students": [s["name"] for s in slices],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "eval.json").write_text(json.dumps(evaluation, indent=1, default=float))
    write_teacher_predictions(out / TEACHER_PREDICTIONS, pooled, teacher_pred, teacher_ms)
    def finite(a: np.ndarray) -> list:
        return [[float(v) if np.isfinite(v) else None for v in row] for row in np.asarray(a)]

    probe_maps = {"targets": targets, "f_task": finite(task_probe.f_task), "f_data": None, "components": None}
    if plan_path is None:
        probe_maps.update(f_data=finite(f_data), components=list(pooled.stained))
    (out / PROBE_MAPS).write_text(json.dumps(probe_maps))
    return evaluation


# The fluorescence maps the plan came from, kept beside the bundle for the backtest reports.
PROBE_MAPS = "probe_maps.json"


def write_teacher_predictions(path: Path, pooled: Pooled, teacher_pred: np.ndarray, teacher_ms: float) -> None:
    """The teacher's own predictions at every sample it read, for the teacher-direct baseline.

    Cached so a backtest can let the LLM quote without running it, while charging its measured
    per-decision latency (``teacher_ms_per_decision`` in the file's metadata). Not part of the
    bundle's manifest: the runtime never needs it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.flatnonzero(pooled.read)
    ids = [m["instrument_id"] for m in pooled.meta]
    columns = {
        "instrument_id": pa.array([ids[i] for i in pooled.instrument[rows]]),
        "ts_ns": pa.array(pooled.ts[rows].astype(np.int64)),
        "split": pa.array(pooled.split[rows].astype(np.int8)),
    }
    for t, name in enumerate(pooled.target_names):
        columns[name] = pa.array(teacher_pred[rows, t])
    table = pa.table(columns).replace_schema_metadata({"teacher_ms_per_decision": repr(float(teacher_ms))})
    pq.write_table(table, path)


def _unused(plan: Plan) -> None:  # pragma: no cover - keeps Plan imported for type readers
    del plan
