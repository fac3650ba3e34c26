"""``cmm sweep`` on the real captures: Ray gives the runs one-by-one backtests give, a killed worker
is retried or reported, and an interrupted sweep resumes.

The configs fix ``decision_latency_us``: by default the strategy charges its *measured* compute time
as latency (``charge_latency=True``), which moves order times by wall-clock noise and makes two runs
of one config differ. With a fixed cost the engine is deterministic; only the decision-latency
metrics (``decision_us_p50``/``p99``, ``decision_costs_ns`` in record.npz) and ``wall_seconds`` still
measure the machine and are left out of the comparisons.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from backtests.config import ConfigError
from backtests.sweep import TASK_FILE, _resume_state, load_sweep, run_sweep, store
from catalog.realdata import capture_paths, missing_reason

pytestmark = pytest.mark.real_data

PIDS_ENV = "CMM_SWEEP_TEST_PIDS"
WINDOW = {"start_fraction": 0.3, "end_fraction": 0.45}
LATENCY_US = 100.0  # fixed decision cost: see the module docstring
BASE_PARAMS = {
    "btc": {"instrument_id": "BTCUSDT-PERP.BINANCE", "params": {"q_max": 0.05, "min_size": 0.001, "max_size": 0.01, "order_size": 0.002}},
    "eth": {"instrument_id": "ETHUSDT-PERP.BINANCE", "params": {"q_max": 1.0, "min_size": 0.01, "max_size": 0.2, "order_size": 0.05}},
}
NOT_COMPARED = {"wall_seconds", "config"}  # wall clock; the file the run was read from
NOT_COMPARED_METRICS = {"decision_us_p50", "decision_us_p99"}  # measured compute time


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from catalog.binance_ws import read_binance_ws
    from catalog.formats import IngestOptions
    from catalog.ingest import write_result

    folder = tmp_path_factory.mktemp("sweep-catalog") / "catalog"
    for instrument in ("BTCUSDT-PERP.BINANCE", "ETHUSDT-PERP.BINANCE"):
        write_result(read_binance_ws(capture_paths(instrument), IngestOptions()), folder)
    return folder


def _config(key: str, catalog: Path, bundle: Path, strategy: str = "cmm", extra: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
    base = BASE_PARAMS[key]
    raw: dict[str, Any] = {
        "catalog": str(catalog),
        "instrument_id": base["instrument_id"],
        "time_range": dict(WINDOW),
        "bundle": str(bundle),
        "venue": {"starting_balances": ["100000 USDT"], "fees": {"maker": -0.00005, "taker": 0.0004}, "fill_model": {"name": "nautilus-default"}},
        "strategy": {"name": strategy, "params": {**base["params"], "decision_latency_us": LATENCY_US, **(extra or {})}},
    }
    if name:
        raw["name"] = name
    return raw


@pytest.fixture(scope="module")
def sweep_dir(real_catalog: Path, quick_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """btc.yaml, eth.yaml (cmm) and sweep.yaml: both configs x {cmm, fixed_spread}."""
    folder = tmp_path_factory.mktemp("sweep-configs")
    for key in BASE_PARAMS:
        (folder / f"{key}.yaml").write_text(yaml.safe_dump(_config(key, real_catalog, quick_bundle)))
    sweep = {"configs": ["btc.yaml", "eth.yaml"], "strategies": {"cmm": {}, "fixed_spread": {"half_spread_ticks": 2.0}}}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return folder


def _same(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths where two JSON values differ (floats to 1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


def _comparable(results: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in results.items() if k not in NOT_COMPARED}
    out["metrics"] = {k: v for k, v in results["metrics"].items() if k not in NOT_COMPARED_METRICS}
    return out


@pytest.mark.slow
def test_ray_sweep_equals_one_by_one_backtests(sweep_dir: Path, real_catalog: Path, quick_bundle: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from backtests.runner import run_backtest

    assert not ray.is_initialized()
    result = run_sweep(sweep_dir / "sweep.yaml", tmp_path / "ray", ray_workers=2)
    assert not ray.is_initialized(), "the sweep stops the local Ray instance it started"
    names = [t.name for t in load_sweep(sweep_dir / "sweep.yaml")]
    assert len(names) == 4 and result["failed"] == []
    sweep_json = json.loads((tmp_path / "ray" / "sweep.json").read_text())["tasks"]
    assert set(sweep_json) == set(names) and all(s["status"] == "ok" and not s.get("resumed") for s in sweep_json.values())

    # The reference: each combination written out as a plain config (merged by hand, not by the
    # sweep) and run one by one in this process, as `cmm backtest` does.
    fills = 0
    for name in names:
        key, strategy = name.split("-")[0], name.split("-")[1]
        extra = {"half_spread_ticks": 2.0} if strategy == "fixed_spread" else {}
        file = tmp_path / f"{name}.yaml"
        file.write_text(yaml.safe_dump(_config(key, real_catalog, quick_bundle, strategy, extra, name=name)))
        reference = run_backtest(file, tmp_path / "one" / name, progress=False)
        swept = json.loads((tmp_path / "ray" / name / "results.json").read_text())
        expected = json.loads((tmp_path / "one" / name / "results.json").read_text())
        assert expected["metrics"]["pnl"] == reference["metrics"]["pnl"]
        assert swept["strategy"] == strategy and swept["name"] == name
        assert swept["strategy_params"]["decision_latency_us"] == LATENCY_US
        differences = _same(_comparable(swept), _comparable(expected), name)
        assert not differences, differences
        with np.load(tmp_path / "ray" / name / "record.npz") as a, np.load(tmp_path / "one" / name / "record.npz") as b:
            assert set(a.files) == set(b.files)
            for array in a.files:
                if array != "decision_costs_ns":  # measured compute time
                    np.testing.assert_array_equal(a[array], b[array], err_msg=f"{name}: {array}")
        assert (tmp_path / "ray" / name / "segments.json").read_text() == (tmp_path / "one" / name / "segments.json").read_text()
        fills += swept["metrics"]["fills"]
    assert fills > 20, "the window is too quiet to compare anything"
    assert (tmp_path / "ray" / "compare.md").is_file()


# -- killing workers -----------------------------------------------------------------------------

def _kill_hook() -> None:
    """Ray worker setup hook: every backtest writes ``<name>.<attempt>.pid`` (this worker's pid)
    before it starts and ``<name>.<attempt>.done`` when it returns, into $CMM_SWEEP_TEST_PIDS."""
    import backtests.runner

    folder = Path(os.environ[PIDS_ENV])
    original = backtests.runner.run_backtest

    def run_backtest(spec, out_dir=None, progress=True):
        attempt = 1
        while True:
            try:
                fd = os.open(folder / f"{spec.name}.{attempt}.pid", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                attempt += 1
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        results = original(spec, out_dir, progress)
        (folder / f"{spec.name}.{attempt}.done").write_text("")
        return results

    backtests.runner.run_backtest = run_backtest


class Killer(threading.Thread):
    """Kills the worker running attempt N of a task ``delay`` seconds after the attempt started."""

    def __init__(self, folder: Path, targets: set[tuple[str, int]], delay: float = 0.7) -> None:
        super().__init__(daemon=True)
        self.folder, self.targets, self.delay = folder, set(targets), delay
        self.killed: list[tuple[str, int, int]] = []
        self.late: list[tuple[str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while self.targets and not self.stop.is_set():
            for name, attempt in sorted(self.targets):
                pid_file = self.folder / f"{name}.{attempt}.pid"
                if pid_file.is_file() and pid_file.read_text() and time.time() - pid_file.stat().st_mtime >= self.delay:
                    self.targets.discard((name, attempt))
                    if (self.folder / f"{name}.{attempt}.done").exists():
                        self.late.append((name, attempt))  # finished already: killing now would hit another task
                        continue
                    pid = int(pid_file.read_text())
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((name, attempt, pid))
            time.sleep(0.05)


def _attempts(folder: Path, name: str) -> list[int]:
    return sorted(int(p.read_text()) for p in folder.glob(f"{name}.*.pid"))


@pytest.mark.slow
def test_killed_workers_are_retried_or_reported_and_the_sweep_resumes(sweep_dir: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    pids = tmp_path / "pids"
    pids.mkdir()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"configs": [str(sweep_dir / "btc.yaml"), str(sweep_dir / "eth.yaml")], "strategies": {"fixed_spread": {}}}))
    retried, lost = "btc-fixed_spread-config", "eth-fixed_spread-config"
    assert {t.name for t in load_sweep(sweep)} == {retried, lost}
    out = tmp_path / "out"
    assert not ray.is_initialized()
    # The hook lives in this file: the workers find the tests package through PYTHONPATH.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": f"{__name__}._kill_hook", "env_vars": {PIDS_ENV: str(pids), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}},
    )
    try:
        # `retried` loses its worker once (Ray runs it again), `lost` on both attempts (reported).
        killer = Killer(pids, {(retried, 1), (lost, 1), (lost, 2)})
        killer.start()
        try:
            first = run_sweep(sweep, out, ray_workers=2)
        finally:
            killer.stop.set()
            killer.join()
        assert killer.late == [] and len(killer.killed) == 3, (killer.killed, killer.late)
        status = json.loads((out / "sweep.json").read_text())["tasks"]
        assert set(status) == {retried, lost}, "every task is in sweep.json"
        assert status[retried]["status"] == "ok" and (out / retried / "results.json").is_file()
        assert len(set(_attempts(pids, retried))) == 2, "the retry ran in a fresh worker"
        assert status[lost]["status"] == "failed" and "WorkerCrashedError" in status[lost]["error"], status[lost]
        assert first["failed"] == [lost] and not (out / lost / "results.json").exists()
        assert len(_attempts(pids, lost)) == 2, "one retry, then reported"

    finally:
        ray.shutdown()

    # Resume, through the CLI and this time without Ray: the finished run is skipped (its files are
    # untouched), the failed one runs.
    from backtests.cli import main as cmm

    kept = (out / retried / "results.json").stat()
    assert cmm(["sweep", str(sweep), "--out", str(out)]) == 0
    status = json.loads((out / "sweep.json").read_text())["tasks"]
    assert status[retried] == {"status": "ok", "resumed": True}
    assert status[lost]["status"] == "ok" and status[lost]["attempts"] == 1 and not status[lost].get("resumed")
    assert (out / retried / "results.json").stat().st_mtime_ns == kept.st_mtime_ns
    assert (out / lost / "results.json").is_file() and (out / lost / TASK_FILE).is_file()
    assert {r["name"] for r in json.loads((out / "compare.json").read_text())} == {retried, lost}
    assert len(_attempts(pids, retried)) == 2 and len(_attempts(pids, lost)) == 2  # no Ray worker ran anything


# -- resume rules (no backtest needed) ------------------------------------------------------------

def test_resume_skips_only_complete_unchanged_runs(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"configs": [str(sweep_dir / "btc.yaml")], "strategies": {"fixed_spread": {"half_spread_ticks": 1.0}}}))
    (task,) = load_sweep(sweep)
    folder = tmp_path / "out" / task.name
    assert _resume_state(task, folder) is None
    store(tmp_path / "out", task, {"results.json": json.dumps({"metrics": {"pnl": 1.0}}).encode(), "record.npz": b"x"})
    assert (folder / TASK_FILE).is_file() and not list(folder.glob(".*partial"))
    assert _resume_state(task, folder) == "done"
    # The same task with other parameters is not the stored run.
    sweep.write_text(yaml.safe_dump({"configs": [str(sweep_dir / "btc.yaml")], "strategies": {"fixed_spread": {"half_spread_ticks": 3.0}}}))
    (changed,) = load_sweep(sweep)
    assert changed.name == task.name and _resume_state(changed, folder) == "changed"
    # A results.json cut short (killed while writing) is not a finished run.
    (folder / "results.json").write_text('{"metrics": {"pn')
    assert _resume_state(task, folder) is None
    # A folder from a plain `cmm backtest` (no sweep-task.json) counts as done, as documented.
    (folder / TASK_FILE).unlink()
    (folder / "results.json").write_text(json.dumps({"metrics": {}}))
    assert _resume_state(task, folder) == "done"


def test_bad_worker_count_is_refused(sweep_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ray-workers"):
        run_sweep(sweep_dir / "sweep.yaml", tmp_path / "out", ray_workers=0)
