"""Q-Former projector (ProtT3 / BLIP-2 style): N learned queries cross-attend to the frozen pLM's residue
features and give the LLM N soft tokens per protein (`sepit.models.qformer`). Trained with
`sepit fit --config configs/baselines/tiny/qformer.yaml`.

    sepit bench --model qformer --model_args '{checkpoint: runs/tiny/qformer/checkpoints/last.ckpt}' ...
"""

from __future__ import annotations

from sepit.checkpoints.model import CheckpointModel


class QFormerModel(CheckpointModel):
    """A checkpoint trained with `projector: qformer`. Loads, checks and serves it exactly as
    `SepitModel` does (`CheckpointModel`); only the name it stands for differs."""

    registered_name = "qformer"
    default_name = "qformer"
