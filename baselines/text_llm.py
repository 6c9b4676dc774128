"""Sequence-as-text LLM (Galactica, ProLLaMA, Mol-Instructions, SEPIT's "PureLLM"): no protein encoder; the
amino-acid sequence is written into the prompt through the formatter registry (`sepit.models.formatters`:
galactica `[START_AMINO]…[END_AMINO]`, seq_equals `Seq=<…>`, raw, bop `<bop>…<eop>`).

Two ways in:
- a checkpoint from `sepit fit --config configs/baselines/tiny/text_llm.yaml` (full fine-tuning) or
  `text_llm_lora.yaml` (LoRA): the format, the residue cut and any LoRA come from its record;
- a released model folder (`llm`), optionally with a peft LoRA adapter folder (`adapter`): e.g. LLaMA + the
  Mol-Instructions protein adapter, or the `adapter/` folder a LoRA run writes beside its checkpoints.

    sepit bench --model text_llm --model_args '{checkpoint: runs/tiny/text_llm/checkpoints/last.ckpt}' ...
    sepit bench --model text_llm --model_args '{llm: models/Llama-2-7b, adapter: models/mol-instructions-protein,
        sequence_format: galactica}' ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from sepit.data.manifest import sha256_file
from sepit.data.protein import ESM2_WINDOW
from sepit.models.lora import is_lora
from sepit.models.sepit import SepitModel, load_checkpoint
from sepit.models.splice import ProteinLanguageModel
from sepit.models.tiny import resolve_model_path


def _folder_hashes(folder: Path) -> list[str]:
    return [sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()]


def load_pretrained(llm: str, adapter: str | None, sequence_format: str, max_residues: int
                    ) -> tuple[ProteinLanguageModel, list[str]]:
    """A released causal LM (and LoRA adapter) from local folders, reading sequences as text; and the SHA-256
    of every file read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm_dir = resolve_model_path(llm)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False)
    language_model = AutoModelForCausalLM.from_pretrained(llm_dir, local_files_only=True, trust_remote_code=False,
                                                          dtype=torch.float32)
    model = ProteinLanguageModel(None, language_model, tokenizer, sequence_format=sequence_format,
                                 max_residues=max_residues)
    files = _folder_hashes(llm_dir)
    if adapter is not None:
        from peft import PeftModel

        adapter_dir = resolve_model_path(adapter)
        model.llm = PeftModel.from_pretrained(model.llm, adapter_dir, is_trainable=False)
        files += _folder_hashes(adapter_dir)
    return model, files


class TextLLMModel(SepitModel):
    """An LLM that reads the sequence as text, from a `sepit fit` checkpoint or from a released model folder."""

    registered_name = "text_llm"

    def __init__(self, checkpoint: str | None = None, llm: str | None = None, adapter: str | None = None,
                 sequence_format: str = "galactica", max_residues: int = ESM2_WINDOW, name: str | None = None,
                 dtype: Literal["float32", "bfloat16", "float16"] = "float32", device: str = "auto",
                 loglikelihood_batch_size: int = 16):
        """
        Args:
            checkpoint: a .ckpt from `sepit fit --config configs/baselines/.../text_llm*.yaml` (its record sets
                the format, the residue cut and LoRA; the three arguments below are then not used).
            llm: instead, a released Hugging Face causal-LM folder.
            adapter: with llm, a peft LoRA adapter folder to load onto it.
            sequence_format: with llm, how the sequence is written: galactica, seq_equals, raw or bop.
            max_residues: with llm, residues written into the prompt.
            name: the model's name in results and on the leaderboard (default text-llm, or text-llm-lora).
            dtype: weights and activations.
            device: auto, cpu, cuda or cuda:N.
            loglikelihood_batch_size: (sample, choice) pairs per forward pass when scoring choices.
        """
        if (checkpoint is None) == (llm is None):
            raise ValueError("text_llm needs either checkpoint (a .ckpt from `sepit fit`) or llm (a model folder), "
                             "not both")
        if checkpoint is not None:
            if adapter is not None:
                raise ValueError("adapter goes with llm; a checkpoint already holds its LoRA weights")
            model, files = load_checkpoint(checkpoint, check=self.check_record)
        else:
            model, files = load_pretrained(llm, adapter, sequence_format, max_residues)
            files.append(f"{sequence_format}:{max_residues}")  # the prompt is part of what is evaluated
        if name is None:
            name = "text-llm-lora" if is_lora(model.llm) else "text-llm"
        self._set_model(model, name, dtype, device, loglikelihood_batch_size, files)
