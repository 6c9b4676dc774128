"""The Q-Former connector (sepit/models/qformer.py): a fixed number of soft tokens whatever the protein length,
blind to padding, the same alone or in a batch, and spliced into the LLM as that many vectors."""

import pytest
import torch

from sepit.models.qformer import QFormer


def _qformer(**kwargs):
    torch.manual_seed(0)
    return QFormer(16, 24, **{"num_queries": 5, "num_layers": 2, "num_heads": 4, **kwargs}).eval()


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


def test_queries_read_the_residues():
    qformer = _qformer()
    mask = torch.zeros(1, 6, dtype=torch.bool)
    a, _ = qformer(torch.randn(1, 6, 16), mask)
    b, _ = qformer(torch.randn(1, 6, 16), mask)
    assert not torch.allclose(a, b)


def test_settings_are_checked():
    assert _qformer().settings == {"num_queries": 5, "num_layers": 2, "num_heads": 4}
    with pytest.raises(ValueError, match="divisible"):
        QFormer(16, 24, num_heads=3)
    with pytest.raises(ValueError, match="at least one query"):
        QFormer(16, 24, num_queries=0)
