"""On-disk store of teacher hidden states, keyed by model id + prompt version, resumable by batch.

Layout: ``<dir>/<model_id>/<prompt_version>/`` holds ``meta.json`` (shapes and storage dtype, written
once), one ``shard-NNNNNN.safetensors`` per completed batch (``keys`` int64 [n], ``features``
[n, L+1, hidden]) and ``index.jsonl``, one JSON line per shard naming its file, size and sample keys.
A shard is written to a temp file and renamed, and only then is its index line appended, so an
interrupted run leaves either a complete, indexed shard or nothing that counts.

Owns the file format and its integrity checks. Must not run models or know about prompts; it is not
safe for two processes writing the same key at once (one extraction per cache key).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT = 1
_STORAGE = {"float32": np.float32, "float16": np.float16}


class CorruptShardError(RuntimeError):
    """A shard or the index cannot be trusted; the message names the file and how to recover."""


def _safe_name(text: str) -> str:
    """A single path component: the cache key must never escape the cache dir."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(text)).strip(".")
    if not name:
        raise ValueError(f"{text!r} cannot be used as a cache key")
    return name


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class FeatureCache:
    """Per-(model, prompt version) feature store; see the module docstring for the layout."""

    def __init__(
        self,
        dir: str | os.PathLike[str],
        model_id: str,
        prompt_version: str,
        storage_dtype: Literal["float32", "float16"] = "float32",
    ) -> None:
        if storage_dtype not in _STORAGE:
            raise ValueError(f"storage_dtype must be one of {sorted(_STORAGE)}, got {storage_dtype!r}")
        self.model_id = model_id
        self.prompt_version = prompt_version
        self.storage_dtype = storage_dtype
        self.path = Path(dir).expanduser() / _safe_name(model_id) / _safe_name(prompt_version)
        self.index_path = self.path / "index.jsonl"
        self.meta_path = self.path / "meta.json"
        self._next_seq: int | None = None
        self._meta_checked: tuple[int, int] | None = None

    # ------------------------------------------------------------------ index
    def _entries(self) -> list[dict[str, Any]]:
        """Index lines in write order; a torn last line (crash mid-append) is ignored."""
        if not self.index_path.exists():
            return []
        complete = self.index_path.read_text().split("\n")[:-1]  # text after the last newline is torn
        entries = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                raise CorruptShardError(
                    f"{self.index_path}:{number} is not valid JSON. Delete {self.path} to recompute this cache."
                ) from None
        return entries

    def _start_writing(self) -> int:
        """Once per instance: repair a torn index tail, forget deleted shards, return the next number."""
        if self._next_seq is None:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.index_path.exists():
                data = self.index_path.read_bytes()
                if data and not data.endswith(b"\n"):  # an append was interrupted: drop the torn line
                    with self.index_path.open("r+b") as handle:
                        handle.truncate(data.rfind(b"\n") + 1)
            entries = self._entries()
            present = [e for e in entries if (self.path / e["file"]).exists()]
            if len(present) != len(entries):  # a user deleted a bad shard, as the error told them to
                self._rewrite_entries(present)
            self._next_seq = 1 + max((int(e["seq"]) for e in entries), default=-1)
        return self._next_seq

    def _append_entry(self, entry: dict[str, Any]) -> None:
        with self.index_path.open("ab") as handle:
            handle.write((json.dumps(entry, separators=(",", ":")) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite_entries(self, entries: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        _fsync_write(self.index_path, data)

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, Any] | None:
        if not self.meta_path.exists():
            return None
        try:
            return json.loads(self.meta_path.read_text())
        except ValueError:
            raise CorruptShardError(
                f"{self.meta_path} is not valid JSON. Delete {self.path} to recompute this cache."
            ) from None

    def ensure_shape(self, num_states: int, hidden_size: int) -> None:
        """Fix the shapes on first write; refuse a later write that disagrees (wrong model or dtype)."""
        if self._meta_checked == (num_states, hidden_size):
            return
        wanted = {
            "format": FORMAT,
            "model_id": self.model_id,
            "prompt_version": self.prompt_version,
            "num_states": int(num_states),
            "hidden_size": int(hidden_size),
            "storage_dtype": self.storage_dtype,
        }
        current = self.meta()
        if current is None:
            self.path.mkdir(parents=True, exist_ok=True)
            _fsync_write(self.meta_path, json.dumps(wanted, indent=1).encode())
        elif current != wanted:
            raise ValueError(
                f"{self.meta_path} was written with {current}, this run has {wanted}; use another cache dir or key"
            )
        self._meta_checked = (num_states, hidden_size)

    # ------------------------------------------------------------------ API
    def done_keys(self) -> set[int]:
        """Sample keys already stored. Cheap: reads the index and checks shard sizes, not contents.

        A shard that was deleted does not count, so that the next extraction recomputes it.
        """
        done: set[int] = set()
        for entry in self._entries():
            if not (self.path / entry["file"]).exists():
                continue
            problem = self._cheap_problem(entry)
            if problem:
                raise self._corrupt(entry, problem)
            done.update(int(k) for k in entry["keys"])
        return done

    def write_shard(self, keys: np.ndarray | list[int], features: np.ndarray, forward_s: float = 0.0) -> Path:
        """Store one completed batch atomically; ``forward_s`` is the batch's forward wall time."""
        keys_arr = np.asarray(keys, dtype=np.int64).reshape(-1)
        feats = np.asarray(features)
        if feats.ndim != 3 or feats.shape[0] != keys_arr.shape[0]:
            raise ValueError(f"features must be [n, L+1, hidden] with n={keys_arr.shape[0]}, got {feats.shape}")
        self.ensure_shape(feats.shape[1], feats.shape[2])
        seq = self._start_writing()
        shard = self.path / f"shard-{seq:06d}.safetensors"
        tmp = shard.with_name(f".{shard.name}.tmp-{os.getpid()}")
        stored = np.ascontiguousarray(feats.astype(_STORAGE[self.storage_dtype]))
        save_file({"keys": keys_arr, "features": stored}, str(tmp))
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, shard)
        entry = {
            "seq": seq,
            "file": shard.name,
            "bytes": shard.stat().st_size,
            "n": int(keys_arr.shape[0]),
            "forward_s": float(forward_s),
            "keys": [int(k) for k in keys_arr],
        }
        self._append_entry(entry)
        self._next_seq = seq + 1
        return shard

    def load(self, on_corrupt: Literal["raise", "drop"] = "raise") -> tuple[np.ndarray, np.ndarray]:
        """All stored samples sorted by key: (keys int64 [n], features float32 [n, L+1, hidden]).

        ``on_corrupt="drop"`` deletes unreadable shards and their index lines instead of raising, so
        that the next extraction recomputes exactly those samples.
        """
        if on_corrupt == "drop":
            self.drop_corrupt()
        meta = self.meta() or {}
        keys_parts, feat_parts = [], []
        for entry in self._entries():
            keys, feats = self._read(entry)
            keys_parts.append(keys)
            feat_parts.append(feats.astype(np.float32, copy=False))
        if not keys_parts:
            shape = (0, int(meta.get("num_states", 0)), int(meta.get("hidden_size", 0)))
            return np.zeros(0, dtype=np.int64), np.zeros(shape, dtype=np.float32)
        keys = np.concatenate(keys_parts)
        feats = np.concatenate(feat_parts)
        order = np.argsort(keys, kind="stable")
        keys, feats = keys[order], feats[order]
        if keys.size > 1 and np.any(keys[1:] == keys[:-1]):
            dup = int(keys[1:][keys[1:] == keys[:-1]][0])
            raise CorruptShardError(f"Key {dup} is stored twice in {self.path}; delete that folder to recompute.")
        return keys, feats

    def drop_corrupt(self) -> list[Path]:
        """Remove shards that fail to read (and their index lines); returns the removed paths."""
        kept, dropped = [], []
        for entry in self._entries():
            try:
                self._read(entry)
                kept.append(entry)
            except CorruptShardError:
                path = self.path / entry["file"]
                path.unlink(missing_ok=True)
                dropped.append(path)
        if dropped:
            self._rewrite_entries(kept)
            self._next_seq = None
        return dropped

    def latency_ms_per_sample(self) -> float | None:
        """Mean forward wall time per sample over all stored batches (None when nothing is stored)."""
        entries = self._entries()
        n = sum(int(e["n"]) for e in entries)
        return 1000.0 * sum(float(e["forward_s"]) for e in entries) / n if n else None

    # ------------------------------------------------------------------ checks
    def _cheap_problem(self, entry: dict[str, Any]) -> str | None:
        path = self.path / entry["file"]
        if not path.exists():
            return "the file is missing (rerun extraction to recompute it)"
        if path.stat().st_size != int(entry["bytes"]):
            return f"it is {path.stat().st_size} bytes, the index says {entry['bytes']} (truncated or overwritten)"
        return None

    def _corrupt(self, entry: dict[str, Any], problem: str) -> CorruptShardError:
        path = self.path / entry["file"]
        return CorruptShardError(
            f"Feature shard {path} is corrupt: {problem}. Delete it and rerun extraction "
            f"(its {entry['n']} samples are recomputed), or call FeatureCache.drop_corrupt() / load(on_corrupt='drop')."
        )

    def _read(self, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        problem = self._cheap_problem(entry)
        if problem:
            raise self._corrupt(entry, problem)
        try:
            tensors = load_file(str(self.path / entry["file"]))
            keys, feats = tensors["keys"], tensors["features"]
        except Exception as error:  # noqa: BLE001 - safetensors raises several types for bad files
            raise self._corrupt(entry, f"{type(error).__name__}: {error}") from error
        if keys.tolist() != [int(k) for k in entry["keys"]] or feats.ndim != 3 or feats.shape[0] != keys.shape[0]:
            raise self._corrupt(entry, "its keys or shape disagree with the index")
        return keys, feats
