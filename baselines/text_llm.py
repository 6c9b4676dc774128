"""Sequence-as-text LLM (Galactica, ProLLaMA, Mol-Instructions, SEPIT's "PureLLM"): no protein encoder; the
amino-acid sequence is written into the prompt through the formatter registry (`sepit.models.formatters`:
galactica `[START_AMINO]…[END_AMINO]`, seq_equals `Seq=<…>`, raw, bop `<bop>…<eop>`).

Two ways in:
- a checkpoint from `sepit fit --config configs/baselines/tiny/text_llm.yaml` (full fine-tuning) or
  `text_llm_lora.yaml` (LoRA): the format, the residue cut and any LoRA come from its record;
- a released model folder (`llm`; e.g. Galactica with `sequence_format: galactica_split`, or ProLLaMA with
  `seq_equals`), optionally with a peft LoRA adapter folder (`adapter`), such as the `adapter/` folder a LoRA
  run writes beside its checkpoints.

    sepit bench --model text_llm --model_args '{checkpoint: runs/tiny/text_llm/checkpoints/last.ckpt}' ...
    sepit bench --model text_llm --model_args '{llm: models/galactica-1.3b, sequence_format: galactica_split}' ...
    sepit bench --model text_llm --model_args '{llm: tiny:llm, adapter: runs/tiny/text_llm_lora/checkpoints/adapter}' ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from sepit.data.errors import DataError
from sepit.data.manifest import sha256_folder
from sepit.data.protein import ESM2_WINDOW
from sepit.errors import InputError
from sepit.models.lora import PROMPT_FILE, is_lora
from sepit.checkpoints.model import TrainedModel, dtype_named, load_checkpoint
from sepit.models.network import ProteinLanguageModel, TextLanguageModel
from sepit.model_paths import resolve_model_path


def prompt_settings(adapter_dir: Path | None, sequence_format: str | None, max_residues: int | None
                    ) -> tuple[str, int]:
    """The prompt settings: those an adapter was trained with (its `sepit_prompt.json`), else the arguments, else
    galactica and the ESM-2 window. Arguments that contradict the adapter's are refused."""
    trained = {}
    if adapter_dir is not None and (adapter_dir / PROMPT_FILE).is_file():
        trained = json.loads((adapter_dir / PROMPT_FILE).read_text())
    given = {"sequence_format": sequence_format, "max_residues": max_residues}
    for key, value in given.items():
        if value is not None and key in trained and trained[key] != value:
            raise DataError(str(adapter_dir / PROMPT_FILE), f"the adapter was trained with {key}={trained[key]!r}, "
                            f"not {value!r}", f"Leave {key} out to use the adapter's own setting.")
    return (sequence_format or trained.get("sequence_format") or "galactica",
            max_residues or trained.get("max_residues") or ESM2_WINDOW)


def load_pretrained(llm: str, adapter: str | None, sequence_format: str | None, max_residues: int | None,
                    dtype: str | None = None) -> tuple[ProteinLanguageModel, list[str]]:
    """A released causal LM (and LoRA adapter) from local folders, reading sequences as text, in `dtype` (default:
    the dtype its config names); and the SHA-256 of every file read, with the prompt settings."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm_dir = resolve_model_path(llm)
    adapter_dir = None if adapter is None else resolve_model_path(adapter)
    sequence_format, max_residues = prompt_settings(adapter_dir, sequence_format, max_residues)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False)
    language_model = AutoModelForCausalLM.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False,
                                                          dtype=dtype_named(dtype) if dtype else "auto")
    model = TextLanguageModel(language_model, tokenizer, sequence_format, max_residues)
    files = sha256_folder(llm_dir)
    if adapter_dir is not None:
        from peft import PeftModel

        model.llm = PeftModel.from_pretrained(model.llm, adapter_dir, is_trainable=False)
        files += sha256_folder(adapter_dir)
    return model, files + [f"{sequence_format}:{max_residues}"]  # the prompt is part of what is evaluated


class TextLLMModel(TrainedModel):
    """An LLM that reads the sequence as text, from a `sepit fit` checkpoint or from a released model folder."""

    registered_name = "text_llm"

    def __init__(self, checkpoint: str | None = None, llm: str | None = None, adapter: str | None = None,
                 sequence_format: str | None = None, max_residues: int | None = None, name: str | None = None,
                 dtype: Literal["float32", "bfloat16", "float16"] | None = None, device: str = "auto",
                 loglikelihood_batch_size: int = 16):
        """
        Args:
            checkpoint: a .ckpt from `sepit fit --config configs/baselines/.../text_llm*.yaml` (its record sets
                the format, the residue cut and LoRA).
            llm: instead, a released Hugging Face causal-LM folder.
            adapter: with llm, a peft LoRA adapter folder to load onto it (an `adapter/` written by a LoRA run
                carries its prompt settings).
            sequence_format: with llm, how the sequence is written (`sepit.models.formatters`; default: the
                adapter's, else galactica; galactica_split for the released Galactica models).
            max_residues: with llm, residues written into the prompt (default: the adapter's, else 1022).
            name: the model's name in results and on the leaderboard (default text-llm, or text-llm-lora).
            dtype: weights and activations; default the dtype the checkpoint or the model folder was saved in.
            device: auto, cpu, cuda or cuda:N.
            loglikelihood_batch_size: (sample, choice) pairs per forward pass when scoring choices.
        """
        if (checkpoint is None) == (llm is None):
            raise InputError("model text_llm", "needs either checkpoint (a .ckpt from `sepit fit`) or llm (a model "
                             "folder), not both", "Give --model_args '{checkpoint: FILE.ckpt}' or '{llm: FOLDER}'.")
        if checkpoint is not None:
            extra = [key for key, value in (("adapter", adapter), ("sequence_format", sequence_format),
                                            ("max_residues", max_residues)) if value is not None]
            if extra:
                raise InputError("model text_llm", f"{', '.join(extra)} go(es) with llm; a checkpoint records its "
                                 "own LoRA weights and prompt settings", f"Leave {', '.join(extra)} out.")
            model, files = load_checkpoint(checkpoint, registered_name=self.registered_name, dtype=dtype)
        else:
            model, files = load_pretrained(llm, adapter, sequence_format, max_residues, dtype)
        if name is None:
            name = "text-llm-lora" if is_lora(model.llm) else "text-llm"
        super().__init__(model, name, files, dtype, device, loglikelihood_batch_size)
