"""Majority baselines: the most frequent training reference, of the task or of the same question.

`majority` is the floor any model must clear: every sample of a task gets the task's most frequent training
reference. On a closed-set task that is the majority-class accuracy, on an open-ended task the score of one
stock answer. It reads neither the protein nor the instruction, so its modality is "text-only" with no
parameters.

`question_majority` reads the instruction but not the protein: each sample gets the most frequent training
reference among the samples of its task that ask the same instruction (the text with its `<protein>`
placeholder), and the task's majority when no training sample asks it. It is the question-only ("blind")
control of visual question answering: whatever it scores, a task's questions give away without the protein.
On sp14_go_cc, which asks about one GO term per sample, the training answers to the same term are mostly the
same, and this prior alone scores 79 % on the test split (docs/baselines.md).

Ties between equally frequent references go to the lexicographically smallest, so an answer never depends on
file order.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from sepit.data.sample import InstructionSample
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM
from sepit.tasks import training_samples

if TYPE_CHECKING:
    from sepit.tasks import Task

# Bump when a rule changes: it keys saved predictions through the fingerprint.
CODE_VERSION = "majority-v1"
QUESTION_CODE_VERSION = "question-majority-v1"


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
            references = [s.reference for s in training_samples(task, f"the {self.describe().name} baseline")]
            self._answers[task.name] = most_frequent(references)

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        unprepared = sorted({s.task for s in samples} - set(self._answers))
        if unprepared:
            raise RuntimeError(f"the majority baseline has not read task(s) {', '.join(map(repr, unprepared))}: "
                               "call prepare([task, ...]) with them before generate")
        return [self._answers[s.task] for s in samples]


class QuestionMajorityModel(MajorityModel):
    """Answers each sample with the most frequent training reference to the same instruction of its task, or
    the task's when no training sample asks it."""

    def __init__(self) -> None:
        super().__init__()
        self._by_question: dict[str, dict[str, str]] = {}  # task -> instruction -> answer

    def describe(self) -> ModelCard:
        return ModelCard(name="question-majority", modality="text-only", params_total=0, params_active=0,
                         fingerprint=hashlib.sha256(f"question-majority|{QUESTION_CODE_VERSION}".encode())
                         .hexdigest()[:16])

    def prepare(self, tasks: Sequence[Task]) -> None:
        super().prepare(tasks)
        for task in tasks:
            references: dict[str, list[str]] = {}
            for sample in training_samples(task, "the question-majority baseline"):
                references.setdefault(sample.instruction, []).append(sample.reference)
            self._by_question[task.name] = {question: most_frequent(answers)
                                            for question, answers in references.items()}

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        task_answers = super().generate(samples, config)  # also refuses tasks it has not read
        return [self._by_question[s.task].get(s.instruction, fallback) for s, fallback in zip(samples, task_answers)]
