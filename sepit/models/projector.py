"""The projector: encoder features -> LLM-width vectors to splice into the prompt. A per-position `Projector`
(`mlp` as in the official code, `linear` as the paper describes it) or a Q-Former (`sepit.models.qformer`)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from sepit.models.qformer import QFormer, QFormerSettings

ProjectorKind = Literal["mlp", "linear", "qformer"]


class Projector(nn.Module):
    """Encoder width -> LLM width. `mlp` (Linear, GELU, Linear; hidden = out_dim) as in the official code;
    `linear` as the paper describes it."""

    def __init__(self, in_dim: int, out_dim: int, kind: Literal["mlp", "linear"] = "mlp"):
        super().__init__()
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        elif kind == "linear":
            self.net = nn.Linear(in_dim, out_dim)
        else:
            raise ValueError(f"projector kind must be 'mlp' or 'linear', got {kind!r}")
        self.kind = kind

    def forward(self, features: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> (B, T, out_dim), and the (B, T) mask of the positions to splice in (every valid one)."""
        return self.net(features), ~padding_mask


def build_projector(kind: ProjectorKind, in_dim: int, out_dim: int, qformer: QFormerSettings | None = None) -> nn.Module:
    """`mlp` or `linear`: a per-position `Projector`; `qformer`: a `QFormer` with the `qformer` settings."""
    if kind == "qformer":
        return QFormer(in_dim, out_dim, qformer or QFormerSettings())
    if qformer:
        raise ValueError(f"Q-Former settings given for the {kind!r} projector; set projector to 'qformer'")
    return Projector(in_dim, out_dim, kind)
