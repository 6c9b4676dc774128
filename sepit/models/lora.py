"""LoRA adapters on the LLM (Hu et al. 2022), through peft: the Mol-Instructions and ProtT3 way of tuning a
large LLM on instructions while its own weights stay frozen.

`add_lora` wraps the LLM in place of full fine-tuning; `save_adapter` writes peft's own adapter folder
(`adapter_config.json` + `adapter_model.safetensors`) from a checkpoint's state dict, plus `sepit_prompt.json`
(how the sequence was written into the prompt), so the adapter can be shared and loaded onto the base model
with `peft.PeftModel.from_pretrained` or `sepit bench --model text_llm --model_args '{llm: BASE, adapter: DIR}'`
without the rest of the checkpoint. Where the tokenizer gained tokens (a pad distinct from eos), peft also saves
the resized embeddings, so the base model's new rows match training exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepit.data.files import atomic_folder
from sepit.errors import InputError


ADAPTER_DIR = "adapter"  # beside the checkpoints, like tokenizer/


@dataclass
class LoraSettings:
    """LoRA hyperparameters; the defaults (r 16, alpha 16, dropout 0.05, attention projections) are common
    LLaMA-family choices, not a published recipe."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    def check(self, key: str) -> None:
        """Refuse what peft would accept and then train nothing with; `key` is where these sit in a config."""
        if self.r < 1:
            raise InputError(f"{key}.r", f"the LoRA rank must be 1 or more, got {self.r}", "Set r to e.g. 8 or 16.")
        if self.alpha <= 0:
            raise InputError(f"{key}.alpha", f"must be positive (the update is scaled by alpha/r), got {self.alpha}",
                             "Set alpha to e.g. r or 2r.")
        if not 0 <= self.dropout < 1:
            raise InputError(f"{key}.dropout", f"must be in [0, 1), got {self.dropout}", "Set e.g. 0.05, or 0 for none.")
        if not self.target_modules:
            raise InputError(f"{key}.target_modules", "names no module to adapt",
                             "List the LLM's projections, e.g. [q_proj, v_proj].")


def add_lora(llm: nn.Module, settings: LoraSettings) -> nn.Module:
    """`llm` with LoRA adapters on `target_modules`; everything else of the LLM frozen."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=list(settings.target_modules))
    return get_peft_model(llm, config)


def is_lora(llm: nn.Module) -> bool:
    return hasattr(llm, "peft_config")


PROMPT_FILE = "sepit_prompt.json"


def save_adapter(llm: nn.Module, state: dict[str, torch.Tensor], prefix: str, directory: Path,
                 prompt: dict[str, Any]) -> None:
    """Write the adapter weights found in `state` under `prefix` (the LoRA LLM's name in it) as a peft adapter
    folder, with `prompt` (the prompt settings) in `PROMPT_FILE`, into a fresh folder renamed into place: a
    reader never sees half an adapter."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    own = {name[len(prefix):]: tensor for name, tensor in state.items() if name.startswith(prefix)}
    weights = get_peft_model_state_dict(llm, state_dict=own)
    with atomic_folder(directory) as staging:
        llm.peft_config["default"].save_pretrained(staging)
        (staging / PROMPT_FILE).write_text(json.dumps(prompt, indent=1) + "\n")
        save_file({name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()},
                  staging / "adapter_model.safetensors", metadata={"format": "pt"})
