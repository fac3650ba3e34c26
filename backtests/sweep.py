"""``cmm sweep``: a grid of backtests (configs x strategies x fill models), locally or on Ray.

Each task is an ordinary ``cmm backtest`` run (same code, same ``results.json``) into its own folder
under ``--out``; a folder that already holds ``results.json`` is skipped, so an interrupted sweep
resumes. A failed task is retried once, then reported as failed in ``sweep.json`` (never dropped).
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
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backtests.config import ConfigError, load_run_config

_SWEEP_KEYS = {"configs", "strategies", "fill_models"}


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
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key (known: {', '.join(sorted(_SWEEP_KEYS))})")
    configs = raw.get("configs")
    if not isinstance(configs, list) or not configs:
        raise ConfigError(f"{path}: configs: expected a non-empty list of config files")
    strategies = raw.get("strategies") or {None: None}
    if not isinstance(strategies, dict):
        raise ConfigError(f"{path}: strategies: expected a mapping name -> params")
    fills = raw.get("fill_models") or [None]
    if not isinstance(fills, list):
        raise ConfigError(f"{path}: fill_models: expected a list")
    tasks = []
    for config in configs:
        file = (path.parent / config).resolve()
        for strategy, params in strategies.items():
            for fill in fills:
                overrides: dict[str, Any] = {}
                if strategy is not None:
                    overrides["strategy"] = {"name": strategy, "params": dict(params or {})}
                if fill is not None:
                    overrides["venue"] = {"fill_model": dict(fill)}
                name = f"{file.stem}-{strategy or 'config'}-{_fill_label(fill)}"
                overrides["name"] = name
                load_run_config(file, overrides)  # validate now, not halfway through the sweep
                tasks.append(Task(name, str(file), overrides))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two tasks would share a name (repeated config or strategy?)")
    return tasks


def run_task(task: Task, out_dir: str) -> dict[str, Any]:
    """One backtest; importable by Ray workers and subprocesses alike."""
    from backtests.runner import run_backtest

    spec = load_run_config(task.config, task.overrides)
    results = run_backtest(spec, Path(out_dir) / task.name, progress=False)
    return {"name": task.name, "pnl": results["metrics"]["pnl"], "wall_seconds": results["wall_seconds"]}


def _run_local(pending: list[Task], out: Path, status: dict[str, Any], save) -> None:
    for i, task in enumerate(pending, 1):
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                info = run_task(task, str(out))
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
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or 2, include_dashboard=False, log_to_driver=False)
            started_here = True
    try:
        remote = ray.remote(max_retries=1, retry_exceptions=True, num_cpus=1)(run_task)
        futures = {remote.remote(task, str(out)): task for task in pending}
        done = 0
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            task = futures.pop(ready[0])
            done += 1
            try:
                status[task.name] = {"status": "ok", **ray.get(ready[0])}
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    status_path = out / "sweep.json"
    status: dict[str, Any] = {}
    for task in tasks:
        if (out / task.name / "results.json").is_file():
            status[task.name] = {"status": "ok", "resumed": True}

    def save() -> None:
        status_path.write_text(json.dumps({"sweep": str(sweep_file), "tasks": status}, indent=1))

    pending = [t for t in tasks if t.name not in status]
    print(f"sweep {sweep_file}: {len(tasks)} backtests, {len(tasks) - len(pending)} already done", flush=True)
    save()
    if ray_address or ray_workers:
        _run_ray(pending, out, status, save, ray_address, ray_workers)
    else:
        _run_local(pending, out, status, save)
    finished = [out / t.name for t in tasks if status.get(t.name, {}).get("status") == "ok"]
    failed = [t.name for t in tasks if status.get(t.name, {}).get("status") != "ok"]
    if finished:
        from backtests.compare import markdown_table, load_results, run_compare

        run_compare(finished, out)
        if markdown:
            command = f"cmm sweep {sweep_file} --out {out} --markdown {markdown}"
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
