"""The Q-Former projector (sepit/models/qformer.py): a fixed number of soft tokens whatever the protein length,
blind to padding, the same alone or in a batch, and spliced into the LLM as that many vectors."""

import pytest
import torch

from sepit.errors import InputError
from sepit.models.qformer import QFormer, QFormerSettings


def _qformer(**kwargs):
    torch.manual_seed(0)
    return QFormer(16, 24, QFormerSettings(**{"num_queries": 5, "num_layers": 2, "num_heads": 4, **kwargs})).eval()


def test_gives_num_queries_tokens_whatever_the_length():
    qformer = _qformer()
    for length in (3, 40):
        tokens, keep = qformer(torch.randn(2, length, 16), torch.zeros(2, length, dtype=torch.bool))
        assert tokens.shape == (2, 5, 24) and keep.all() and keep.shape == (2, 5)


def test_padding_is_ignored_and_batching_changes_nothing():
    qformer = _qformer()
    short, long = torch.randn(1, 4, 16), torch.randn(1, 9, 16)
    alone_short, _ = qformer(short, torch.zeros(1, 4, dtype=torch.bool))
    alone_long, _ = qformer(long, torch.zeros(1, 9, dtype=torch.bool))
    # `short` padded to 9 with garbage that the mask hides.
    padded = torch.cat([short, 100 * torch.randn(1, 5, 16)], dim=1)
    batch = torch.cat([padded, long])
    mask = torch.tensor([[False] * 4 + [True] * 5, [False] * 9])
    together, _ = qformer(batch, mask)
    assert torch.allclose(together[0], alone_short[0], atol=1e-5)
    assert torch.allclose(together[1], alone_long[0], atol=1e-5)


def _attention(module, query, key, mask=None):
    """nn.MultiheadAttention written out: per-head scaled dot products over its own projections."""
    D, H = module.embed_dim, module.num_heads
    wq, wk, wv = module.in_proj_weight.split(D)
    bq, bk, bv = module.in_proj_bias.split(D)
    heads = lambda x: x.view(*x.shape[:2], H, D // H).transpose(1, 2)  # noqa: E731
    q, k, v = heads(query @ wq.T + bq), heads(key @ wk.T + bk), heads(key @ wv.T + bv)
    scores = q @ k.transpose(-1, -2) / (D // H) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(*query.shape)
    return out @ module.out_proj.weight.T + module.out_proj.bias


def _reference(qformer, features, mask):
    """The Q-Former's layers as the module docstring describes them, from plain tensor operations."""
    norm = lambda m, x: torch.nn.functional.layer_norm(x, (x.shape[-1],), m.weight, m.bias, m.eps)  # noqa: E731
    queries = qformer.queries.expand(features.shape[0], -1, -1)
    for layer in qformer.layers:
        q = norm(layer.self_norm, queries)
        queries = queries + _attention(layer.self_attn, q, q)
        queries = queries + _attention(layer.cross_attn, norm(layer.cross_norm, queries), features, mask)
        first, _, last = layer.ffn
        h = norm(layer.ffn_norm, queries) @ first.weight.T + first.bias
        queries = queries + torch.nn.functional.gelu(h) @ last.weight.T + last.bias
    return norm(qformer.norm, queries) @ qformer.out.weight.T + qformer.out.bias


def test_queries_read_the_residues_as_the_written_out_computation_does():
    qformer = _qformer()
    features = torch.randn(2, 7, 16)
    mask = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    with torch.no_grad():
        tokens, _ = qformer(features, mask)
        assert torch.allclose(tokens, _reference(qformer, features, mask), atol=1e-5)
        other, _ = qformer(torch.randn(2, 7, 16), mask)
    assert (tokens - other).abs().max() > 0.1  # and they depend on the residues


def test_settings_are_checked():
    assert _qformer().settings == QFormerSettings(num_queries=5, num_layers=2, num_heads=4)
    with pytest.raises(InputError, match="qformer.num_heads: the encoder width 16 is not divisible"):
        QFormer(16, 24, QFormerSettings(num_heads=3))
    with pytest.raises(InputError, match="qformer.num_queries: the Q-Former needs at least one query"):
        QFormer(16, 24, QFormerSettings(num_queries=0))
