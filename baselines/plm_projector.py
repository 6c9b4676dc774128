"""pLM + projector without structure: SEPIT's architecture trained with the structure module off
(`sequence_only: true`), the paper's main ablation and the design of most protein-LLMs that splice pLM
features into an LLM. Trained with `sepit fit --config configs/baselines/tiny/plm_projector.yaml`.

    sepit bench --model plm_projector --model_args '{checkpoint: runs/tiny/plm_projector/checkpoints/last.ckpt}' ...
"""

from __future__ import annotations

from typing import Literal

from sepit.models.sepit import SepitModel


class PlmProjectorModel(SepitModel):
    """A checkpoint trained with `sequence_only: true` and a per-residue projector (mlp or linear)."""

    registered_name = "plm_projector"

    def __init__(self, checkpoint: str, name: str = "plm-projector",
                 dtype: Literal["float32", "bfloat16", "float16"] = "float32", device: str = "auto",
                 loglikelihood_batch_size: int = 16):
        """
        Args:
            checkpoint: a .ckpt from `sepit fit --config configs/baselines/.../plm_projector.yaml`.
            name: the model's name in results and on the leaderboard.
            dtype: weights and activations.
            device: auto, cpu, cuda or cuda:N.
            loglikelihood_batch_size: (sample, choice) pairs per forward pass when scoring choices.
        """
        super().__init__(checkpoint, name, False, dtype, device, loglikelihood_batch_size)
