"""``cmm teacher extract``: samples -> prompts -> teacher hidden states (and stained copies).

Owns the choice of which samples the teacher reads and the layout of a features directory:

    OUT/samples.parquet          all samples of the instrument (x_t, targets, regime, split)
    OUT/teacher_cache/...        hidden states of every layer for the selected samples (resumable)
    OUT/stain_cache/<c>/...      hidden states of stained prompts, one cache per component c
    OUT/extract.json             what was extracted, with which model and prompt version, latency

Sample keys are the samples' timestamps (ns), so a resumed or extended run finds its own work.
All teacher compute happens here, so ``cmm probe`` never needs the model.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np

from training.prompt import PROMPT_VERSION, prompt_components, render_prompt, stain
from training.samples import SampleConfig, SampleSet, build_samples
from training.teacher.cache import FeatureCache
from training.teacher.distributed import RayOptions, RayTeacherPool, require_ray
from training.teacher.extract import extract_hidden_states, measure_latency
from training.teacher.models import load_teacher


def select_evenly(n: int, k: int) -> np.ndarray:
    """``k`` row indices spread evenly over ``0..n-1`` (keeps every split and regime represented)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def load_or_build_samples(catalog: str | Path, instrument_id: str, out: Path, progress: bool = True) -> SampleSet:
    """Reuse ``OUT/samples.parquet`` when it was built from the same catalog and instrument."""
    path = out / "samples.parquet"
    if path.exists():
        try:
            samples = SampleSet.load(path)
            if samples.meta.get("instrument_id") == instrument_id and samples.meta.get("catalog") == str(Path(catalog).resolve()):
                return samples
        except (ValueError, OSError):
            pass  # stale or foreign file: rebuild below
    samples = build_samples(catalog, instrument_id, SampleConfig(), progress=progress)
    samples.save(path)
    return samples


def run_extract(
    catalog: str | Path,
    instrument_id: str,
    out: str | Path,
    model: str | None = None,
    max_samples: int = 1000,
    batch_size: int = 16,
    device: str = "cpu",
    stain_samples: int = 96,
    seed: int = 0,
    progress: bool = True,
    ray: RayOptions | None = None,
) -> dict[str, object]:
    """Extract (or resume extracting) teacher features; returns what ``extract.json`` holds.

    With ``ray`` the teacher runs in Ray workers instead of this process; the stores and the
    features are the same (see ``training.teacher.distributed``).
    """
    if ray is not None:
        require_ray()  # before minutes of sample building
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    samples = load_or_build_samples(catalog, instrument_id, out, progress)
    names = samples.feature_names
    selected = select_evenly(len(samples.ts), max_samples)
    keys = [int(k) for k in samples.ts[selected]]
    prompts = [render_prompt(samples.x[i], names, instrument_id) for i in selected]

    cluster: dict[str, object] | None = None
    with ExitStack() as stack:
        if ray is None:
            teacher = load_teacher(model, device=device)
            extract, latency_of = partial(extract_hidden_states, teacher), partial(measure_latency, teacher)
        else:
            teacher = stack.enter_context(RayTeacherPool(model, ray, device=device))
            extract, latency_of = teacher.extract, teacher.measure_latency
            device, cluster = teacher.device, teacher.describe()
        cache = FeatureCache(out / "teacher_cache", teacher.model_id, PROMPT_VERSION)
        extract_started = time.perf_counter()
        extract(prompts, keys, cache, batch_size=batch_size, progress=progress)
        extract_seconds = time.perf_counter() - extract_started

        # Staining (METHOD.md section 3): x with component c swapped in from a random donor x'.
        rng = np.random.default_rng(seed)
        probed = selected[select_evenly(len(selected), stain_samples)]
        donors = np.array([rng.choice(selected[selected != i]) for i in probed]) if len(selected) > 1 else probed
        components = prompt_components(names)
        for component, columns in components.items():
            stained_prompts = [render_prompt(stain(samples.x[i], samples.x[j], columns), names, instrument_id) for i, j in zip(probed, donors)]
            stain_cache = FeatureCache(out / "stain_cache" / component, teacher.model_id, f"{PROMPT_VERSION}-stain-s{seed}")
            extract(stained_prompts, [int(k) for k in samples.ts[probed]], stain_cache, batch_size=batch_size, progress=progress)

        latency = latency_of(prompts[:16], repeats=3, batch_size=min(batch_size, 16))
    record = {
        "model_id": teacher.model_id,
        "model_source": str(teacher.source),
        "model_arg": model,
        "device": device,
        "ray": cluster,
        "prompt_version": PROMPT_VERSION,
        "instrument_id": instrument_id,
        "catalog": str(Path(catalog).resolve()),
        "num_states": teacher.num_layers,
        "hidden_size": teacher.hidden_size,
        "samples_total": int(len(samples.ts)),
        "samples_extracted": len(keys),
        "stain": {
            "seed": seed,
            "components": list(components),
            "probed_keys": [int(k) for k in samples.ts[probed]],
            "donor_keys": [int(k) for k in samples.ts[donors]],
        },
        "latency": latency,
        "extract_seconds_this_run": round(extract_seconds, 1),
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "example_prompt": prompts[0] if prompts else None,
    }
    (out / "extract.json").write_text(json.dumps(record, indent=2))
    return record
