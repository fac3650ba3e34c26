"""Teacher engine: loading, last-token hidden states, resumable on-disk cache, and its error messages.

Fast tests use a tiny random Llama with a tiny word-level tokenizer saved into tmp_path, so they load
through exactly the same ``load_teacher(path)`` code path as a real local model. The one slow test
converts (once, cached) and runs the bundled SmolLM2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.teacher import (
    CorruptShardError,
    FeatureCache,
    TeacherLoadError,
    extract_hidden_states,
    load_teacher,
    measure_latency,
)
from tests.tiny_models import DIGITS, WORDS, build_tiny_model
from training.teacher import extract as extract_mod
from training.teacher import models as models_mod



def _prompts(n: int, seed: int = 0) -> list[str]:
    """Prompts of different lengths, so that batches really are left-padded."""
    rng = np.random.default_rng(seed)
    vocab = WORDS + DIGITS
    return [" ".join(rng.choice(vocab, size=3 + (i * 5) % 17)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def teacher(tiny_model_dir: Path):
    return load_teacher(tiny_model_dir)


def _count_forwards(teacher) -> list[int]:
    """Batch sizes of every forward pass the model runs from now on."""
    calls: list[int] = []
    teacher.model.register_forward_pre_hook(lambda _m, _a, kw: calls.append(kw["input_ids"].shape[0]), with_kwargs=True)
    return calls


def test_tiny_model_loads_through_load_teacher(teacher, tiny_model_dir: Path) -> None:
    assert teacher.model_id.startswith(tiny_model_dir.name + "-")
    assert teacher.model_id == load_teacher(str(tiny_model_dir)).model_id  # stable
    assert (teacher.num_layers, teacher.hidden_size, teacher.max_context) == (3, 32, 128)
    assert teacher.dtype == torch.float32 and not teacher.model.training
    assert teacher.tokenizer.padding_side == "left"
    assert teacher.tokenizer.pad_token == teacher.tokenizer.eos_token == "</s>"


def test_extract_shapes_and_latency_record(teacher, tmp_path: Path) -> None:
    prompts, keys = _prompts(5), [40, 10, 30, 20, 0]
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    got_keys, feats = cache.load()
    assert got_keys.dtype == np.int64 and got_keys.tolist() == [0, 10, 20, 30, 40]
    assert feats.dtype == np.float32 and feats.shape == (5, 3, 32)
    assert np.isfinite(feats).all()
    assert cache.latency_ms_per_sample() > 0
    assert len(list(cache.path.glob("shard-*.safetensors"))) == 3


def test_features_do_not_depend_on_batch_composition(teacher, tmp_path: Path) -> None:
    prompts = _prompts(7, seed=1)
    keys = list(range(7))
    alone = FeatureCache(tmp_path, teacher.model_id, "alone")
    extract_hidden_states(teacher, prompts, keys, alone, batch_size=1, progress=False)
    order = [5, 2, 6, 0, 3, 1, 4]
    mixed = FeatureCache(tmp_path, teacher.model_id, "mixed")
    extract_hidden_states(teacher, [prompts[i] for i in order], order, mixed, batch_size=4, progress=False)
    k1, f1 = alone.load()
    k2, f2 = mixed.load()
    assert k1.tolist() == k2.tolist()
    np.testing.assert_allclose(f1, f2, atol=1e-4, rtol=0)
    # and it is the last real token: an unpadded single forward agrees with the padded batch
    ids = teacher.tokenizer(prompts[0], return_tensors="pt")
    with torch.inference_mode():
        states = teacher.model(**ids, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(f2[0], torch.stack([h[0, -1] for h in states]).numpy(), atol=1e-4, rtol=0)


def test_left_padding_masks_pads_and_counts_positions_from_the_first_real_token(teacher) -> None:
    """Both matter: the mask hides pads; position ids keep absolute-position models invariant too."""
    batch = extract_mod._pad_left(teacher, [[5, 6, 7], [8]])
    pad = teacher.tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [pad, pad, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]


def test_interrupted_run_resumes_without_recomputing(teacher, tmp_path: Path, monkeypatch) -> None:
    prompts, keys = _prompts(5, seed=2), list(range(100, 105))
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    real = extract_mod.forward_last_token

    def crash_on_second(t, batch):
        if crash_on_second.calls == 1:
            raise KeyboardInterrupt("simulated interruption")
        crash_on_second.calls += 1
        return real(t, batch)

    crash_on_second.calls = 0
    monkeypatch.setattr(extract_mod, "forward_last_token", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    assert cache.done_keys() == {100, 101}
    monkeypatch.setattr(extract_mod, "forward_last_token", real)

    calls = _count_forwards(teacher)
    reopened = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, reopened, batch_size=2, progress=False)
    assert calls == [2, 1]  # only the two remaining batches ran
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    assert calls == [2, 1]  # nothing left to do

    fresh = FeatureCache(tmp_path, teacher.model_id, "fresh")
    extract_hidden_states(teacher, prompts, keys, fresh, batch_size=5, progress=False)
    np.testing.assert_allclose(cache.load()[1], fresh.load()[1], atol=1e-4, rtol=0)


def test_max_batches_and_torn_index_line(teacher, tmp_path: Path) -> None:
    prompts, keys = _prompts(6, seed=3), list(range(6))
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False, max_batches=1)
    assert cache.done_keys() == {0, 1}
    with cache.index_path.open("a") as handle:  # a crash in the middle of appending an index line
        handle.write('{"seq":1,"file":"shard-0000')
    assert cache.done_keys() == {0, 1}
    reopened = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, reopened, batch_size=2, progress=False)
    assert cache.load()[0].tolist() == keys


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_shard_is_named_and_can_be_dropped(teacher, tmp_path: Path, damage: str) -> None:
    prompts, keys = _prompts(4, seed=4), [1, 2, 3, 4]
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    shard = cache.path / "shard-000001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * len(data))
    with pytest.raises(CorruptShardError, match=r"shard-000001\.safetensors.*Delete it"):
        cache.load()
    if damage == "truncate":  # cheap size check: a resumed run refuses before computing anything
        with pytest.raises(CorruptShardError, match="shard-000001"):
            extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    assert cache.load(on_corrupt="drop")[0].tolist() == [1, 2]
    calls = _count_forwards(teacher)
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    assert calls == [2]
    assert cache.load()[0].tolist() == keys


def test_deleting_a_shard_as_told_recomputes_just_that_batch(teacher, tmp_path: Path) -> None:
    prompts, keys = _prompts(5, seed=5), [1, 2, 3, 4, 5]
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    extract_hidden_states(teacher, prompts, keys, cache, batch_size=2, progress=False)
    (cache.path / "shard-000001.safetensors").unlink()
    assert cache.done_keys() == {1, 2, 5}
    with pytest.raises(CorruptShardError, match="shard-000001.*missing"):
        cache.load()
    calls = _count_forwards(teacher)
    extract_hidden_states(teacher, prompts, keys, FeatureCache(tmp_path, teacher.model_id, "v1"), progress=False)
    assert calls == [2]
    assert cache.load()[0].tolist() == keys


def test_missing_or_wrong_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope.*Hugging Face causal-LM folder"):
        load_teacher(tmp_path / "nope")
    with pytest.raises(ValueError, match="config.json"):
        load_teacher(tmp_path)


def test_unreadable_model_folder_names_the_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TeacherLoadError, match=str(broken)):
        load_teacher(broken)


def test_overlong_prompt_is_refused_before_any_forward(teacher, tmp_path: Path) -> None:
    prompts = ["bid ask", " ".join(["tick"] * 200), "mid"]
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    calls = _count_forwards(teacher)
    with pytest.raises(ValueError, match=r"key 7 has 200 tokens.*limit of 128"):
        extract_hidden_states(teacher, prompts, [6, 7, 8], cache, progress=False)
    assert calls == [] and cache.done_keys() == set()


def test_cache_refuses_a_different_model_shape(teacher, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, teacher.model_id, "v1")
    cache.write_shard([1], np.zeros((1, 3, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="meta.json"):
        FeatureCache(tmp_path, teacher.model_id, "v1").write_shard([2], np.zeros((1, 4, 32), dtype=np.float32))


def test_float16_storage_loads_as_float32(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "m", "v1", storage_dtype="float16")
    feats = np.random.default_rng(0).normal(size=(3, 2, 4)).astype(np.float32)
    cache.write_shard([3, 1, 2], feats)
    keys, got = cache.load()
    assert keys.tolist() == [1, 2, 3] and got.dtype == np.float32
    np.testing.assert_allclose(got, feats[[1, 2, 0]], atol=1e-2)


def test_measure_latency_reports_both_numbers(teacher) -> None:
    result = measure_latency(teacher, _prompts(3), repeats=2, batch_size=4)
    assert result["ms_per_sample_batched"] > 0 and result["ms_per_decision_batch1"] > 0


def test_default_conversion_runs_once_and_rebuilds_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    """The GGUF conversion itself is exercised by the slow test; here: caching, marker, rebuild, errors."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"v1")
    conversions: list[Path] = []

    def fake_convert(_gguf: Path, out: Path) -> None:
        conversions.append(out)
        for path in tiny_model_dir.iterdir():
            (out / path.name).write_bytes(path.read_bytes())

    monkeypatch.setattr(models_mod, "default_gguf_path", lambda: gguf)
    monkeypatch.setattr(models_mod, "_convert_gguf", fake_convert)
    monkeypatch.setenv("CMM_CACHE_DIR", str(tmp_path / "env-cache"))
    first = load_teacher(None)
    target = tmp_path / "env-cache" / "teacher" / "SmolLM2-135M-Instruct"
    assert first.model_id == "SmolLM2-135M-Instruct" and first.source == target
    assert json.loads((target / "cmm_teacher.json").read_text())["source_sha256"]
    load_teacher("default")
    assert len(conversions) == 1
    (target / "config.json").write_text((target / "config.json").read_text() + " ")  # size changed: rebuild
    load_teacher(None)
    assert len(conversions) == 2
    gguf.write_bytes(b"v2")  # a new wheel: rebuild
    load_teacher(None)
    assert len(conversions) == 3
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_unreadable_default_cache_says_delete_the_folder(tmp_path: Path, monkeypatch) -> None:
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"v1")

    def fake_convert(_gguf: Path, out: Path) -> None:
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(b"garbage")

    monkeypatch.setattr(models_mod, "default_gguf_path", lambda: gguf)
    monkeypatch.setattr(models_mod, "_convert_gguf", fake_convert)
    with pytest.raises(TeacherLoadError, match=r"SmolLM2-135M-Instruct.*delete the folder"):
        load_teacher(None, cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_default_smollm2_teacher_end_to_end(tmp_path: Path) -> None:
    teacher = load_teacher(None)
    assert teacher.model_id == "SmolLM2-135M-Instruct"
    assert (teacher.num_layers, teacher.hidden_size) == (31, 576)  # 30 blocks + embeddings
    prompts = [f"best bid {100 + i}.25 size {i + 1}, best ask {100 + i}.50 size {9 - i}. Action?" for i in range(8)]
    cache = FeatureCache(tmp_path, teacher.model_id, "smoke")
    extract_hidden_states(teacher, prompts, list(range(8)), cache, batch_size=4, progress=False)
    keys, feats = cache.load()
    assert keys.tolist() == list(range(8)) and feats.shape == (8, 31, 576)
    assert np.isfinite(feats).all()
