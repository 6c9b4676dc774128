"""The Q-Former projector (BLIP-2, Li et al. 2023; ProtT3, Liu et al. 2024): a fixed number of learned queries
read the protein encoder's residue features by cross-attention and become that many soft tokens for the LLM.

Where the per-residue projector gives the LLM n + 2 vectors for a protein of n residues, the Q-Former gives
`num_queries` whatever the length, so long proteins cost the LLM no more than short ones. Each layer is
pre-norm: self-attention among the queries, cross-attention from the queries to the residues (padding masked),
then a GELU feed-forward. ProtT3 initialises a BERT-base Q-Former from SciBERT; this one starts from random
weights at the encoder's width, which the tiny configs can train on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sepit.errors import InputError


@dataclass(frozen=True)
class QFormerSettings:
    """The Q-Former's shape; recorded in checkpoints as a dict under "qformer".

    Args:
        num_queries: learned queries, i.e. soft tokens per protein (32 in BLIP-2 and ProtT3).
        num_layers: Q-Former layers.
        num_heads: attention heads (must divide the encoder width).
    """

    num_queries: int = 32
    num_layers: int = 2
    num_heads: int = 8

    def check(self, key: str) -> None:
        """Refuse a Q-Former without queries, layers or heads; `key` is where these sit in a config."""
        for name in ("num_queries", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise InputError(f"{key}.{name}", f"the Q-Former needs at least one query, layer and head, got "
                                 f"{name} {getattr(self, name)}", f"Set {name} to 1 or more.")


class QFormerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: Tensor, residues: Tensor, padding_mask: Tensor) -> Tensor:
        q = self.self_norm(queries)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        q = self.cross_norm(queries)
        queries = queries + self.cross_attn(q, residues, residues, key_padding_mask=padding_mask,
                                            need_weights=False)[0]
        return queries + self.ffn(self.ffn_norm(queries))


class QFormer(nn.Module):
    """Residue features (B, T, D) with their padding mask -> (B, num_queries, out_dim) soft tokens."""

    kind = "qformer"

    def __init__(self, in_dim: int, out_dim: int, settings: QFormerSettings = QFormerSettings()):
        super().__init__()
        settings.check("qformer")
        if in_dim % settings.num_heads:
            raise InputError("qformer.num_heads", f"the encoder width {in_dim} is not divisible by num_heads="
                             f"{settings.num_heads}", f"Choose a number of heads that divides {in_dim}.")
        self.settings = settings
        self.queries = nn.Parameter(torch.randn(settings.num_queries, in_dim) * 0.02)  # BERT's init range
        self.layers = nn.ModuleList(QFormerLayer(in_dim, settings.num_heads) for _ in range(settings.num_layers))
        self.norm = nn.LayerNorm(in_dim)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, features: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> soft tokens (B, N, out_dim), and a (B, N) mask saying all of them are to be spliced in."""
        queries = self.queries.to(features.dtype).expand(features.shape[0], -1, -1)  # (B, N, D)
        for layer in self.layers:
            queries = layer(queries, features, padding_mask)
        tokens = self.out(self.norm(queries))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
