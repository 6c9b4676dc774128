"""Floors for closed-set questions that need no training data, for benchmarks released with a test split only.

- `first_option` answers every question with its first option: what a model scores by always picking A.
- `random_option` answers with an option drawn per sample from a seeded stream keyed by the task and sample id, so
  an answer never depends on batching, order or the number of processes. Its expected accuracy is chance.
- `option_prior` wraps a model that scores choices by log-likelihood and withholds the protein: each question is
  asked about one unknown residue ("X", no structure, no metadata), the same input for every question. The option it prefers
  is what the question and the options alone give away to that model; the board shows the wrapped model's gap to
  it (`ModelCard.control_of`).

Each answers with the option's text and reports a log-likelihood per option that ranks the chosen one first, so
extraction and likelihood scoring read the same answer. Open-ended tasks are refused before predicting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import TYPE_CHECKING, Any, Sequence

from sepit.data.errors import DataError
from sepit.data.protein import Protein
from sepit.data.sample import InstructionSample
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM

if TYPE_CHECKING:
    from sepit.tasks import Task

# Bump when a rule changes: it keys saved predictions through the fingerprint.
CODE_VERSION = "options-v1"
# The protein the option prior asks about: one unknown residue, no coordinates.
WITHHELD = Protein("withheld", "X")


def _closed_only(tasks: Sequence[Task], name: str) -> None:
    open_tasks = [t.name for t in tasks if t.kind != "closed"]
    if open_tasks:
        raise DataError(f"model {name!r}", f"answers closed-set questions only, and {', '.join(open_tasks)} "
                        f"{'is' if len(open_tasks) == 1 else 'are'} open-ended", "Leave the open tasks out of this run.")


def _one_hot(chosen: Sequence[int], samples: Sequence[InstructionSample]) -> list[list[float]]:
    """Log-likelihoods that rank the chosen option first (0 against -1 for the others)."""
    return [[0.0 if i == pick else -1.0 for i in range(len(s.choices or ()))] for pick, s in zip(chosen, samples)]


class FirstOptionModel(ProteinLLM):
    """Always the first option."""

    def describe(self) -> ModelCard:
        return ModelCard("first-option", "text-only", 0, 0,
                         hashlib.sha256(f"first-option|{CODE_VERSION}".encode()).hexdigest()[:16])

    def prepare(self, tasks: Sequence[Task]) -> None:
        _closed_only(tasks, "first_option")

    def choose(self, samples: Sequence[InstructionSample]) -> list[int]:
        return [0 for _ in samples]

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        return [s.choices[i] for s, i in zip(samples, self.choose(samples))]

    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        return _one_hot(self.choose(samples), samples)


class RandomOptionModel(FirstOptionModel):
    """An option drawn per sample from a stream seeded by (seed, task, sample id)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def describe(self) -> ModelCard:
        return ModelCard("random-option", "text-only", 0, 0,
                         hashlib.sha256(f"random-option|{self.seed}|{CODE_VERSION}".encode()).hexdigest()[:16])

    def prepare(self, tasks: Sequence[Task]) -> None:
        _closed_only(tasks, "random_option")

    def choose(self, samples: Sequence[InstructionSample]) -> list[int]:
        out = []
        for s in samples:
            stream = hashlib.sha256(f"{self.seed}|{s.task}|{s.id}".encode()).digest()
            out.append(random.Random(stream).randrange(len(s.choices)))
        return out


class OptionPriorModel(FirstOptionModel):
    """The option a model prefers by log-likelihood with the protein withheld.

    Args:
        model: the model to wrap, as `sepit bench --model` takes it (a registered name, a YAML file or a .ckpt).
        args: its constructor arguments (`--model_args` of the wrapped model).
    """

    def __init__(self, model: str, args: dict[str, Any] | None = None):
        from sepit.commands.bench import build_model

        self.inner = build_model(model, args)
        self.inner_card = self.inner.describe()
        if not self.inner.supports_loglikelihood:
            raise DataError(f"model {self.inner_card.name!r}", "cannot score choices by log-likelihood, which the "
                            "option prior needs", "Wrap a model that implements loglikelihood (SEPIT and the trainable "
                            "baselines do), or use first_option / random_option as the floor.")

    def describe(self) -> ModelCard:
        card = self.inner_card
        fingerprint = hashlib.sha256(f"option-prior|{card.fingerprint}|{CODE_VERSION}".encode()).hexdigest()[:16]
        return ModelCard(f"{card.name}-option-prior", "text-only", card.params_total, card.params_active,
                         fingerprint, control_of=card.name)

    def prepare(self, tasks: Sequence[Task]) -> None:
        _closed_only(tasks, "option_prior")
        self.inner.prepare(tasks)

    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        """The wrapped model's scores with the protein withheld; the metadata goes too: it may describe the
        protein (a 3Di string, an accession)."""
        return self.inner.loglikelihood([dataclasses.replace(s, protein=WITHHELD, metadata={}) for s in samples])

    def answer(self, samples: Sequence[InstructionSample], config: GenerationSettings
               ) -> list[tuple[str, dict[str, Any]]]:
        """The preferred option, with every option's score: `sepit bench` then needs no second scoring pass for
        a task scored by likelihood, so the wrapped model scores each batch once."""
        scores = self.loglikelihood(samples)
        return [(s.choices[_best(row)], {"loglikelihoods": [float(v) for v in row]}) for s, row in zip(samples, scores)]

    def choose(self, samples: Sequence[InstructionSample]) -> list[int]:
        return [_best(row) for row in self.loglikelihood(samples)]


def _best(scores: Sequence[float]) -> int:
    """The index of the highest score (the first on a tie)."""
    return max(range(len(scores)), key=scores.__getitem__)
