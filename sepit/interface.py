"""The common model interface. SEPIT, every baseline, API models and replayed predictions implement it,
so `sepit bench` treats them alike. It imports no deep-learning framework: retrieval and API models need none.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from sepit.data.sample import InstructionSample
from sepit.errors import InputError

if TYPE_CHECKING:
    from sepit.tasks import Task

Modality = Literal["seq", "seq+structure", "text-only", "retrieval", "api"]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; their hash keys saved predictions, so changed settings never reuse old rows.
    (Named apart from Hugging Face's `GenerationConfig`, which the LLMs carry too.)

    `logprobs` adds `token_ids` and `token_logprobs` (natural log, one per generated token) to each row. It
    changes no answer, so it is not in the hash: a row with them serves a run without, and a run that asks
    for them refuses rows written without (`sepit bench`). `batch_size` (rows decoded together, from
    `sepit bench --batch_size`) changes no greedy answer (tested), so it is not in the hash either."""

    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default: reproducible numbers
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: bool = False
    batch_size: int | None = None  # None: every sample of a `generate` call at once

    def check(self) -> None:
        """Refuse settings no decoder can follow, before a model loads (`sepit bench --generation.*`)."""
        if self.max_new_tokens < 1:
            raise InputError("--generation.max_new_tokens", f"must be 1 or more, got {self.max_new_tokens}",
                             "Set e.g. 256.")
        if self.do_sample and self.temperature <= 0:
            raise InputError("--generation.temperature", f"must be above 0 when sampling, got {self.temperature}",
                             "Set e.g. 1.0, or do_sample false for greedy answers.")
        if not 0 < self.top_p <= 1:
            raise InputError("--generation.top_p", f"must be in (0, 1], got {self.top_p}", "Set e.g. 1.0.")

    def record(self) -> dict[str, Any]:
        """What a results file records of them (the batch size has its own entry there)."""
        settings = asdict(self)
        del settings["batch_size"]
        return settings

    def hash(self) -> str:
        settings = self.record()
        del settings["logprobs"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelCard:
    """What `describe()` reports and results files record."""

    name: str
    modality: Modality
    params_total: int | None  # None where unknown (API models)
    params_active: int | None  # per token; equals params_total for dense models
    fingerprint: str  # changes whenever the weights or anything else that changes outputs changes
    # A control's subject: the model (its card name) whose input this one withholds something from. The board
    # shows that model's gap to it (`option_prior`: the protein withheld).
    control_of: str | None = None

    def record(self) -> dict[str, Any]:
        """The "model" section of a results file (docs/evaluation.md); `control_of` only for a control."""
        record = asdict(self)
        if record["control_of"] is None:
            del record["control_of"]
        return record


class ProteinLLM(ABC):
    """Answers instruction samples about proteins."""

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Called once before predicting on `tasks` (before any worker process starts). Training-free
        baselines read the tasks' training splits here; trained models need nothing."""

    @abstractmethod
    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        """One answer per sample, in order (`config.batch_size` rows at a time, or as the model sees fit)."""

    def answer(self, samples: Sequence[InstructionSample], config: GenerationSettings
               ) -> list[tuple[str, dict[str, Any]]]:
        """Each answer with the extra fields of its prediction row (e.g. the retrieval neighbour and its identity,
        or token log-probabilities); what `sepit bench` calls. By default `generate`'s answers with none: a model
        with extra fields overrides this and derives `generate` from it."""
        texts = self.generate(samples, config)
        details = getattr(self, "details", None)  # the name before `answer`: kept one release for plug-ins
        if details is None:
            return [(text, {}) for text in texts]
        import warnings

        warnings.warn(f"{type(self).__name__}.details() is deprecated: override answer() instead", DeprecationWarning)
        return list(zip(texts, details(samples), strict=True))

    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        """Per sample, the log-likelihood of each of its `choices` as the answer (closed-set scoring)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score choices by likelihood; "
                                  "score this task by answer extraction instead.")

    @property
    def supports_loglikelihood(self) -> bool:
        return type(self).loglikelihood is not ProteinLLM.loglikelihood

    # Whether `answer()` reports `token_ids` and `token_logprobs` when generating with `logprobs=True`.
    supports_logprobs: bool = False

    # How many such batches one `generate` call receives. A model that batches continuously (a finished row's
    # slot goes to the next waiting sample) takes several, so its slots are not left to drain at every call.
    batches_per_call: int = 1

    @abstractmethod
    def describe(self) -> ModelCard:
        ...


def __getattr__(name: str) -> Any:
    if name == "GenerationConfig":  # the name before GenerationSettings; kept one release for plug-ins
        import warnings

        warnings.warn("sepit.interface.GenerationConfig is now GenerationSettings", DeprecationWarning, stacklevel=2)
        return GenerationSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
