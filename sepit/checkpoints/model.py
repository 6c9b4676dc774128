"""SEPIT behind the common model interface: a stage-1 or stage-2 checkpoint written by `sepit fit`.

    sepit bench --model runs/tiny/stage2/checkpoints/last.ckpt --tasks sp14 --output runs/tiny/bench

The checkpoint is read with `weights_only=True` and rebuilt from its architecture record and the tokenizer
saved beside it (`sepit.checkpoints.stage`); the original model folders are not needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from sepit.data.errors import DataError
from sepit.errors import InputError
from sepit.data.manifest import sha256_file, sha256_folder
from sepit.data.sample import InstructionSample
from sepit.checkpoints.stage import (TOKENIZER_DIR, build_from_record, cast_module, load_into,
                                    read_stage_checkpoint, registered_model_for)
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM
from sepit.models.moe import count_parameters
from sepit.models.network import ProteinLanguageModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def dtype_named(name: str) -> torch.dtype:
    """The torch dtype of a `dtype` model argument."""
    if name not in DTYPES:
        raise InputError("dtype", f"unknown dtype {name!r}", f"Use one of {', '.join(DTYPES)} (or --precision).")
    return DTYPES[name]


def load_checkpoint(checkpoint: str | Path, sequence_only: bool = False, registered_name: str | None = None,
                    dtype: str | None = None) -> tuple[ProteinLanguageModel, list[str]]:
    """The model a stage-1/2 (or trainable-baseline) checkpoint holds, and the SHA-256 of every file it was
    read from (the checkpoint and its tokenizer). With `registered_name`, a checkpoint holding another
    registered model is refused: results carry the name on the leaderboard.

    The model is built with its parameters on the meta device and the checkpoint's tensors, memory-mapped, take
    their place in `dtype` (default: the dtype they were saved in, used without a copy): the weights are in
    memory once, never first in float32 and then cast (BENCHMARKS.md, "Loading a checkpoint")."""
    from transformers import AutoTokenizer

    path = Path(checkpoint)
    record, state = read_stage_checkpoint(path, stages=(1, 2))
    holds = registered_model_for(record)
    if registered_name is not None and holds != registered_name:
        raise DataError(str(path), f"holds a {holds} model, not {registered_name}",
                        f"Evaluate it with `--model {holds}`, or give the .ckpt path alone as --model.")
    tokenizer_dir = path.parent / TOKENIZER_DIR  # never a path taken from inside the file
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        raise DataError(str(tokenizer_dir), "tokenizer not found beside the checkpoint",
                        "Keep the checkpoint in its folder: `sepit fit` writes tokenizer/ next to it.")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True, trust_remote_code=False)
    try:
        model = build_from_record(record, tokenizer, sequence_only, empty=True)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(str(path), f"has an architecture record this version cannot build ({type(err).__name__}: "
                        f"{err})", "Evaluate it with the sepit-bench version that wrote it.") from None
    saved = next((t.dtype for name, t in state.items() if name.startswith("model.") and t.is_floating_point()),
                 torch.float32)
    load_into(model, state, "model.", path, dtype_named(dtype) if dtype else saved if saved in DTYPE_NAMES else torch.float32,
              mapped=True)
    files = [sha256_file(path)] + sha256_folder(tokenizer_dir)
    return model, files


class TrainedModel(ProteinLLM):
    """A trained `ProteinLanguageModel` behind the common interface: greedy (or sampled) answers, choice
    log-likelihoods and its card. Subclasses load the network (from a checkpoint, or from a model folder)."""

    supports_logprobs = True
    batches_per_call = 8  # continuous batching (sepit.models.decoding): rows refill from the rest of the call

    def __init__(self, model: ProteinLanguageModel, name: str, files: list[str], dtype: str | None = None,
                 device: str = "auto", loglikelihood_batch_size: int = 16):
        """`files`: the SHA-256 of every file the network was read from (with its prompt settings) for the
        fingerprint; `dtype` None: the dtype the weights were loaded in (buffers follow it)."""
        dtype = dtype or DTYPE_NAMES.get(next(model.parameters()).dtype, "float32")
        self.model = cast_module(model.eval().requires_grad_(False), dtype_named(dtype))
        self.name, self.device_spec = name, device
        self.sequence_only = model.encoder is None or model.encoder.sequence_only
        self.loglikelihood_batch_size = loglikelihood_batch_size
        settings = {"sequence_only": self.sequence_only, "dtype": dtype}
        if dtype != "float32":
            settings["rotary"] = "float32"  # since rotary frequencies stay float32 (`cast_module`)
        options = json.dumps(settings)
        self.fingerprint = hashlib.sha256("\n".join([*files, options]).encode()).hexdigest()[:16]

    def _ready(self) -> None:
        """Move to this process's device on first use (Lightning has set the rank's GPU by then)."""
        if self.device_spec == "auto":
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        else:
            device = torch.device(self.device_spec)
        self.model.to(device)

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        return [text for text, _ in self.answer(samples, config)]

    def answer(self, samples: Sequence[InstructionSample], config: GenerationSettings
               ) -> list[tuple[str, dict[str, Any]]]:
        """Each answer, with its `token_ids` and `token_logprobs` when `config.logprobs` asks for them."""
        self._ready()
        return [(self.model.decode(ids), {} if logprobs is None else
                 {"token_ids": ids.tolist(), "token_logprobs": logprobs.tolist()})
                for ids, logprobs in self.model.generate_tokens(samples, config, config.batch_size)]

    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        """Sum of the log-probabilities of each choice's tokens (and eos) as the answer."""
        self._ready()
        pairs = [dataclasses.replace(s, reference=choice) for s in samples for choice in s.choices or ()]
        scores: list[float] = []
        for start in range(0, len(pairs), self.loglikelihood_batch_size):
            scores += self.model.answer_log_likelihoods(pairs[start:start + self.loglikelihood_batch_size]).tolist()
        out, at = [], 0
        for sample in samples:
            n = len(sample.choices or ())
            out.append(scores[at:at + n])
            at += n
        return out

    def describe(self) -> ModelCard:
        total, active = count_parameters(self.model)
        return ModelCard(self.name, "seq" if self.sequence_only else "seq+structure", total, active,
                         self.fingerprint)


class CheckpointModel(TrainedModel):
    """A model read from a stage-1/2 checkpoint of `sepit fit`, refusing a checkpoint that holds another model:
    results carry the name on the leaderboard. Subclasses say which model they stand for."""

    registered_name: str  # the entry point
    default_name: str  # the name in results unless `name` is given
    official_name: str | None = None  # ... for a checkpoint converted from the official release

    def __init__(self, checkpoint: str, name: str | None = None, sequence_only: bool = False,
                 dtype: Literal["float32", "bfloat16", "float16"] | None = None, device: str = "auto",
                 loglikelihood_batch_size: int = 16):
        """
        Args:
            checkpoint: a stage-1 or stage-2 .ckpt from `sepit fit`, with its tokenizer/ folder beside it.
            name: the model's name in results and on the leaderboard (default: `default_name`, or
                `official_name` for a converted official checkpoint).
            sequence_only: ignore coordinates (an ablation of the same weights).
            dtype: weights and activations (bfloat16 halves GPU memory); default the dtype the checkpoint was
                saved in (`sepit bench --precision`).
            device: auto (this process's GPU if there is one, else CPU), cpu, cuda or cuda:N.
            loglikelihood_batch_size: (sample, choice) pairs per forward pass when scoring choices.
        """
        model, files = load_checkpoint(checkpoint, sequence_only, self.registered_name, dtype)
        name = name or (self.official_name if model.official is not None and self.official_name else self.default_name)
        super().__init__(model, name, files, dtype, device, loglikelihood_batch_size)



class SepitModel(CheckpointModel):
    """A trained SEPIT model."""

    registered_name = "sepit"
    default_name = "sepit"
    official_name = "sepit-official"
