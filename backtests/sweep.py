"""``cmm sweep``: a grid of backtests (configs x strategies x fill models), locally or on Ray.

Each task is an ordinary ``cmm backtest`` run (same code, same ``results.json``) into its own folder
under ``--out``; a folder that already holds ``results.json`` is skipped, so an interrupted sweep
resumes (unless the folder's ``sweep-task.json`` shows that the task's merged config has changed since:
then it runs again). A failed task is retried once, then reported as failed in ``sweep.json``; every
task of the sweep is listed there (``ok``, ``failed``, or ``pending`` when the sweep was interrupted).
On Ray, workers run each backtest in a private temporary folder and send the files back; the driver
writes them (``results.json`` last), so only the catalog and the bundle must be visible to the workers.
The finished runs are compared with ``cmm compare`` into ``--out``; ``--markdown`` also writes the
comparison as a document (``docs/results.md`` is made this way).

Sweep file::

    configs: [real/btcusdt-perp.yaml, real/ethusdt-perp.yaml]   # relative to the sweep file
    strategies:                       # name -> params merged over each config's strategy params
      cmm: {}
      fixed_spread: {half_spread_ticks: 1}
    fill_models:                      # optional; default: each config's own
      - {name: queue-risk-averse}
      - {name: queue-power, n: 3}
    overrides: {time_range: {start_fraction: 0.05, end_fraction: 0.6}}   # optional, every task
    per_config:                       # optional: per config, per strategy params (tuned values)
      real/btcusdt-perp.yaml: {glft: {gamma: 0.001}}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backtests.config import ConfigError, RunSpec, load_run_config, merge_config

_SWEEP_KEYS = {"configs", "strategies", "fill_models", "overrides", "per_config"}
TASK_FILE = "sweep-task.json"  # in each run folder: the merged config it ran (resume reruns a changed task)


@dataclass(frozen=True)
class Task:
    name: str
    config: str  # absolute path
    overrides: dict[str, Any]


def _fill_label(fill: dict[str, Any] | None) -> str:
    if not fill:
        return "config"
    extra = "".join(f"{k}{v}" for k, v in sorted(fill.items()) if k != "name")
    return f"{fill['name']}{('-' + extra) if extra else ''}"


def load_sweep(path: str | Path) -> list[Task]:
    """The tasks of a sweep file, every config validated before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = set(raw) - _SWEEP_KEYS
    if unknown:
        raise ConfigError(f"{path}: {min(unknown)}: unknown key (known: {', '.join(sorted(_SWEEP_KEYS))})")
    configs = raw.get("configs")
    if not isinstance(configs, list) or not configs:
        raise ConfigError(f"{path}: configs: expected a non-empty list of config files")
    strategies = raw.get("strategies") or {None: None}
    if not isinstance(strategies, dict):
        raise ConfigError(f"{path}: strategies: expected a mapping name -> params")
    fills = raw.get("fill_models") or [None]
    if not isinstance(fills, list):
        raise ConfigError(f"{path}: fill_models: expected a list")
    common = raw.get("overrides") or {}
    per_config = raw.get("per_config") or {}
    if not isinstance(common, dict) or not isinstance(per_config, dict):
        raise ConfigError(f"{path}: overrides and per_config: expected mappings")
    for config in per_config:
        if config not in configs:
            raise ConfigError(f"{path}: per_config.{config}: not one of the sweep's configs")
    tasks = []
    for config in configs:
        file = (path.parent / config).resolve()
        own = per_config.get(config) or {}
        for strategy, choices in strategies.items():
            # a list of parameter sets is a grid: one task per set, named after what varies
            grid = choices if isinstance(choices, list) else [choices]
            for params, fill in ((p, f) for p in grid for f in fills):
                overrides: dict[str, Any] = dict(common)
                if strategy is not None:
                    tuned = (own.get(strategy) or {}) if isinstance(own, dict) else {}
                    overrides["strategy"] = {"name": strategy, "params": {**(params or {}), **tuned}}
                if fill is not None:
                    overrides["venue"] = {"fill_model": dict(fill)}
                varying = {k for p in grid for k in (p or {}) if len({repr((q or {}).get(k)) for q in grid}) > 1}
                label = "".join(f"-{k}{v}" for k, v in sorted((params or {}).items()) if k in varying)
                name = f"{file.stem}-{strategy or 'config'}{label}-{_fill_label(fill)}"
                overrides["name"] = name
                load_run_config(file, overrides)  # validate now, not halfway through the sweep
                tasks.append(Task(name, str(file), overrides))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two tasks would share a name (repeated config or strategy?)")
    return tasks


def _raw_config(task: Task) -> dict[str, Any]:
    """The task's config as merged YAML (file + overrides): what its results depend on."""
    return merge_config(yaml.safe_load(Path(task.config).read_text()) or {}, task.overrides)


def _fingerprint(task: Task) -> dict[str, Any]:
    return json.loads(json.dumps({"config": task.config, "merged": _raw_config(task)}, sort_keys=True, default=str))


def _finished(folder: Path) -> bool:
    """A readable ``results.json`` with metrics (results are stored with ``results.json`` last, so a
    run interrupted while its folder was written is not taken for a finished one)."""
    try:
        return "metrics" in json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return False


def _resume_state(task: Task, folder: Path) -> str | None:
    """None: run the task; else why it is skipped or rerun ("done" / "changed")."""
    if not _finished(folder):
        return None
    stamp = folder / TASK_FILE
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) != _fingerprint(task):
                return "changed"
        except ValueError:
            return "changed"
    return "done"


def execute(spec: RunSpec) -> dict[str, Any]:
    """One backtest into a private temporary folder; returns its summary and its files (bytes).

    This is what a Ray worker runs: the driver stores the files, so the output folder need not be
    shared with the workers (the catalog and the bundle must be, at the same absolute paths)."""
    from backtests.runner import run_backtest

    with tempfile.TemporaryDirectory(prefix="cmm-sweep-") as tmp:
        results = run_backtest(spec, tmp, progress=False)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    return {"name": spec.name, "pnl": results["metrics"]["pnl"], "wall_seconds": results["wall_seconds"], "files": files}


def store(out: Path, task: Task, files: dict[str, bytes]) -> None:
    """Write a run's files into ``out/<task>``, each by rename, ``results.json`` last (resume marker)."""
    folder = out / task.name
    folder.mkdir(parents=True, exist_ok=True)
    files = {**files, TASK_FILE: json.dumps(_fingerprint(task), indent=1).encode()}
    for name in sorted(files, key=lambda n: n == "results.json"):
        tmp = folder / f".{name}.partial"
        tmp.write_bytes(files[name])
        os.replace(tmp, folder / name)


def run_task(task: Task, out_dir: str | Path) -> dict[str, Any]:
    """One backtest of a sweep, stored into ``out_dir/<task name>``; returns its summary."""
    info = execute(load_run_config(task.config, task.overrides))
    store(Path(out_dir), task, info.pop("files"))
    return info


def _run_local(pending: list[Task], out: Path, status: dict[str, Any], save) -> None:
    for i, task in enumerate(pending, 1):
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                info = run_task(task, out)
                status[task.name] = {"status": "ok", "attempts": attempt, **info}
                break
            except Exception as exc:  # noqa: BLE001 - reported per task, the sweep goes on
                status[task.name] = {"status": "failed", "attempts": attempt, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
        print(f"[{i}/{len(pending)}] {task.name}: {status[task.name]['status']} ({time.perf_counter() - started:.1f} s)", flush=True)
        save()


def _run_ray(pending: list[Task], out: Path, status: dict[str, Any], save, address: str | None, workers: int | None) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("install the cluster extra: pip install -e .[cluster]") from None
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # address="local": a private instance even where `ray start --head` runs on this machine
            # (a plain ray.init() would join that cluster and refuse num_cpus).
            ray.init(address="local", num_cpus=workers or 2, include_dashboard=False, log_to_driver=False)
            started_here = True
    try:
        # The driver resolves every config (paths included); workers get the validated spec, so the
        # config files need not exist on the workers. A task whose worker dies is retried once.
        specs = {task.name: load_run_config(task.config, task.overrides) for task in pending}
        remote = ray.remote(max_retries=1, retry_exceptions=True, num_cpus=1)(execute)
        queue = list(pending)
        limit = workers or len(pending)  # --ray-workers also caps the tasks in flight on a cluster
        futures: dict[Any, Task] = {}
        done = 0
        while queue or futures:
            while queue and len(futures) < limit:
                task = queue.pop(0)
                futures[remote.remote(specs[task.name])] = task
            ready, _ = ray.wait(list(futures), num_returns=1)
            task = futures.pop(ready[0])
            done += 1
            try:
                info = ray.get(ready[0])
                store(out, task, info.pop("files"))
                status[task.name] = {"status": "ok", **info}
            except Exception as exc:  # noqa: BLE001 - a task that failed twice (or lost its worker twice)
                status[task.name] = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[-2000:]}"}
            print(f"[{done}/{len(pending)}] {task.name}: {status[task.name]['status']}", flush=True)
            save()
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    sweep_file: str | Path,
    out: str | Path,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    markdown: str | Path | None = None,
) -> dict[str, Any]:
    tasks = load_sweep(sweep_file)
    command = f"cmm sweep {sweep_file} --out {out} --markdown {markdown}"  # as typed, before paths resolve
    if ray_workers is not None and ray_workers < 1:
        raise ConfigError(f"--ray-workers: expected at least 1, got {ray_workers}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "sweep.json"
    status: dict[str, Any] = {}
    pending: list[Task] = []
    for task in tasks:
        state = _resume_state(task, out / task.name)
        if state == "done":
            status[task.name] = {"status": "ok", "resumed": True}
        else:
            if state == "changed":
                print(f"{task.name}: config changed since its stored run, running it again", flush=True)
            status[task.name] = {"status": "pending"}
            pending.append(task)

    def save() -> None:
        tmp = status_path.with_name(".sweep.json.partial")
        tmp.write_text(json.dumps({"sweep": str(sweep_file), "tasks": status}, indent=1))
        os.replace(tmp, status_path)

    print(f"sweep {sweep_file}: {len(tasks)} backtests, {len(tasks) - len(pending)} already done", flush=True)
    save()
    try:
        if pending and (ray_address or ray_workers):
            _run_ray(pending, out, status, save, ray_address, ray_workers)
        elif pending:
            _run_local(pending, out, status, save)
    finally:
        save()  # an interrupted sweep leaves its unfinished tasks as "pending", never absent
    finished = [out / t.name for t in tasks if status[t.name]["status"] == "ok"]
    failed = [t.name for t in tasks if status[t.name]["status"] != "ok"]
    if finished:
        from backtests.compare import load_results, markdown_table, run_compare

        run_compare(finished, out)
        if markdown:
            write_results_doc(Path(markdown), markdown_table(load_results(finished)), command, failed)
    if failed:
        print(f"{len(failed)} backtests failed: {', '.join(failed)} (details in {status_path})", flush=True)
    return {"tasks": status, "failed": failed, "out": str(out)}


def write_results_doc(path: Path, table: str, command: str, failed: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Backtest results on the real Binance captures\n\n"
        f"Generated by `{command}` (do not edit by hand).\n\n"
        "Each run trades the last 40 % of a capture (the bundle was trained on the first 60 %; its\n"
        "early stopping saw the 60-80 % slice), starting from the capture's snapshot so the book and the\n"
        "features are warm. PnL is marked to mid, net of fees, in the settlement currency; \"no rebates\"\n"
        "floors the maker fee at zero. Fills come from the named fill model (`docs/fill-model.md`).\n"
        "The captures are minutes long: these are descriptions of single runs, not strategy estimates.\n\n"
        + table
    )
    if failed:
        text += "\nFailed runs (see sweep.json): " + ", ".join(failed) + "\n"
    path.write_text(text)
