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

if TYPE_CHECKING:
    from sepit.tasks import Task

Modality = Literal["seq", "seq+structure", "text-only", "retrieval", "api"]


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; their hash keys saved predictions, so changed settings never reuse old rows.

    `logprobs` adds `token_ids` and `token_logprobs` (natural log, one per generated token) to each row. It
    changes no answer, so it is not in the hash: a row with them serves a run without, and a run that asks
    for them refuses rows written without (`sepit bench`)."""

    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default: reproducible numbers
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: bool = False

    def hash(self) -> str:
        settings = asdict(self)
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

    def details(self, samples: Sequence[InstructionSample]) -> list[dict[str, Any]]:
        """Extra fields for each sample's prediction row (e.g. the retrieval neighbour and its identity),
        asked right after `generate` on the same samples."""
        return [{} for _ in samples]

    @abstractmethod
    def generate(self, samples: Sequence[InstructionSample], config: GenerationConfig) -> list[str]:
        """One answer per sample, in order (batched by the implementation as it sees fit)."""

    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        """Per sample, the log-likelihood of each of its `choices` as the answer (closed-set scoring)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score choices by likelihood; "
                                  "score this task by answer extraction instead.")

    @property
    def supports_loglikelihood(self) -> bool:
        return type(self).loglikelihood is not ProteinLLM.loglikelihood

    # Whether `details()` reports `token_ids` and `token_logprobs` when generating with `logprobs=True`.
    supports_logprobs: bool = False

    # Rows decoded together (`sepit bench --batch_size`, set before predicting); None: every sample given at once.
    batch_size: int | None = None
    # How many such batches one `generate` call receives. A model that batches continuously (a finished row's
    # slot goes to the next waiting sample) takes several, so its slots are not left to drain at every call.
    batches_per_call: int = 1

    @abstractmethod
    def describe(self) -> ModelCard:
        ...
