"""Read a teacher's hidden states at the last prompt token, for every layer, into a ``FeatureCache``.

Owns batching, left padding (attention mask + position ids), the context-length check, resume
(keys already cached are skipped) and latency measurement. Must not build prompts, choose layers
for students, or write files itself (the cache does that atomically).
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from training.teacher.cache import FeatureCache
from training.teacher.models import Teacher


def tokenize(teacher: Teacher, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids per prompt, unpadded, with the tokenizer's usual special tokens."""
    return [list(ids) for ids in teacher.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


def _check_lengths(teacher: Teacher, keys: Sequence[int], token_ids: Sequence[list[int]]) -> None:
    """Refuse before any forward pass: a truncated prompt would silently change the features."""
    for key, ids in zip(keys, token_ids):
        if len(ids) == 0:
            raise ValueError(f"Prompt with key {key} is empty after tokenization")
        if len(ids) > teacher.max_context:
            raise ValueError(
                f"Prompt with key {key} has {len(ids)} tokens, more than the teacher's context limit of "
                f"{teacher.max_context} ({teacher.model_id}); shorten the prompt (fewer book levels or events)."
            )


def _pad_left(teacher: Teacher, batch: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    """Left-pad a batch. Position ids count real tokens only, so a prompt sees the same positions
    whatever it is batched with; that and the mask make features batch-composition invariant."""
    width = max(len(ids) for ids in batch)
    pad_id = int(teacher.tokenizer.pad_token_id)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = teacher.device
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def _sync(teacher: Teacher) -> None:
    if teacher.device.type == "cuda":
        torch.cuda.synchronize(teacher.device)


def _forward_options(model: torch.nn.Module) -> dict[str, object]:
    """Ask for hidden states; skip the vocab projection of every position when the model allows it."""
    options: dict[str, object] = {"output_hidden_states": True, "use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        options["logits_to_keep"] = 1
    return options


def forward_last_token(teacher: Teacher, batch: Sequence[list[int]]) -> tuple[np.ndarray, float]:
    """([B, L+1, hidden] float32 hidden states at each prompt's last token, forward wall seconds)."""
    inputs = _pad_left(teacher, batch)
    with torch.inference_mode():
        _sync(teacher)
        start = time.perf_counter()
        out = teacher.model(**inputs, **_forward_options(teacher.model))
        _sync(teacher)
        elapsed = time.perf_counter() - start
        states = torch.stack([h[:, -1, :] for h in out.hidden_states], dim=1)
    if states.shape[1] != teacher.num_layers:
        raise RuntimeError(
            f"{teacher.model_id} returned {states.shape[1]} hidden states, expected {teacher.num_layers}"
        )
    return states.float().cpu().numpy(), elapsed


def extract_hidden_states(
    teacher: Teacher,
    prompts: list[str],
    keys: list[int],
    cache: FeatureCache,
    batch_size: int = 16,
    progress: bool = True,
    max_batches: int | None = None,
) -> None:
    """Fill ``cache`` with features for every key not already in it, one shard per batch.

    Resumable: an interrupted run loses at most the batch in flight. ``max_batches`` stops after that
    many new batches (time-boxed runs, tests). Per-batch forward time is kept in the cache index.
    """
    todo, todo_keys = pending_prompts(prompts, keys, batch_size, cache, teacher.model_id, teacher.num_layers, teacher.hidden_size)
    token_ids = tokenize(teacher, [prompts[i] for i in todo]) if todo else []
    _check_lengths(teacher, todo_keys, token_ids)

    starts = [a for a, _ in batch_spans(len(todo), batch_size, max_batches)]
    bar = tqdm(total=len(todo), disable=not progress, desc=f"teacher {teacher.model_id}", unit="prompt")
    try:
        for start in starts:
            stop = start + batch_size
            features, seconds = forward_last_token(teacher, token_ids[start:stop])
            cache.write_shard(todo_keys[start:stop], features, forward_s=seconds)
            bar.update(len(todo_keys[start:stop]))
    finally:
        bar.close()


def pending_prompts(
    prompts: list[str], keys, batch_size: int, cache: FeatureCache, model_id: str, num_layers: int, hidden_size: int
) -> tuple[list[int], list[int]]:
    """Check the inputs against the store and return (indices, keys) of the prompts not yet stored.

    Shared by the local and the Ray paths so both resume from the same work list and form the same
    batches (batch composition changes hidden states by ~1e-5 through padding)."""
    if len(prompts) != len(keys):
        raise ValueError(f"{len(prompts)} prompts but {len(keys)} keys")
    int_keys = [int(k) for k in keys]
    if len(set(int_keys)) != len(int_keys):
        raise ValueError("keys must be unique")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if cache.model_id != model_id:
        raise ValueError(f"cache is keyed by model {cache.model_id!r} but the teacher is {model_id!r}")
    cache.ensure_shape(num_layers, hidden_size)
    done = cache.done_keys()
    todo = [i for i, key in enumerate(int_keys) if key not in done]
    return todo, [int_keys[i] for i in todo]


def batch_spans(n: int, batch_size: int, max_batches: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) of each batch over ``n`` pending prompts, in order; at most ``max_batches``."""
    spans = [(start, start + batch_size) for start in range(0, n, batch_size)]
    return spans if max_batches is None else spans[: max(0, max_batches)]


def measure_latency(teacher: Teacher, prompts: list[str], repeats: int = 5, batch_size: int = 16) -> dict[str, float]:
    """Median forward time per sample at ``batch_size`` and per decision at batch 1, in ms.

    Batch 1 is what a live strategy would pay per order-book decision; the batched figure is what
    offline extraction pays. One warm-up pass each keeps allocator and kernel set-up out of the numbers.
    """
    if not prompts:
        raise ValueError("measure_latency needs at least one prompt")
    token_ids = tokenize(teacher, prompts)
    _check_lengths(teacher, list(range(len(prompts))), token_ids)
    batch = [token_ids[i % len(token_ids)] for i in range(batch_size)]
    forward_last_token(teacher, batch)
    batched = [forward_last_token(teacher, batch)[1] / batch_size for _ in range(repeats)]
    singles = []
    for ids in token_ids[: min(4, len(token_ids))]:
        forward_last_token(teacher, [ids])
        singles.extend(forward_last_token(teacher, [ids])[1] for _ in range(repeats))
    return {
        "ms_per_sample_batched": 1000.0 * statistics.median(batched),
        "ms_per_decision_batch1": 1000.0 * statistics.median(singles),
        "batch_size": float(batch_size),
        "mean_prompt_tokens": float(np.mean([len(ids) for ids in token_ids])),
    }
