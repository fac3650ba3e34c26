"""The decomposition plan: derived from the fluorescence maps, saved as JSON, editable, validated.

Derivation (METHOD.md section 3, as implemented; see docs/method.md):
1. Layer groups: each layer's profile is its row of ``F_task`` (all targets) joined with its row of
   ``F_data``; the layers 0..L are cut into ``n_groups`` contiguous groups minimizing the
   within-group sum of squared deviations of the profiles (dynamic programming), i.e. the cuts
   fall where the profile changes most.
2. For each task, the brightest group: the highest mean ``F_task`` over the group's layers and the
   task's horizons.
3. Regime split: for a task, if some regime's map differs from the pooled map by more than
   ``regime_threshold`` (mean absolute difference over layers and horizons), the task gets one
   student per regime, each on that regime's brightest group; otherwise one student for all.
   A regime whose map is missing (too few samples, or no layer with R2 >= 0.01: NaN) never
   triggers a split, since a split needs every regime's map.

The plan is an input of training: a user may edit ``plan.json``; ``load_plan`` refuses a plan
that cannot be trained (unknown task or regime, layer out of range, empty or overlapping groups).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PLAN_VERSION = 1
REGIME_NAMES = ("low", "mid", "high")


class PlanError(ValueError):
    """A plan that cannot be trained; the message names the offending field."""


@dataclass
class StudentSlice:
    """One student's slice: (layer group, task, regime)."""

    name: str
    group: int
    layers: list[int]
    task: str
    targets: list[str]
    regime: str  # "all" or one of REGIME_NAMES


@dataclass
class Plan:
    version: int
    num_layers: int  # hidden states 0..L (L+1 of them)
    tasks: list[str]
    targets: list[str]
    layer_groups: list[list[int]]
    students: list[StudentSlice]
    derivation: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: str | Path) -> None:
        self.validate()
        Path(path).write_text(self.to_json())

    def validate(self) -> None:
        """Raise ``PlanError`` naming the first problem."""
        if self.version != PLAN_VERSION:
            raise PlanError(f"version: {self.version} is not the supported plan version {PLAN_VERSION}")
        seen: set[int] = set()
        for g, group in enumerate(self.layer_groups):
            if not group:
                raise PlanError(f"layer_groups[{g}]: empty group")
            if sorted(group) != list(range(min(group), max(group) + 1)):
                raise PlanError(f"layer_groups[{g}]: layers {group} are not contiguous")
            if min(group) < 0 or max(group) >= self.num_layers:
                raise PlanError(f"layer_groups[{g}]: layers must be within 0..{self.num_layers - 1}")
            if seen & set(group):
                raise PlanError(f"layer_groups[{g}]: overlaps an earlier group")
            seen |= set(group)
        if not self.students:
            raise PlanError("students: the plan has no students")
        names = set()
        for k, student in enumerate(self.students):
            where = f"students[{k}] ({student.name})"
            if student.name in names:
                raise PlanError(f"{where}: duplicate name")
            names.add(student.name)
            if student.task not in self.tasks:
                raise PlanError(f"{where}: unknown task {student.task!r} (tasks: {self.tasks})")
            if student.regime != "all" and student.regime not in REGIME_NAMES:
                raise PlanError(f"{where}: unknown regime {student.regime!r} (use 'all' or one of {list(REGIME_NAMES)})")
            if not student.layers or min(student.layers) < 0 or max(student.layers) >= self.num_layers:
                raise PlanError(f"{where}: layers {student.layers} outside 0..{self.num_layers - 1}")
            unknown = [t for t in student.targets if t not in self.targets]
            if unknown or not student.targets:
                raise PlanError(f"{where}: unknown or no targets {unknown or student.targets}")


def _from_dict(data: dict) -> Plan:
    try:
        students = [StudentSlice(**s) for s in data["students"]]
        return Plan(
            version=int(data["version"]),
            num_layers=int(data["num_layers"]),
            tasks=list(data["tasks"]),
            targets=list(data["targets"]),
            layer_groups=[list(map(int, g)) for g in data["layer_groups"]],
            students=students,
            derivation=dict(data.get("derivation", {})),
        )
    except (KeyError, TypeError) as exc:
        raise PlanError(f"plan is missing or has a malformed field: {exc}") from exc


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise PlanError(f"{path}: no such plan file (make one with `cmm probe`)") from exc
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON ({exc})") from exc
    plan = _from_dict(data)
    try:
        plan.validate()
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from exc
    return plan


def contiguous_groups(profiles: np.ndarray, n_groups: int) -> list[list[int]]:
    """Cut rows 0..L into ``n_groups`` contiguous groups with minimal within-group SSE (exact DP)."""
    n = len(profiles)
    n_groups = max(1, min(n_groups, n))
    prefix = np.concatenate([np.zeros((1, profiles.shape[1])), np.cumsum(profiles, axis=0)])
    prefix_sq = np.concatenate([[0.0], np.cumsum((profiles**2).sum(axis=1))])

    def sse(i: int, j: int) -> float:  # rows i..j-1
        total = prefix[j] - prefix[i]
        return float(prefix_sq[j] - prefix_sq[i] - (total**2).sum() / (j - i))

    cost = np.full((n_groups + 1, n + 1), np.inf)
    back = np.zeros((n_groups + 1, n + 1), dtype=int)
    cost[0, 0] = 0.0
    for g in range(1, n_groups + 1):
        for j in range(g, n + 1):
            for i in range(g - 1, j):
                c = cost[g - 1, i] + sse(i, j)
                if c < cost[g, j]:
                    cost[g, j], back[g, j] = c, i
    cuts, j = [], n
    for g in range(n_groups, 0, -1):
        i = back[g, j]
        cuts.append(list(range(i, j)))
        j = i
    return cuts[::-1]


def derive_plan(
    f_task: np.ndarray,
    f_task_regime: np.ndarray,
    f_data: np.ndarray,
    target_names: list[str],
    tasks: list[str],
    n_groups: int = 3,
    regime_threshold: float = 0.25,
) -> Plan:
    """Build the plan from the maps (shapes: [L+1, targets], [L+1, targets, regimes], [L+1, components])."""
    num_layers = f_task.shape[0]
    profiles = np.concatenate([f_task, f_data], axis=1)
    groups = contiguous_groups(profiles, n_groups)
    students: list[StudentSlice] = []
    derivation: dict[str, object] = {"n_groups": n_groups, "regime_threshold": regime_threshold, "tasks": {}}
    for task in tasks:
        cols = [j for j, name in enumerate(target_names) if name.startswith(task + "_")]
        brightness = [float(f_task[np.ix_(g, cols)].mean()) for g in groups]
        best = int(np.argmax(brightness))
        # Regimes without a map (too few validation samples: NaN) cannot justify a split.
        present = [d for d in range(f_task_regime.shape[2]) if not np.isnan(f_task_regime[:, cols, d]).any()]
        differences = [float(np.abs(f_task_regime[:, cols, d] - f_task[:, cols]).mean()) if d in present else None for d in range(f_task_regime.shape[2])]
        split = len(present) == f_task_regime.shape[2] and max(x for x in differences if x is not None) > regime_threshold
        derivation["tasks"][task] = {"group_brightness": brightness, "regime_difference": differences, "regime_split": split}  # type: ignore[index]
        targets = [target_names[j] for j in cols]
        if not split:
            students.append(StudentSlice(f"{task}-g{best}-all", best, groups[best], task, targets, "all"))
            continue
        for d, regime in enumerate(REGIME_NAMES[: f_task_regime.shape[2]]):
            bright_d = [float(f_task_regime[np.ix_(g, cols, [d])].mean()) for g in groups]
            g_d = int(np.argmax(bright_d))
            students.append(StudentSlice(f"{task}-g{g_d}-{regime}", g_d, groups[g_d], task, targets, regime))
    plan = Plan(PLAN_VERSION, num_layers, list(tasks), list(target_names), groups, students, derivation)
    plan.validate()
    return plan
