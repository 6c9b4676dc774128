"""Stage 0, the warm-up of the encoder and its structure module (docs/training.md): three objectives, summed.

Data flow: `Protein`s + captions -> `StructureAwareESM.tokenize` -> `mask_residues` (BERT-style MLM corruption)
-> `noise_coordinates` (0.2 x unit Gaussian on observed, unmasked residues) -> ONE encoder forward on the
masked tokens and noisy coordinates -> (1) masked-residue LM through ESM-2's own `lm_head`, (2) a Transformer-M
position head (`DenoisingHead`) predicting the unit noise, (3) a CLIP loss between the masked-mean residue
feature (second-to-last layer, the feature later fed to the projector) and a frozen text encoder's mean-pooled
caption embedding. The loss is their unweighted sum, as in the official code. The official code differs in the
rest (docs/fidelity.md, "stage 0"): two encoder passes (a clean one for CLIP, a corrupted one for the other
two losses), CLIP on the unmasked mean of the last layer, 100 % `<mask>` corruption and a new MLM head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from esm.data import Alphabet
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer

from sepit.data.protein import STANDARD_RESIDUES, Protein
from sepit.models.encoder import StructureAwareESM
from sepit.models.splice import IGNORE_INDEX


def mask_residues(tokens: Tensor, alphabet: Alphabet, rate: float = 0.15,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT-style corruption of `rate` of the residues (never BOS/EOS/padding), each chosen independently.

    Of the chosen residues 80 % become `<mask>`, 10 % a random standard amino acid, 10 % stay (BERT; ESM-2 was
    trained this way, and its token-dropout rescaling assumes the 80 % share; the official code masks all of
    them). -> (masked tokens (B, T), targets (B, T): the original token where chosen, IGNORE_INDEX elsewhere).
    """
    residue = ~(tokens.eq(alphabet.padding_idx) | tokens.eq(alphabet.cls_idx) | tokens.eq(alphabet.eos_idx))
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    chosen = residue & (draw < rate)
    # A second draw splits the chosen positions 80/10/10.
    split = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    amino = torch.tensor([alphabet.get_idx(a) for a in STANDARD_RESIDUES], device=tokens.device)
    random_tokens = amino[torch.randint(len(amino), tokens.shape, generator=generator, device=tokens.device)]
    masked = torch.where(chosen & (split < 0.8), alphabet.mask_idx, tokens)
    masked = torch.where(chosen & (split >= 0.8) & (split < 0.9), random_tokens, masked)
    targets = tokens.masked_fill(~chosen, IGNORE_INDEX)
    return masked, targets


def noise_coordinates(coords: Tensor, observed: Tensor, mlm_mask: Tensor, scale: float = 0.2,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """coords (B, T, 3) + scale x unit Gaussian noise on observed residues not chosen for the MLM loss.

    `observed` from `tokenize` is already False at BOS/EOS/padding. -> (noisy coords (B, T, 3), unit noise
    (B, T, 3), zero off the noised residues: the denoising target, noise mask (B, T)).
    """
    noise_mask = observed & ~mlm_mask
    noise = torch.randn(coords.shape, generator=generator, device=coords.device, dtype=coords.dtype)
    unit_noise = noise * noise_mask[..., None]
    return coords + scale * unit_noise, unit_noise, noise_mask


class DenoisingHead(nn.Module):
    """Transformer-M's position head (NodeTaskHead), our own small version: per-head attention over the
    residues, with the encoder's structure bias added to the scores; each residue's 3-D output is the
    attention-weighted sum over partners j of value_j times the unit direction (x_i - x_j)/|x_i - x_j|.

    One linear (no bias) maps the concatenated heads to a scalar for all three coordinates. Transformer-M
    uses a separate linear per coordinate, which is not rotation-equivariant; shared weights are.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.force_proj = nn.Linear(embed_dim, 1, bias=False)  # a bias would break equivariance

    def forward(self, hidden: Tensor, coords: Tensor, observed: Tensor, attention_bias: Tensor,
                padding_mask: Tensor) -> Tensor:
        """hidden (B, T, D), coords (B, T, 3) noisy, observed (B, T), attention_bias (B, H, T, T),
        padding_mask (B, T) True at padding -> predicted unit noise (B, T, 3); 0 where nothing is observed."""
        B, T, D = hidden.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

        q = heads(self.q_proj(hidden)) * self.head_dim ** -0.5
        scores = q @ heads(self.k_proj(hidden)).transpose(-1, -2) + attention_bias.to(q.dtype)  # (B, H, T, T)
        scores = scores.masked_fill(padding_mask[:, None, None, :], float("-inf"))
        attn = scores.float().softmax(dim=-1).to(hidden.dtype)  # (B, H, T, T)

        # Directions only between observed residues; unobserved rows hold 0 and must not make a direction.
        pair = observed[:, :, None] & observed[:, None, :]  # (B, T, T)
        delta = coords[:, :, None] - coords[:, None, :]  # (B, T, T, 3)
        delta = delta / (torch.linalg.vector_norm(delta, dim=-1, keepdim=True) + 1e-5)  # Transformer-M's eps
        delta = delta.masked_fill(~pair[..., None], 0.0).to(hidden.dtype)
        # sum_j attn_hij * delta_ijc * v_hjd -> (B, T, 3, H, d), heads concatenated per coordinate.
        force = torch.einsum("bhij,bijc,bhjd->bichd", attn, delta, heads(self.v_proj(hidden)))
        return self.force_proj(force.reshape(B, T, 3, D)).squeeze(-1)  # (B, T, 3)


class CaptionEncoder(nn.Module):
    """A frozen Hugging Face text encoder from a local directory; caption -> masked mean of its last layer."""

    def __init__(self, path: str | Path, max_length: int = 512):
        super().__init__()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, trust_remote_code=False, local_files_only=True,
                                               dtype=torch.float32)
        self.model.eval().requires_grad_(False)
        self.embed_dim: int = self.model.config.hidden_size
        self.max_length = max_length

    def train(self, mode: bool = True) -> CaptionEncoder:
        return super().train(False)  # frozen: no dropout, whatever the parent's mode

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> Tensor:
        """-> (B, E) caption embeddings, no grad."""
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        hidden = self.model(**batch).last_hidden_state  # (B, S, E)
        mask = batch["attention_mask"][..., None].to(hidden.dtype)  # (B, S, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def clip_loss(protein_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over a batch of matched pairs (B, P) x (B, P); the i-th protein goes with the i-th
    caption. Both sides are L2-normalised here; the scale exp(logit_scale) is clamped at 100 as in CLIP."""
    protein_embeds = F.normalize(protein_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * protein_embeds @ text_embeds.T  # (B, B)
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class WarmupObjectives(nn.Module):
    """Stage 0: encoder + structure module trained by CLIP + masked-residue LM + coordinate denoising."""

    def __init__(self, encoder: StructureAwareESM, caption_encoder: CaptionEncoder, projection_dim: int = 512,
                 mask_rate: float = 0.15, noise_scale: float = 0.2, temperature: float = 0.07):
        """`projection_dim`: 512 in the official code. `mask_rate`: 15 %. `noise_scale`: 0.2 (Transformer-M and
        the official code). `temperature`: CLIP's learnable initial temperature 0.07."""
        super().__init__()
        self.encoder = encoder
        self.caption_encoder = caption_encoder  # frozen; its parameters never require grad
        self.denoising_head = DenoisingHead(encoder.embed_dim, encoder.num_heads)
        # Bias-free projections as in CLIP.
        self.protein_projection = nn.Linear(encoder.embed_dim, projection_dim, bias=False)
        self.text_projection = nn.Linear(caption_encoder.embed_dim, projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.mask_rate, self.noise_scale = mask_rate, noise_scale

    def forward(self, proteins: Sequence[Protein], captions: Sequence[str],
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """-> loss (the unweighted sum), clip, mlm, denoise; all scalars."""
        if len(proteins) != len(captions):
            raise ValueError(f"{len(proteins)} proteins but {len(captions)} captions")
        device = self.logit_scale.device
        batch = {name: t.to(device) for name, t in self.encoder.tokenize(proteins).items()}
        tokens, observed = batch["tokens"], batch["observed"]
        masked, targets = mask_residues(tokens, self.encoder.alphabet, self.mask_rate, generator)
        mlm_mask = targets.ne(IGNORE_INDEX)
        noisy, unit_noise, noise_mask = noise_coordinates(batch["coords"], observed, mlm_mask,
                                                          self.noise_scale, generator)
        out = self.encoder(masked, noisy, observed, return_attention_bias=True)

        # (1) Masked-residue LM; a sum over a clamped count keeps a batch with nothing masked at 0, not NaN.
        logits = self.encoder.esm.lm_head(out["final"])  # (B, T, V)
        mlm = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")
        mlm = mlm / mlm_mask.sum().clamp(min=1)

        # (2) Denoising: MSE over the noised coordinates only; 0 for a sequence-only batch.
        predicted = self.denoising_head(out["final"], noisy, observed, out["attention_bias"], out["padding_mask"])
        squared = (predicted.float() - unit_noise.float()).square() * noise_mask[..., None]
        denoise = squared.sum() / (3 * noise_mask.sum()).clamp(min=1)

        # (3) CLIP on the masked mean over residues (not BOS/EOS/padding) of the second-to-last layer.
        alphabet = self.encoder.alphabet
        residue = ~(tokens.eq(alphabet.padding_idx) | tokens.eq(alphabet.cls_idx) | tokens.eq(alphabet.eos_idx))
        weights = residue[..., None].to(out["features"].dtype)  # (B, T, 1)
        pooled = (out["features"] * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, D)
        text = self.caption_encoder(captions).to(pooled.dtype)  # (B, E), no grad
        clip = clip_loss(self.protein_projection(pooled), self.text_projection(text), self.logit_scale)

        return {"loss": clip + mlm + denoise, "clip": clip, "mlm": mlm, "denoise": denoise}
