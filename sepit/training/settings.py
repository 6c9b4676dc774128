"""The settings groups of the training stages (`sepit.training.stages`): one dataclass per concern, read by
LightningCLI as nested YAML mappings whose unset fields keep their defaults:

    encoder: {num_kernels: 16, drop_structure_rate: 0.0, lr_scale: 0.0}
    experts: {num_experts: 4, top_k: 1}        # sepit.models.moe.ExpertSettings
    qformer: {num_queries: 8, num_heads: 4}    # sepit.models.qformer.QFormerSettings
    lora: {r: 8, target_modules: [q_proj, v_proj]}   # sepit.models.lora.LoraSettings
    optimizer: {lr: 3.0e-3, schedule: linear}
    token_embeddings: {init: normal, pad_to_multiple_of: 8}   # sepit.models.tokens.TokenEmbeddingSettings

A checkpoint keeps them as plain dicts (`plain_hparams`), so it still loads with `torch.load(...,
weights_only=True)`, which refuses to rebuild arbitrary classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sepit.errors import InputError

Schedule = Literal["cosine", "linear"]


@dataclass(frozen=True)
class EncoderSettings:
    """The protein encoder in an instruction stage.

    Args:
        num_kernels: Gaussian distance kernels of the structure module; must match the checkpoint in init_from
            (128 in the paper).
        sequence_only: ignore coordinates (the pLM + projector baseline; the paper's main ablation).
        drop_structure_rate: chance per protein of training without its structure (0.15 in stages 1 and 2).
        lr_scale: the encoder's learning-rate factor: 0.1 in stage 1; 0 freezes it (stage 2, Q-Former).
    """

    num_kernels: int = 128
    sequence_only: bool = False
    drop_structure_rate: float = 0.15
    lr_scale: float = 0.1

    def check(self, key: str) -> None:
        """Refuse values the encoder cannot run with; `key` is where these sit in a config."""
        if self.num_kernels < 1:
            raise InputError(f"{key}.num_kernels", f"must be 1 or more, got {self.num_kernels}",
                             "Set the number the checkpoint in init_from was trained with (128 in the paper).")
        if not 0 <= self.drop_structure_rate <= 1:
            raise InputError(f"{key}.drop_structure_rate", f"is a probability, got {self.drop_structure_rate}",
                             "Set a value in [0, 1], e.g. 0.15.")
        if self.lr_scale < 0:
            raise InputError(f"{key}.lr_scale", f"must be 0 or more, got {self.lr_scale}", "Set 0 to freeze the encoder.")


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW with a linear warm-up, then a decay to 0.

    Args:
        lr: the base learning rate (the paper: 1e-6 for ESM-2 in stage 0, 1e-4 for the projector and LLM).
        weight_decay: AdamW weight decay (0).
        warmup_ratio: share of the steps with linear warm-up (0.03).
        betas: AdamW betas.
        schedule: decay after the warm-up: cosine, or linear (the official trainer's, Hugging Face's default).
        warmup_from_zero: the warm-up factor is step / warmup, so the first step has lr 0, over ceil(ratio x steps)
            steps, as Hugging Face's linear warm-up (the official trainer's); False: (step + 1) / warmup, over at
            least one step, so the first step already trains.
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Schedule = "cosine"
    warmup_from_zero: bool = False

    def check(self, key: str) -> None:
        """Refuse what AdamW would only refuse at the first step, after the models have loaded."""
        if self.lr <= 0:
            raise InputError(f"{key}.lr", f"must be positive, got {self.lr}", "Set e.g. 1.0e-4.")
        if self.weight_decay < 0:
            raise InputError(f"{key}.weight_decay", f"must be 0 or more, got {self.weight_decay}", "Set e.g. 0.")
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError(f"{key}.warmup_ratio", f"is a share of the steps, got {self.warmup_ratio}",
                             "Set a value in [0, 1], e.g. 0.03.")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise InputError(f"{key}.betas", f"must each be in [0, 1), got {list(self.betas)}", "Set e.g. [0.9, 0.999].")


def plain_hparams(hparams: dict[str, Any]) -> None:
    """Turn the settings dataclasses among a module's saved hyperparameters into dicts, in place."""
    for name, value in hparams.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            hparams[name] = dataclasses.asdict(value)
