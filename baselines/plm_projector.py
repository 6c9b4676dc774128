"""pLM + projector without structure: SEPIT's architecture trained with the structure module off
(`sequence_only: true`), the paper's main ablation and the design of most protein-LLMs that splice pLM
features into an LLM. Trained with `sepit fit --config configs/baselines/tiny/plm_projector.yaml`.

    sepit bench --model plm_projector --model_args '{checkpoint: runs/tiny/plm_projector/checkpoints/last.ckpt}' ...
"""

from __future__ import annotations

from sepit.checkpoints.model import CheckpointModel


class PlmProjectorModel(CheckpointModel):
    """A checkpoint trained with `sequence_only: true` and a per-residue projector (mlp or linear). Loads, checks and serves it exactly as
    `SepitModel` does (`CheckpointModel`); only the name it stands for differs."""

    registered_name = "plm_projector"
    default_name = "plm-projector"
