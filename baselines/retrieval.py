"""Retrieval baseline: answer with the reference of the training sample whose protein is most identical.

No learning and no text generation: it measures how far sequence homology alone gets on a task, so every
leaderboard shows what a model adds beyond copying its nearest training neighbour (docs/baselines.md). Identity is
`sepit.identity`'s: identical residues in a BLOSUM62 local alignment over the shorter length.

The neighbour is looked for among the training samples comparable to the question: those with the same
`metadata` (sp14_go_cc asks about one GO term per sample, so the neighbour must answer about the same term), or
all training samples when none has it. It is the most identical of the significant alignments (E <= 1e-3 in a
search of the task's whole training set), ties to the smaller protein id; when none is significant, the one with
the best alignment score, as a BLAST top hit would be (with MMseqs2, which reports only significant hits, the
first comparable sample). A protein with several comparable samples answers with the first in file order.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from sepit.data.sample import InstructionSample
from sepit.identity import DEFAULT_CANDIDATES, METHOD_VERSION, IdentitySearch, resolve_backend
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM
from sepit.tasks import training_samples

if TYPE_CHECKING:
    from sepit.tasks import Task

# Bump when the neighbour rule changes: it keys saved predictions through the fingerprint.
CODE_VERSION = "retrieval-v1"


def _metadata_key(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True, default=str)


@dataclass
class _TaskIndex:
    """One task's training split, grouped for neighbour lookup."""

    proteins: dict[str, str]  # protein id -> sequence
    everything: dict[str, InstructionSample]  # protein id -> its first training sample
    by_metadata: dict[str, dict[str, InstructionSample]] = field(default_factory=dict)
    search: IdentitySearch | None = None


class RetrievalModel(ProteinLLM):
    """Nearest training neighbour by sequence identity; copies its answer verbatim."""

    def __init__(self, backend: str = "biopython", candidates: int = DEFAULT_CANDIDATES):
        self.backend = resolve_backend(backend)  # fail at construction, not after loading every task
        self.candidates = candidates
        self._tasks: dict[str, _TaskIndex] = {}

    def describe(self) -> ModelCard:
        recipe = f"retrieval|{self.backend}|{self.candidates}|{CODE_VERSION}|{METHOD_VERSION}"
        return ModelCard(name="retrieval", modality="retrieval", params_total=0, params_active=0,
                         fingerprint=hashlib.sha256(recipe.encode()).hexdigest()[:16])

    def prepare(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            train = training_samples(task, "the retrieval baseline")
            index = _TaskIndex(proteins={}, everything={})
            for sample in train:
                index.proteins.setdefault(sample.protein.id, sample.protein.sequence)
                index.everything.setdefault(sample.protein.id, sample)
                group = index.by_metadata.setdefault(_metadata_key(sample.metadata), {})
                group.setdefault(sample.protein.id, sample)
            self._tasks[task.name] = index
        self._build_searches()

    def _build_searches(self) -> None:
        """One search over the union of the tasks' training proteins, so a test protein asked in several
        tasks is aligned once per target; a task whose protein ids clash with it gets its own."""
        shared: dict[str, str] = {}
        for index in self._tasks.values():
            if all(shared.get(pid, seq) == seq for pid, seq in index.proteins.items()):
                shared.update(index.proteins)
        current = next((i.search for i in self._tasks.values() if i.search is not None
                        and set(i.search.ids) == set(shared)), None)
        search = current or IdentitySearch(shared, candidates=self.candidates, backend=self.backend)
        for index in self._tasks.values():
            if all(shared.get(pid) == seq for pid, seq in index.proteins.items()):
                index.search = search
            elif index.search is None:
                index.search = IdentitySearch(index.proteins, candidates=self.candidates, backend=self.backend)

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        return [text for text, _ in self.answer(samples, config)]

    def answer(self, samples: Sequence[InstructionSample], config: GenerationSettings
               ) -> list[tuple[str, dict[str, Any]]]:
        """Each nearest training sample's answer, with that `neighbour` and its `neighbour_identity`."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, sample in enumerate(samples):
            if sample.task not in self._tasks:
                raise RuntimeError(f"the retrieval baseline has not read task {sample.task!r}: call "
                                   f"prepare([task]) with it before generate")
            groups[sample.task, _metadata_key(sample.metadata)].append(position)
        for task in {s.task for s in samples}:  # one MMseqs2 run per task, not per question group
            index = self._tasks[task]
            index.search.prefetch((s.protein.sequence for s in samples if s.task == task), index.proteins)
        answers: list[tuple[str, dict[str, Any]]] = [("", {})] * len(samples)
        for (task, key), positions in groups.items():
            index = self._tasks[task]
            comparable = index.by_metadata.get(key, index.everything)
            queries = {samples[p].protein.sequence: samples[p].protein.sequence for p in positions}
            # significance as in a search of the task's whole training set, whatever the comparable subset
            nearest = index.search.nearest_many(queries, allowed=comparable, database=index.proteins)
            for p in positions:
                sample = samples[p]
                hit = nearest[sample.protein.sequence]
                if hit is None:  # MMseqs2 found no significant alignment: the first comparable sample
                    neighbour, identity = next(iter(comparable.values())), 0.0
                else:
                    neighbour, identity = comparable[hit.protein_id], hit.identity
                answers[p] = (neighbour.reference, {"neighbour": neighbour.id, "neighbour_identity": identity})
        return answers
