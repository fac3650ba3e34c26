"""Teacher extraction sharded over Ray actors, gathered into the same ``FeatureCache`` as a local run.

Why it looks the way it does:

* One actor holds one teacher, loaded once in its constructor; the driver never loads the model, so
  it can be a laptop that only reaches the cluster.
* The driver is the only writer of the store. ``FeatureCache`` is not safe for concurrent writers and
  a cluster need not share a filesystem, so actors return features and the driver writes the shards.
* Batches are exactly the ones ``extract_hidden_states`` would form (the keys not yet stored, in
  order, cut every ``batch_size``). Features move by a few float32 ulps when a prompt is padded to a
  different width, so the same batches are what makes a Ray run bitwise equal to a local one.
* Shards are committed in batch order (a bounded reorder buffer holds batches that finish early), so
  an interrupted run always leaves a prefix of the batches; the resumed run then forms the same
  batches as an uninterrupted one and still matches it bit for bit.

Ray is an optional extra: it is imported only when a pool is built, with an actionable error.
"""

from __future__ import annotations

import math
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import numpy as np
from tqdm.auto import tqdm

from training.teacher.cache import FeatureCache

MISSING_RAY = "Ray is not installed; install the cluster extra: pip install -e .[cluster]"
_IN_FLIGHT_PER_WORKER = 2  # one batch computing, one queued: the actor never waits on the driver
_REORDER_SLACK = 2  # batches that may finish ahead of the oldest unwritten one, per in-flight slot


class ClusterError(RuntimeError):
    """Ray is missing, the cluster cannot host the requested workers, or a worker died."""


@dataclass(frozen=True)
class RayOptions:
    """Where the actors run and what each one reserves.

    ``address=None`` starts a private local Ray instance (stopped again on close) unless Ray is
    already initialised in this process; ``workers=None`` means one worker per
    ``num_gpus_per_worker`` GPUs of the cluster.
    """

    address: str | None = None
    workers: int | None = None
    num_gpus_per_worker: float = 0.0
    num_cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"Ray workers must be >= 1, got {self.workers}")
        if self.num_gpus_per_worker < 0:
            raise ValueError(f"GPUs per worker must be >= 0, got {self.num_gpus_per_worker}")
        if self.num_cpus_per_worker <= 0:
            raise ValueError(f"CPUs per worker must be > 0, got {self.num_cpus_per_worker}")


def require_ray() -> ModuleType:
    """Import Ray on demand so that the core install (no cluster extra) never needs it."""
    try:
        import ray
    except ImportError as error:
        raise ClusterError(MISSING_RAY) from error
    return ray


def local_init_kwargs(options: RayOptions) -> dict[str, Any]:
    """``ray.init`` arguments. A local instance gets exactly the CPUs the workers reserve, so that
    they are schedulable even on a small machine (torch threads are set per worker anyway)."""
    if options.address:
        return {"address": options.address}
    kwargs: dict[str, Any] = {"address": "local", "include_dashboard": False}
    if options.workers is not None:
        kwargs["num_cpus"] = max(1, math.ceil(options.workers * options.num_cpus_per_worker))
    return kwargs


def resolve_workers(options: RayOptions, resources: dict[str, float]) -> int:
    """How many workers to start, refusing up front what the cluster cannot schedule (Ray would
    otherwise leave the actors pending forever without a word)."""
    gpus, cpus = float(resources.get("GPU", 0.0)), float(resources.get("CPU", 0.0))
    per_gpu, per_cpu = options.num_gpus_per_worker, options.num_cpus_per_worker
    if options.workers is not None:
        workers = options.workers
    elif per_gpu > 0:
        workers = int(gpus // per_gpu + 1e-9)
        if workers < 1:
            raise ClusterError(f"The Ray cluster has {gpus:g} GPUs, fewer than the {per_gpu:g} one worker needs")
    else:
        raise ClusterError("Say how many teachers to start: pass --ray-workers N or --num-gpus-per-worker G")
    if workers * per_gpu > gpus + 1e-9:
        raise ClusterError(
            f"{workers} workers x {per_gpu:g} GPUs need {workers * per_gpu:g} GPUs; the Ray cluster has {gpus:g}"
        )
    if workers * per_cpu > cpus + 1e-9:
        raise ClusterError(
            f"{workers} workers x {per_cpu:g} CPUs need {workers * per_cpu:g} CPUs; the Ray cluster has {cpus:g}"
        )
    return workers


def _model_arg(model: str | os.PathLike[str] | None) -> str | None:
    """Absolute when it exists here (workers do not share the driver's cwd); as given otherwise,
    for a path that only exists on the worker nodes."""
    if model is None or str(model) == "default":
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


class TeacherWorker:
    """Body of one Ray actor: a teacher loaded once, then batches of token ids in, features out.

    A load failure is kept and re-raised by ``describe`` instead of killing the actor, so that the
    driver sees the real exception (missing folder, bad checkpoint) rather than "actor died".
    """

    def __init__(self, model: str | None, device: str, num_threads: int) -> None:
        import torch

        from training.teacher.models import load_teacher

        torch.set_num_threads(max(1, num_threads))
        self.error: BaseException | None = None
        try:
            self.teacher = load_teacher(model, device=device)
        except Exception as error:  # noqa: BLE001 - re-raised by describe()
            self.error = error

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        t = self.teacher
        return {
            "model_id": t.model_id,
            "source": str(t.source),
            "num_layers": t.num_layers,
            "hidden_size": t.hidden_size,
            "max_context": t.max_context,
            "device": str(t.device),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    def tokenize(self, keys: list[int], prompts: list[str]) -> list[list[int]]:
        from training.teacher.extract import _check_lengths, tokenize

        token_ids = tokenize(self.teacher, prompts)
        _check_lengths(self.teacher, keys, token_ids)
        return token_ids

    def forward(self, batch: list[list[int]]) -> tuple[np.ndarray, float]:
        from training.teacher.extract import forward_last_token

        return forward_last_token(self.teacher, batch)

    def measure_latency(self, prompts: list[str], repeats: int, batch_size: int) -> dict[str, float]:
        from training.teacher.extract import measure_latency

        return measure_latency(self.teacher, prompts, repeats=repeats, batch_size=batch_size)


class RayTeacherPool:
    """Ray workers that each hold the teacher; a drop-in for ``extract_hidden_states`` and
    ``measure_latency`` on a loaded ``Teacher`` (same store layout, same resume rules).

    Use as a context manager: ``close`` kills the actors and stops Ray if this pool started it.
    """

    def __init__(self, model: str | os.PathLike[str] | None, options: RayOptions, device: str = "cpu") -> None:
        if device == "cuda" and options.num_gpus_per_worker == 0:
            raise ClusterError("With Ray, --device cuda needs --num-gpus-per-worker > 0 (Ray hides GPUs from workers that reserve none)")
        self._ray = require_ray()
        self.options = options
        self.device = "cuda" if options.num_gpus_per_worker > 0 else device
        self._started_ray = False
        self.workers: list[Any] = []
        try:
            if not self._ray.is_initialized():
                self._ray.init(**local_init_kwargs(options))
                self._started_ray = True
            count = resolve_workers(options, self._ray.cluster_resources())
            actor = self._ray.remote(TeacherWorker).options(
                num_cpus=options.num_cpus_per_worker, num_gpus=options.num_gpus_per_worker
            )
            threads = max(1, int(options.num_cpus_per_worker))
            self.workers = [actor.remote(_model_arg(model), self.device, threads) for _ in range(count)]
            self.worker_info = [self._get(w.describe.remote()) for w in self.workers]
        except BaseException:
            self.close()
            raise
        shapes = {(i["model_id"], i["num_layers"], i["hidden_size"]) for i in self.worker_info}
        if len(shapes) != 1:
            self.close()
            raise ClusterError(f"Workers loaded different teachers {sorted(shapes)}; give every node the same model folder")
        first = self.worker_info[0]
        self.model_id: str = first["model_id"]
        self.source = Path(first["source"])
        self.num_layers: int = first["num_layers"]
        self.hidden_size: int = first["hidden_size"]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            self._ray.kill(worker)
        self.workers = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def describe(self) -> dict[str, Any]:
        """What extract.json records about the cluster run."""
        return {
            "address": self.options.address,
            "workers": len(self.worker_info),
            "num_gpus_per_worker": self.options.num_gpus_per_worker,
            "num_cpus_per_worker": self.options.num_cpus_per_worker,
            "hosts": sorted({i["host"] for i in self.worker_info}),
        }

    # ------------------------------------------------------------------ work
    def extract(
        self,
        prompts: list[str],
        keys: list[int],
        cache: FeatureCache,
        batch_size: int = 16,
        progress: bool = True,
        max_batches: int | None = None,
        on_shard: Callable[[Path], None] | None = None,
    ) -> list[int]:
        """Same contract as ``extract_hidden_states``; returns the batches each worker computed.

        ``on_shard`` is called with each shard's path once it is stored (progress hooks, tests).
        """
        from training.teacher.extract import batch_spans, pending_prompts

        todo, todo_keys = pending_prompts(prompts, keys, batch_size, cache, self.model_id, self.num_layers, self.hidden_size)
        per_worker = [0] * len(self.workers)
        if not todo:
            return per_worker
        # Every length is checked before any forward pass, as in the local path.
        token_ids = self._get(self.workers[0].tokenize.remote(todo_keys, [prompts[i] for i in todo]))
        spans = batch_spans(len(todo), batch_size, max_batches)
        bar = tqdm(total=sum(len(todo_keys[a:b]) for a, b in spans), disable=not progress, desc=f"teacher {self.model_id} x{len(self.workers)}", unit="prompt")
        try:
            for index, (features, seconds) in self._in_order([token_ids[a:b] for a, b in spans], per_worker, cache):
                a, b = spans[index]
                shard = cache.write_shard(todo_keys[a:b], features, forward_s=seconds)
                bar.update(len(todo_keys[a:b]))
                if on_shard is not None:
                    on_shard(shard)
        finally:
            bar.close()
        return per_worker

    def measure_latency(self, prompts: list[str], repeats: int = 5, batch_size: int = 16) -> dict[str, float]:
        """Measured on one worker, i.e. on the device the teacher really runs on."""
        return self._get(self.workers[0].measure_latency.remote(prompts, repeats, batch_size))

    def _in_order(
        self, batches: Sequence[list[list[int]]], per_worker: list[int], cache: FeatureCache
    ) -> Iterator[tuple[int, tuple[np.ndarray, float]]]:
        """Yield ``(index, result)`` for every batch in index order, computing them on all workers.

        A worker takes the next batch as soon as it has a free slot, but never more than a bounded
        number of batches ahead of the oldest unfinished one, so the reorder buffer stays small.
        """
        ray = self._ray
        window = _IN_FLIGHT_PER_WORKER * _REORDER_SLACK * len(self.workers)
        free = deque(w for _ in range(_IN_FLIGHT_PER_WORKER) for w in range(len(self.workers)))
        pending: dict[Any, tuple[int, int]] = {}
        finished: dict[int, tuple[np.ndarray, float]] = {}
        next_submit = next_yield = 0
        while next_yield < len(batches):
            while free and next_submit < len(batches) and next_submit < next_yield + window:
                worker = free.popleft()
                pending[self.workers[worker].forward.remote(batches[next_submit])] = (next_submit, worker)
                next_submit += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index, worker = pending.pop(ref)
                try:
                    finished[index] = self._get(ref)
                except ray.exceptions.RayActorError as error:
                    raise ClusterError(
                        f"Ray worker {worker} died ({str(error).splitlines()[0]}). The shards stored so far in "
                        f"{cache.path} are kept: rerun the same command to resume."
                    ) from error
                per_worker[worker] += 1
                free.append(worker)
            while next_yield in finished:
                yield next_yield, finished.pop(next_yield)
                next_yield += 1

    def _get(self, ref: Any) -> Any:
        """``ray.get`` that re-raises a worker's own exception (ValueError, TeacherLoadError, ...)
        rather than Ray's wrapper, so callers handle local and Ray runs alike."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):
                raise cause from error
            raise
