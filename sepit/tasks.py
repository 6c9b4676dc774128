"""Tasks and task suites: what a benchmark question set is, and how to find one by name.

A Task is mostly data (name, version, kind, answer format, metric profile, the files it reads with their
SHA-256 manifest); Python only builds its samples. Tasks reach the framework through the `sepit.tasks`
entry-point group: an entry names a Task, a TaskSuite, or a function returning either.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

from sepit.data.errors import DataError
from sepit.data.manifest import verify_files
from sepit.data.sample import CaptionPair, InstructionSample, is_yes_no
from sepit.registry import TASKS, RegistryError, call_if_factory

SPLITS = ("train", "valid", "test")
_FILE_NAME = re.compile(r"[\w.-]+")  # a task names its predictions file


@dataclass(frozen=True)
class Task:
    name: str
    version: str
    kind: Literal["open", "closed"]
    description: str
    # How a closed-set answer is read: "yes_no" or "multiple_choice"; "free_text" for open-ended tasks.
    answer_format: Literal["free_text", "yes_no", "multiple_choice"]
    build: Callable[[], Mapping[str, Sequence[InstructionSample]]] = field(repr=False)
    # The profile the task's card recommends (`sepit data info`). A run scores every task with the one profile
    # it is given (`--scoring.profile`), since a results file and a board hold one.
    metric_profile: str = "sepit_v1"
    manifest: Path | None = None
    data_files: tuple[str, ...] = ()
    # False for a benchmark file without answers (e.g. Evolla's inputs.tsv): predicted, never scored.
    has_references: bool = True

    def verify(self) -> dict[str, str]:
        """{file: sha256} of the task's data files, after checking them against the manifest."""
        return verify_files(self.manifest, self.data_files) if self.manifest else {}

    def splits(self) -> dict[str, list[InstructionSample]]:
        self.verify()
        return {split: list(samples) for split, samples in self.build().items()}

    def samples(self, split: str) -> list[InstructionSample]:
        splits = self.splits()
        if split not in splits:
            raise DataError(f"task {self.name!r}", f"has no split {split!r}", f"Choose one of {', '.join(splits)}.")
        return splits[split]


@dataclass(frozen=True)
class TaskSuite:
    """A family of tasks built from one data source, with its benchmark card."""

    name: str
    version: str
    description: str
    tasks: tuple[Task, ...]
    sources: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    # The open-ended task whose references are whole captions: stage-1 data, and stage-0 pairs.
    caption_task: str | None = None

    def task(self, name: str) -> Task:
        return {t.name: t for t in self.tasks}[name]

    def caption_pairs(self, split: str) -> list[CaptionPair]:
        """Protein-caption pairs for the stage-0 contrastive warm-up, one per protein."""
        if self.caption_task is None:
            return []
        pairs = {}
        for sample in self.task(self.caption_task).samples(split):
            pairs.setdefault(sample.protein.id, CaptionPair(sample.protein.id, sample.protein, sample.reference))
        return list(pairs.values())


def training_samples(task: Task, needed_by: str) -> list[InstructionSample]:
    """A task's train split, for a baseline that learns from it; a test-only task is refused with what to use."""
    samples = task.splits().get("train")
    if not samples:
        raise DataError(f"task {task.name!r}", f"{needed_by} needs a train split, and this task has none (a "
                        "test-only benchmark)", "Leave it out of this run, or use a baseline that needs no training "
                        "data: first_option, random_option or option_prior for closed-set tasks (docs/baselines.md).")
    return samples


def sample_hash(samples: Sequence[InstructionSample]) -> str:
    """SHA-256 of what a model sees and is scored against: ids, proteins, prompts, references, choices, and the
    reference's annotations where a sample has them (metadata.entities)."""
    digest = hashlib.sha256()
    for s in samples:
        row = [s.task, s.id, s.protein.id, s.protein.sequence, s.instruction, s.reference, s.choices]
        if "entities" in s.metadata:
            row.append(s.metadata["entities"])
        digest.update(json.dumps(row, sort_keys=True).encode())
        digest.update(b"\n" if s.protein.coords is None else s.protein.coords.tobytes())
    return digest.hexdigest()


def suites() -> dict[str, TaskSuite]:
    found = {}
    for name in TASKS.names():
        obj = call_if_factory(TASKS.get(name), (Task, TaskSuite))
        if isinstance(obj, TaskSuite):
            found[obj.name] = obj
    return found


def all_tasks() -> dict[str, Task]:
    """Every registered task by name, suites expanded; a name used twice is an error."""
    tasks: dict[str, Task] = {}
    for name in TASKS.names():
        obj = call_if_factory(TASKS.get(name), (Task, TaskSuite))
        for task in obj.tasks if isinstance(obj, TaskSuite) else (obj,):
            if task.name in tasks:
                raise RegistryError(f"task {task.name!r}", f"is defined twice (entry point {name!r})", "Rename one.")
            tasks[task.name] = task
    return tasks


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise RegistryError(f"task {name!r}", f"unknown; known tasks: {', '.join(sorted(tasks)) or 'none'}",
                            "Check the spelling; `sepit data info` lists every task.")
    return tasks[name]


def tasks_from_file(path: str | Path) -> list[Task]:
    """The tasks of a generic JSONL task file (docs/data.md), versioned by the file's hash; or of a YAML task
    mapping (`sepit.data.mapping`), versioned by its label and the hash of the mapping and its data."""
    if str(path).endswith((".yaml", ".yml")):
        from sepit.data.mapping import TaskMapping

        mapping = TaskMapping(path)
        return _tasks(mapping.splits(), mapping.version, mapping.description, mapping.has_references)
    from sepit.data.generic import read_task_file

    version = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return _tasks(read_task_file(path), version, f"from {path}")


def _tasks(splits: Mapping[str, Sequence[InstructionSample]], version: str, description: str,
           has_references: bool = True) -> list[Task]:
    """Tasks from samples read from one file, by each sample's task; the first sample says the answer format."""
    by_task: dict[str, dict[str, list[InstructionSample]]] = {}
    for split, samples in splits.items():
        for sample in samples:
            by_task.setdefault(sample.task, {}).setdefault(split, []).append(sample)
    tasks = []
    for name, task_splits in sorted(by_task.items()):
        if not _FILE_NAME.fullmatch(name):
            raise DataError(f"task {name!r}", "its name is not a file name of letters, digits, '_', '-' or '.'",
                            "Rename the task: it names its predictions file.")
        first = next(iter(task_splits.values()))[0]
        kind = first.kind
        other = next((s for samples in task_splits.values() for s in samples if s.kind != kind), None)
        if other is not None:
            raise DataError(f"task {name!r}", f"mixes open and closed questions (sample {first.id!r} is {kind}, "
                            f"sample {other.id!r} is {other.kind})", "Give every question of a task choices, or none; "
                            "split the file into two tasks otherwise.")
        answer_format = "free_text" if kind == "open" else (
            "yes_no" if is_yes_no(first.choices) else "multiple_choice")
        tasks.append(Task(name, version, kind, description, answer_format,
                          build=lambda task_splits=task_splits: task_splits, has_references=has_references))
    return tasks


def resolve_tasks(specs: Sequence[str]) -> list[Task]:
    """Task names, suite names (all their tasks), generic task files or YAML task mappings, in order, without
    repeats."""
    found: dict[str, Task] = {}
    for spec in specs:
        if spec.endswith((".jsonl", ".yaml", ".yml")) or Path(spec).is_file():
            if not Path(spec).is_file():
                raise DataError(spec, "task file not found", "Give task names, suite names, an existing "
                                "JSONL task file or a YAML task mapping (docs/data.md).")
            chosen = tasks_from_file(spec)
        elif spec in (known_suites := suites()):
            chosen = list(known_suites[spec].tasks)
        else:
            chosen = [get_task(spec)]
        for task in chosen:
            found.setdefault(task.name, task)
    return list(found.values())
