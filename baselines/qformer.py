"""Q-Former connector (ProtT3 / BLIP-2 style): N learned queries cross-attend to the frozen pLM's residue
features and give the LLM N soft tokens per protein (`sepit.models.qformer`). Trained with
`sepit fit --config configs/baselines/tiny/qformer.yaml`.

    sepit bench --model qformer --model_args '{checkpoint: runs/tiny/qformer/checkpoints/last.ckpt}' ...
"""

from __future__ import annotations

from typing import Literal

from sepit.models.sepit import SepitModel


class QFormerModel(SepitModel):
    """A checkpoint trained with `projector: qformer`."""

    registered_name = "qformer"

    def __init__(self, checkpoint: str, name: str = "qformer",
                 dtype: Literal["float32", "bfloat16", "float16"] = "float32", device: str = "auto",
                 loglikelihood_batch_size: int = 16):
        """
        Args:
            checkpoint: a .ckpt from `sepit fit --config configs/baselines/.../qformer.yaml`.
            name: the model's name in results and on the leaderboard.
            dtype: weights and activations.
            device: auto, cpu, cuda or cuda:N.
            loglikelihood_batch_size: (sample, choice) pairs per forward pass when scoring choices.
        """
        super().__init__(checkpoint, name, False, dtype, device, loglikelihood_batch_size)
