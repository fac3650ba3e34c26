"""Teacher extraction over Ray actors: the same store and the same features as the in-process path.

The in-process run with the tiny random Llama is the reference. Prompts have different lengths, so
batches are left-padded and a different batch composition would move features by a few float32
ulps (~3e-5 here); matching to 1e-5 therefore also checks that Ray forms the same batches.
Tests that need Ray skip without the cluster extra; the ones about its absence run everywhere.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backtests.cli import main as cmm
from catalog.binance_ws import read_binance_ws
from catalog.formats import IngestOptions
from catalog.ingest import write_result
from tests.test_samples import _staircase_capture
from tests.tiny_models import DIGITS, WORDS, build_tiny_model
from training.teacher import FeatureCache, extract_hidden_states, load_teacher
from training.teacher.distributed import (
    ClusterError,
    RayOptions,
    RayTeacherPool,
    local_init_kwargs,
    require_ray,
    resolve_workers,
)

BATCH = 3
N_PROMPTS = 14  # five batches: 3+3+3+3+2
N_BATCHES = math.ceil(N_PROMPTS / BATCH)
KEYS = [int(k) for k in np.random.default_rng(7).permutation(1000)[:N_PROMPTS]]  # not sorted: order matters


def _prompts(n: int) -> list[str]:
    rng = np.random.default_rng(11)
    vocab = WORDS + DIGITS
    return [" ".join(rng.choice(vocab, size=3 + (i * 7) % 40)) for i in range(n)]


PROMPTS = _prompts(N_PROMPTS)


def _batches(cache: FeatureCache) -> list[list[int]]:
    """Key groups of the stored shards, in the order they were committed."""
    lines = cache.index_path.read_text().splitlines()
    return [json.loads(line)["keys"] for line in sorted(lines, key=lambda line: json.loads(line)["seq"])]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), max_positions=512)


@pytest.fixture(scope="module")
def reference(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    teacher = load_teacher(tiny)
    cache = FeatureCache(tmp_path_factory.mktemp("reference"), teacher.model_id, "v1")
    extract_hidden_states(teacher, PROMPTS, KEYS, cache, batch_size=BATCH, progress=False)
    return cache


@pytest.fixture(scope="module", autouse=True)
def _stop_ray_at_the_end():
    yield
    if "ray" in sys.modules and sys.modules["ray"] is not None and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


@pytest.fixture
def ray_up():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


def _assert_same_as_reference(cache: FeatureCache, reference: FeatureCache) -> None:
    keys, feats = cache.load()
    ref_keys, ref_feats = reference.load()
    assert keys.tolist() == ref_keys.tolist()
    np.testing.assert_allclose(feats, ref_feats, atol=1e-5, rtol=0)
    assert _batches(cache) == _batches(reference)  # same batches, committed in the same order


def test_two_actor_extraction_matches_the_single_process_path(ray_up, tiny, reference, tmp_path) -> None:
    with RayTeacherPool(tiny, RayOptions(workers=2)) as pool:
        assert len({info["pid"] for info in pool.worker_info}) == 2  # two actors, each with its own teacher
        assert (pool.model_id, pool.num_layers, pool.hidden_size) == (reference.model_id, 3, 32)
        cache = FeatureCache(tmp_path, pool.model_id, "v1")
        per_worker = pool.extract(PROMPTS, KEYS, cache, batch_size=BATCH, progress=False)
        assert sum(per_worker) == N_BATCHES and min(per_worker) >= 1  # both actors did work
        _assert_same_as_reference(cache, reference)

        index_before = cache.index_path.read_bytes()
        assert pool.extract(PROMPTS, KEYS, FeatureCache(tmp_path, pool.model_id, "v1"), batch_size=BATCH, progress=False) == [0, 0]
        assert cache.index_path.read_bytes() == index_before  # a second run finds everything stored
    assert ray_up.is_initialized()  # the pool did not stop a Ray it had not started


def test_ray_resumes_a_store_that_an_in_process_run_started(ray_up, tiny, reference, tmp_path) -> None:
    cache = FeatureCache(tmp_path, reference.model_id, "v1")
    extract_hidden_states(load_teacher(tiny), PROMPTS, KEYS, cache, batch_size=BATCH, progress=False, max_batches=2)
    with RayTeacherPool(tiny, RayOptions(workers=2)) as pool:
        overlong = FeatureCache(tmp_path, pool.model_id, "overlong")
        with pytest.raises(ValueError, match=r"key 9 has 600 tokens.*limit of 512"):  # the worker's own error
            pool.extract(["bid ask", " ".join(["tick"] * 600)], [8, 9], overlong, progress=False)
        assert overlong.done_keys() == set()  # refused before any forward pass
        per_worker = pool.extract(PROMPTS, KEYS, FeatureCache(tmp_path, pool.model_id, "v1"), batch_size=BATCH, progress=False)
    assert sum(per_worker) == N_BATCHES - 2
    _assert_same_as_reference(cache, reference)


def _kill(ray, actor, timeout_s: float = 30.0) -> None:
    """``ray.kill`` is asynchronous: a call made right after it can still be answered."""
    ray.kill(actor)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.describe.remote(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    pytest.fail("a killed Ray actor kept answering")


def test_a_crash_keeps_finished_shards_and_the_rerun_matches(ray_up, tiny, reference, tmp_path) -> None:
    ray = ray_up
    cache = FeatureCache(tmp_path, reference.model_id, "v1")
    expected = _batches(reference)
    with RayTeacherPool(tiny, RayOptions(workers=2)) as pool:
        stored: list[Path] = []

        def interrupt_after_two(shard: Path) -> None:
            stored.append(shard)
            if len(stored) == 2:
                raise KeyboardInterrupt("simulated Ctrl-C in the driver")

        with pytest.raises(KeyboardInterrupt):
            pool.extract(PROMPTS, KEYS, cache, batch_size=BATCH, progress=False, on_shard=interrupt_after_two)
        assert _batches(cache) == expected[:2]  # batches finished out of order were not committed

        _kill(ray, pool.workers[1])
        with pytest.raises(ClusterError, match=r"worker 1 died.*rerun the same command to resume"):
            pool.extract(PROMPTS, KEYS, FeatureCache(tmp_path, pool.model_id, "v1"), batch_size=BATCH, progress=False)
    kept = _batches(cache)
    assert 2 <= len(kept) < N_BATCHES and kept == expected[: len(kept)]  # still a prefix of the batches
    cache.load()  # and every kept shard is readable

    with RayTeacherPool(tiny, RayOptions(workers=2)) as pool:
        per_worker = pool.extract(PROMPTS, KEYS, FeatureCache(tmp_path, pool.model_id, "v1"), batch_size=BATCH, progress=False)
    assert sum(per_worker) == N_BATCHES - len(kept)
    _assert_same_as_reference(cache, reference)


def test_a_model_a_worker_cannot_load_raises_the_workers_own_error(ray_up, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        RayTeacherPool(tmp_path / "no-such-model", RayOptions(workers=1))


def _stored_features(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every feature store under a features directory, by relative path."""
    stores = {}
    for meta_path in sorted(out.rglob("meta.json")):
        meta = json.loads(meta_path.read_text())
        cache = FeatureCache(meta_path.parents[2], meta["model_id"], meta["prompt_version"])
        stores[str(meta_path.parent.relative_to(out))] = cache.load()
    return stores


def test_cli_ray_workers_starts_local_ray_and_matches_the_in_process_run(tiny, tmp_path, capsys) -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()  # this test is about the command starting (and stopping) its own instance
    result = read_binance_ws([_staircase_capture(tmp_path / "stairs.gz", seconds=60)], IngestOptions())
    write_result(result, tmp_path / "catalog")
    base = ["teacher", "extract", "--catalog", str(tmp_path / "catalog"), "--instrument-id", "BTCUSDT-PERP.BINANCE", "--model", str(tiny)]
    base += ["--max-samples", "30", "--stain-samples", "4", "--batch-size", "7", "--json"]
    assert cmm([*base, "--out", str(tmp_path / "local")]) == 0
    assert cmm([*base, "--out", str(tmp_path / "ray"), "--ray-workers", "2"]) == 0
    assert not ray.is_initialized()

    record = json.loads((tmp_path / "ray" / "extract.json").read_text())
    assert record["ray"]["workers"] == 2 and record["ray"]["address"] is None and record["device"] == "cpu"
    assert json.loads((tmp_path / "local" / "extract.json").read_text())["ray"] is None
    local, remote = _stored_features(tmp_path / "local"), _stored_features(tmp_path / "ray")
    assert len(local) == 8 and local.keys() == remote.keys()  # teacher_cache + 7 stain caches
    for name, (keys, feats) in local.items():
        assert remote[name][0].tolist() == keys.tolist() and len(keys) > 0, name
        np.testing.assert_allclose(remote[name][1], feats, atol=1e-5, rtol=0, err_msg=name)
    capsys.readouterr()


# --------------------------------------------------------------------- no Ray needed below


def test_missing_ray_names_the_cluster_extra(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(ClusterError, match=r"pip install -e \.\[cluster\]"):
        require_ray()
    code = cmm(["teacher", "extract", "--catalog", str(tmp_path / "nowhere"), "--instrument-id", "X", "--out", str(tmp_path / "f"), "--ray-workers", "2"])
    assert code == 2
    assert "pip install -e .[cluster]" in capsys.readouterr().err  # refused before reading the catalog


def test_worker_flags_without_ray_and_cuda_without_gpus_are_refused(tmp_path, capsys) -> None:
    code = cmm(["teacher", "extract", "--catalog", str(tmp_path), "--instrument-id", "X", "--out", str(tmp_path / "f"), "--num-gpus-per-worker", "1"])
    assert code == 2 and "--ray-address or --ray-workers" in capsys.readouterr().err
    with pytest.raises(ClusterError, match="--num-gpus-per-worker > 0"):
        RayTeacherPool(None, RayOptions(workers=1), device="cuda")


def test_worker_count_follows_the_cluster_and_refuses_what_cannot_be_scheduled() -> None:
    cluster = {"CPU": 32.0, "GPU": 4.0}
    assert resolve_workers(RayOptions(num_gpus_per_worker=1), cluster) == 4
    assert resolve_workers(RayOptions(num_gpus_per_worker=0.5), cluster) == 8  # two teachers per GPU
    assert resolve_workers(RayOptions(workers=3, num_gpus_per_worker=1), cluster) == 3
    with pytest.raises(ClusterError, match="need 6 GPUs; the Ray cluster has 4"):
        resolve_workers(RayOptions(workers=3, num_gpus_per_worker=2), cluster)
    with pytest.raises(ClusterError, match="need 40 CPUs"):
        resolve_workers(RayOptions(workers=10, num_cpus_per_worker=4), cluster)
    with pytest.raises(ClusterError, match="--ray-workers N"):
        resolve_workers(RayOptions(), cluster)
    with pytest.raises(ClusterError, match="has 0 GPUs"):
        resolve_workers(RayOptions(num_gpus_per_worker=1), {"CPU": 8.0})
    with pytest.raises(ValueError, match=">= 1"):
        RayOptions(workers=0)


def test_a_local_instance_reserves_what_the_workers_need() -> None:
    assert local_init_kwargs(RayOptions(workers=3, num_cpus_per_worker=1.5)) == {"address": "local", "include_dashboard": False, "num_cpus": 5}
    assert "num_cpus" not in local_init_kwargs(RayOptions(num_gpus_per_worker=1))  # Ray counts the machine
    assert local_init_kwargs(RayOptions(address="auto", workers=2)) == {"address": "auto"}
