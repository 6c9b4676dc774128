"""The training proteins the leakage report compares a task's test proteins with.

By default a task's own train split. A benchmark released with a test split only (the usual case for external
data) has none; `--scoring.train` then names the proteins the model was trained on: a registered task or suite
(their train splits), a task file or mapping (its train split, or every sample when it has no split called
train), or a FASTA file. Without either the report is skipped, and results.json says why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from sepit.data.errors import DataError

if TYPE_CHECKING:
    from sepit.tasks import Task

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fasta.gz", ".fa.gz", ".faa.gz", ".fas.gz")
NO_TRAINING_SET = ("the task has no train split and --scoring.train names no training set; name the proteins the "
                   "model was trained on (a task or suite, a task file or mapping, or a FASTA file) to see how close "
                   "the test proteins are to them")


@dataclass(frozen=True)
class TrainingSet:
    source: str  # what it was read from, as results.json records it
    sequences: Mapping[str, str]  # protein id -> sequence

    def key(self) -> str:
        """A hash of the proteins: keys the identity cache."""
        return hashlib.sha256(json.dumps(sorted(self.sequences.items())).encode()).hexdigest()

    def record(self) -> dict:
        return {"source": self.source, "proteins": len(self.sequences)}


def task_training_set(task: Task) -> TrainingSet | None:
    """The task's own train split, or None when it has none."""
    train = task.splits().get("train")
    if not train:
        return None
    return TrainingSet(f"{task.name} (train split)", {s.protein.id: s.protein.sequence for s in train})


def named_training_set(spec: str) -> TrainingSet:
    """The training set `--scoring.train` names (see the module docstring)."""
    path = Path(spec)
    stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    return _named_training_set(spec, stamp)


@lru_cache(maxsize=4)  # `sepit bench` reads it before predicting (to fail early) and again when scoring
def _named_training_set(spec: str, stamp: tuple[int, int] | None) -> TrainingSet:
    """`named_training_set`, read once per file state (`stamp`: the file's mtime and size)."""
    if spec.lower().endswith(FASTA_SUFFIXES):
        from sepit.data.fasta import read_fasta

        if not Path(spec).is_file():
            raise DataError("--scoring.train", f"FASTA file {spec!r} not found", "Give the path of an existing file.")
        return TrainingSet(spec, read_fasta(spec))
    from sepit.tasks import resolve_tasks

    sequences: dict[str, str] = {}
    for task in resolve_tasks([spec]):
        splits = task.splits()
        chosen = splits["train"] if "train" in splits else (
            [s for samples in splits.values() for s in samples] if Path(spec).is_file() else [])
        sequences.update((s.protein.id, s.protein.sequence) for s in chosen)
    if not sequences:
        raise DataError("--scoring.train", f"{spec!r} holds no training proteins",
                        "Name a task or suite with a train split, a task file or mapping, or a FASTA file.")
    return TrainingSet(spec, sequences)
