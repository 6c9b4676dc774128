"""Stage-0 warm-up objectives (sepit/models/warmup.py) on a tiny ESM-2 and a tiny locally built BERT."""

import math

import numpy as np
import pytest
import torch

from sepit.data.protein import make_protein
from sepit.models.encoder import StructureAwareESM, esm2_tiny
from sepit.tiny.builders import build_tiny_text_encoder
from sepit.models.warmup import (IGNORE_INDEX, CaptionEncoder, DenoisingHead, WarmupObjectives, clip_loss,
                                 mask_residues, noise_coordinates)

CAPTIONS = ["a small kinase that binds ATP", "a membrane transporter of sugars", "an enzyme with a zinc site"]


def _coords(length: int, seed: int) -> np.ndarray:
    """A C-alpha trace with ~3.8 Å steps."""
    steps = np.random.default_rng(seed).normal(size=(length, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0).astype(np.float32)


def _proteins():
    holey = _coords(12, 2)
    holey[[0, 5, 6]] = np.nan
    return [
        make_protein("a", "MKTAYIAKQRQISFVKSHFSRQ", _coords(22, 1)),
        make_protein("b", "GSHMLEDPVAGK"),  # sequence only
        make_protein("c", "ACDEFGHIKLMN", holey),
    ]


def _encoder() -> StructureAwareESM:
    torch.manual_seed(0)
    return StructureAwareESM(esm2_tiny(num_layers=2), num_kernels=8)


@pytest.fixture(scope="module")
def text_encoder_dir(tmp_path_factory):
    """A 1-layer BERT and a tokenizer trained on the test captions, saved like a hub checkpoint."""
    return build_tiny_text_encoder(tmp_path_factory.mktemp("text_encoder"), corpus=CAPTIONS, num_layers=1,
                                   num_heads=2)


def _objectives(text_encoder_dir) -> WarmupObjectives:
    encoder = _encoder()
    return WarmupObjectives(encoder, CaptionEncoder(text_encoder_dir), projection_dim=16)


def test_mask_residues_rate_and_never_special_tokens():
    encoder = _encoder()
    alphabet = encoder.alphabet
    proteins = [make_protein(str(i), "ACDEFGHIKLMNPQRSTVWY" * (1 + i % 5)) for i in range(60)]
    tokens = encoder.tokenize(proteins)["tokens"]
    masked, targets = mask_residues(tokens, alphabet, generator=torch.Generator().manual_seed(0))
    special = tokens.eq(alphabet.padding_idx) | tokens.eq(alphabet.cls_idx) | tokens.eq(alphabet.eos_idx)
    chosen = targets.ne(IGNORE_INDEX)
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.13 < rate < 0.17  # ~3600 residues
    assert not (chosen & special).any()
    assert torch.equal(masked[special], tokens[special])
    assert torch.equal(targets[chosen], tokens[chosen])
    assert (targets[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(masked[~chosen], tokens[~chosen])  # untouched outside the chosen set
    share_masked = masked[chosen].eq(alphabet.mask_idx).float().mean().item()
    assert 0.75 < share_masked < 0.85  # the 80 % of the 80/10/10 rule


def test_noise_only_on_observed_unmasked_residues():
    encoder = _encoder()
    batch = encoder.tokenize(_proteins())
    generator = torch.Generator().manual_seed(0)
    _, targets = mask_residues(batch["tokens"], encoder.alphabet, rate=0.3, generator=generator)
    mlm_mask = targets.ne(IGNORE_INDEX)
    noisy, unit, noise_mask = noise_coordinates(batch["coords"], batch["observed"], mlm_mask, generator=generator)
    assert torch.equal(noise_mask, batch["observed"] & ~mlm_mask)
    assert noise_mask.any() and (mlm_mask & batch["observed"]).any()  # both cases occur
    assert (unit[~noise_mask] == 0).all() and (unit[noise_mask] != 0).all()
    assert torch.equal(noisy[~noise_mask], batch["coords"][~noise_mask])
    torch.testing.assert_close(noisy - batch["coords"], 0.2 * unit)
    assert not noise_mask[:, 0].any() and not noise_mask[1].any()  # BOS; the sequence-only protein


def _random_rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


def test_denoising_head_is_rotation_equivariant_through_the_encoder():
    encoder = _encoder().eval()
    torch.manual_seed(1)
    head = DenoisingHead(encoder.embed_dim, encoder.num_heads)
    batch = encoder.tokenize(_proteins())
    rotation = _random_rotation(3)

    def predict(coords):
        out = encoder(batch["tokens"], coords, batch["observed"], return_attention_bias=True)
        return head(out["final"], coords, batch["observed"], out["attention_bias"], out["padding_mask"])

    with torch.no_grad():
        plain = predict(batch["coords"])
        rotated = predict(batch["coords"] @ rotation.T)
    assert torch.isfinite(plain).all()
    assert plain[batch["observed"]].abs().sum() > 0
    torch.testing.assert_close(rotated, plain @ rotation.T, atol=1e-4, rtol=0)
    # Nothing observed: no direction, output 0 (not NaN).
    assert (plain[1] == 0).all()


def test_clip_loss_matches_hand_computation():
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    t = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
    scale = torch.tensor(math.log(1 / 0.07))
    pn = [[x / math.hypot(*row) for x in row] for row in p.tolist()]
    tn = [[x / math.hypot(*row) for x in row] for row in t.tolist()]
    s = 1 / 0.07
    logits = [[s * (a[0] * b[0] + a[1] * b[1]) for b in tn] for a in pn]

    def ce(rows):
        return sum(math.log(sum(math.exp(v) for v in row)) - row[i] for i, row in enumerate(rows)) / len(rows)

    expected = (ce(logits) + ce([list(col) for col in zip(*logits)])) / 2
    assert clip_loss(p, t, scale).item() == pytest.approx(expected, rel=1e-5)
    # The scale is clamped at 100: a huge logit scale behaves as exactly 100.
    assert clip_loss(p, t, torch.tensor(10.0)).item() == pytest.approx(
        clip_loss(p, t, torch.tensor(math.log(100.0))).item(), rel=1e-6)


def test_logit_scale_starts_at_clip_temperature(text_encoder_dir):
    model = _objectives(text_encoder_dir)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert model.protein_projection.out_features == model.text_projection.out_features == 16


def test_forward_is_finite_and_caption_encoder_gets_no_gradient(text_encoder_dir):
    model = _objectives(text_encoder_dir).train()
    assert not model.caption_encoder.training  # stays in eval mode
    out = model(_proteins(), CAPTIONS, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "clip", "mlm", "denoise"}
    assert all(torch.isfinite(v) for v in out.values())
    assert out["denoise"] > 0 and out["mlm"] > 0
    torch.testing.assert_close(out["loss"], out["clip"] + out["mlm"] + out["denoise"])
    out["loss"].backward()
    assert all(p.grad is None for p in model.caption_encoder.parameters())
    for module in (model.encoder.esm, model.encoder.structure, model.denoising_head):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        assert all(torch.isfinite(g).all() for g in grads)


def test_sequence_only_batch_has_zero_denoise_loss(text_encoder_dir):
    model = _objectives(text_encoder_dir)
    proteins = [make_protein("x", "MKTAYIAKQR"), make_protein("y", "GSHMLE")]
    out = model(proteins, CAPTIONS[:2], generator=torch.Generator().manual_seed(0))
    assert out["denoise"].item() == 0.0
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_few_adam_steps_decrease_the_loss(text_encoder_dir):
    model = _objectives(text_encoder_dir).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(_proteins(), CAPTIONS, generator=torch.Generator().manual_seed(0))  # the same corruption
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]
