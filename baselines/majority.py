"""Majority baseline: every question of a task gets the task's most frequent training reference.

The floor any model must clear: on a closed-set task it is the majority-class accuracy, on an open-ended task
the score of one stock answer. It reads neither the protein nor the instruction, so its modality is
"text-only" with no parameters. Ties between equally frequent references go to the lexicographically smallest,
so the answer never depends on file order. Closed tasks whose samples ask different questions (sp14_go_cc, one
GO term per sample) still get one overall answer: the simplest floor, not a per-question prior.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from sepit.data.sample import InstructionSample
from sepit.models.interface import GenerationConfig, ModelCard, ProteinLLM

if TYPE_CHECKING:
    from sepit.tasks import Task

# Bump when the rule changes: it keys saved predictions through the fingerprint.
CODE_VERSION = "majority-v1"


def most_frequent(references: Sequence[str]) -> str:
    """The most frequent text; ties go to the lexicographically smallest."""
    counts = Counter(references)
    return min(counts, key=lambda text: (-counts[text], text))


class MajorityModel(ProteinLLM):
    """Answers every sample of a task with that task's most frequent training reference."""

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}

    def describe(self) -> ModelCard:
        return ModelCard(name="majority", modality="text-only", params_total=0, params_active=0,
                         fingerprint=hashlib.sha256(f"majority|{CODE_VERSION}".encode()).hexdigest()[:16])

    def prepare(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            references = [s.reference for s in task.samples("train")]
            if not references:
                raise ValueError(f"the majority baseline needs training samples, and task {task.name!r} has none")
            self._answers[task.name] = most_frequent(references)

    def generate(self, samples: Sequence[InstructionSample], config: GenerationConfig) -> list[str]:
        unprepared = sorted({s.task for s in samples} - set(self._answers))
        if unprepared:
            raise RuntimeError(f"the majority baseline has not read task(s) {', '.join(map(repr, unprepared))}: "
                               "call prepare([task, ...]) with them before generate")
        return [self._answers[s.task] for s in samples]
