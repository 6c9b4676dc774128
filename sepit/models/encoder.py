"""The structure-aware protein encoder: ESM-2 (fair-esm) with a Transformer-M style 3-D structure bias.

Data flow: `Protein`s -> `StructureAwareESM.tokenize` (crop to the ESM-2 window, tokens, C-alpha coordinates,
observed mask) -> `forward` -> per-residue features from the second-to-last layer (docs/fidelity.md), which the
projector maps into the LLM. The structure enters twice (Transformer-M, Luo et al. 2023, `Molecule3DBias`):
(a) a per-head bias from pairwise C-alpha distances, computed once and added to the residue-residue attention
scores of every layer; (b) a per-residue encoding added to the input embedding. Residues without coordinates
get neither. fair-esm's layers are reused parameter for parameter; only the attention call is ours, because
fair-esm's `attn_mask` takes one (L, L) mask and cannot carry a (B, H, L, L) bias.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from esm.model.esm2 import ESM2
from esm.modules import TransformerLayer, gelu
from torch import Tensor, nn

from sepit.data.protein import ESM2_WINDOW, Protein, crop_to_window

# Released fair-esm ESM-2 models: name -> (layers, width, attention heads), from the fair-esm README.
ESM2_SIZES: dict[str, tuple[int, int, int]] = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),  # paper scale
    "esm2_t36_3B_UR50D": (36, 2560, 40),
}
# fairseq saved the released weights under these prefixes; fair-esm's v2 loader strips them.
_RELEASE_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
# Not in the released model file (fair-esm ships them in a separate contact-regression file).
_CONTACT_REGRESSION = {"contact_head.regression.weight", "contact_head.regression.bias"}


def esm2_tiny(num_layers: int = 2, embed_dim: int = 32, attention_heads: int = 4) -> ESM2:
    """A randomly initialised ESM-2 (tests, smoke configs); `esm2_tiny(*ESM2_SIZES[name])` for a real size."""
    return ESM2(num_layers=num_layers, embed_dim=embed_dim, attention_heads=attention_heads, alphabet="ESM-1b")


def esm2_from_checkpoint(path: str | Path) -> ESM2:
    """Load a released fair-esm ESM-2 file (e.g. `esm2_t33_650M_UR50D.pt`) from disk, without unpickling code.

    The file holds `{"model": state dict, "cfg": {"model": Namespace(encoder_layers=...)}, ...}`; only
    `argparse.Namespace` is allowed besides tensors and plain containers.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(path, map_location="cpu", weights_only=True)
    cfg = data["cfg"]["model"]
    get = cfg.get if isinstance(cfg, Mapping) else lambda name, default=None: getattr(cfg, name, default)
    model = ESM2(
        num_layers=get("encoder_layers"),
        embed_dim=get("encoder_embed_dim"),
        attention_heads=get("encoder_attention_heads"),
        alphabet="ESM-1b",
        token_dropout=get("token_dropout", True),
    )
    state = {_RELEASE_PREFIX.sub("", name): tensor for name, tensor in data["model"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) - _CONTACT_REGRESSION or unexpected:
        raise RuntimeError(f"{path} is not an ESM-2 checkpoint of this layout: "
                           f"missing {sorted(set(missing) - _CONTACT_REGRESSION)}, unexpected {sorted(unexpected)}")
    return model


class StructureBias(nn.Module):
    """C-alpha distances -> K Gaussian kernels -> (a) one attention bias per head, (b) a per-residue encoding.

    Kernel means and widths are learnable, initialised as Transformer-M's `GaussianLayer` and the official
    SEPIT code (means and stds uniform in [0, 3]); the width is |std| + `kernel_epsilon` (1e-3 in the official
    code, 1e-2 in Transformer-M).
    Transformer-M's per-edge-type affine on the distance is left out: with one edge type (C-alpha pairs) it is
    fixed at scale 1, shift 0 there (padding_idx=0 freezes it).

    Two maskings (docs/fidelity.md, "bias masking"):
    - `observed` (ours): a pair gets a bias only when both residues have coordinates; the encoding of a
      residue sums its kernels over the residues with coordinates.
    - `official`, as the official code computes it: only key columns without coordinates get 0, so every
      query row gets a bias, `<cls>`, `<eos>`, padding and residues without coordinates from their distance to
      the origin; then only positions [1:-1, 1:-1] of the padded length keep it. The encoding sums over every
      non-padded partner (those without coordinates sit at the origin).
    """

    def __init__(self, num_kernels: int, num_heads: int, embed_dim: int, kernel_epsilon: float = 1e-3,
                 masking: Literal["observed", "official"] = "observed"):
        super().__init__()
        if masking not in ("observed", "official"):
            raise ValueError(f"bias masking must be 'observed' or 'official', got {masking!r}")
        self.num_kernels = num_kernels  # recorded in checkpoints: under FSDP a rank may hold no shard of `means`
        self.kernel_epsilon, self.masking = kernel_epsilon, masking
        self.means = nn.Parameter(torch.empty(num_kernels).uniform_(0, 3))
        self.stds = nn.Parameter(torch.empty(num_kernels).uniform_(0, 3))
        # Transformer-M's NonLinear: hidden width = number of kernels.
        self.bias_mlp = nn.Sequential(nn.Linear(num_kernels, num_kernels), nn.GELU(),
                                      nn.Linear(num_kernels, num_heads))
        self.encoding_proj = nn.Linear(num_kernels, embed_dim)

    def forward(self, coords: Tensor, observed: Tensor, padding: Tensor, encoding: bool = True
                ) -> tuple[Tensor, Tensor | None]:
        """coords (B, T, 3) finite, observed (B, T), padding (B, T) -> bias (B, H, T, T), encoding (B, T, D)
        (None unless `encoding`: the official layout adds none, and its (B, T, T, K) sum is large).

        The O(T^2 K) kernels are computed only for the proteins that have coordinates (in mixed data most
        have none); the others get zeros, as they would from the full computation.
        """
        with_structure = observed.any(dim=1)  # (B,)
        pairwise = self._observed if self.masking == "observed" else self._official
        if bool(with_structure.all()):
            bias, per_residue = pairwise(coords, observed, padding)
            return bias, per_residue if encoding else None
        B, T = observed.shape
        if not bool(with_structure.any()):
            return (coords.new_zeros(B, self.bias_mlp[-1].out_features, T, T),
                    coords.new_zeros(B, T, self.encoding_proj.out_features) if encoding else None)
        index = with_structure.nonzero().flatten()
        bias, per_residue = pairwise(coords[index], observed[index], padding[index])  # (b, H, T, T), (b, T, D)
        bias = bias.new_zeros(B, *bias.shape[1:]).index_copy(0, index, bias)
        if not encoding:
            return bias, None
        return bias, per_residue.new_zeros(B, *per_residue.shape[1:]).index_copy(0, index, per_residue)

    def kernels(self, queries: Tensor, keys: Tensor) -> Tensor:
        """Points (B, Q, 3) and (B, K', 3) -> the Gaussian kernels of their distances (B, Q, K', K), float32."""
        distance = torch.linalg.vector_norm(queries.float()[:, :, None] - keys.float()[:, None, :], dim=-1)
        std = self.stds.float().abs() + self.kernel_epsilon  # keeps widths positive
        z = (distance[..., None] - self.means.float()) / std
        return torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * std)

    def _observed(self, coords: Tensor, observed: Tensor, padding: Tensor) -> tuple[Tensor, Tensor]:
        # Positions from n on are padding in every protein: no pair there is observed, its bias and encoding
        # are 0, so the kernels are computed for the first n positions only (with `pad_to`, a small corner).
        T, n = observed.shape[1], _longest_protein(padding)
        observed = observed[:, :n]
        pair = observed[:, :, None] & observed[:, None, :]  # (B, n, n)
        coords = coords[:, :n].masked_fill(~observed[..., None], 0.0)  # NaN never reaches the arithmetic
        kernels = self.kernels(coords, coords).masked_fill(~pair[..., None], 0.0).to(self.means.dtype)
        bias = self.bias_mlp(kernels).masked_fill(~pair[..., None], 0.0).permute(0, 3, 1, 2)  # (B, H, n, n)
        # Summed over partners, then projected; the Linear's own bias must not leak into unobserved residues.
        encoding = self.encoding_proj(kernels.sum(dim=2)).masked_fill(~observed[..., None], 0.0)  # (B, n, D)
        return F.pad(bias, (0, T - n, 0, T - n)), F.pad(encoding, (0, 0, 0, T - n))

    def _official(self, coords: Tensor, observed: Tensor, padding: Tensor) -> tuple[Tensor, Tensor]:
        B, T = observed.shape
        coords = coords.masked_fill(~observed[..., None], 0.0)  # residues without coordinates at the origin
        # Key columns from n on are padding for every protein (bias 0 there), and every query row from n on
        # is a padding row at the origin: one such row (index n) stands for them all.
        n = _longest_protein(padding)
        k = min(n + 1, T)
        kernels = self.kernels(coords[:, :k], coords[:, :n]).to(self.means.dtype)  # (B, k, n, K)
        part = self.bias_mlp(kernels).masked_fill(~observed[:, None, :n, None], 0.0).permute(0, 3, 1, 2)
        bias = part.new_zeros(B, part.shape[1], T, T)
        bias[:, :, :k, :n] = part
        bias[:, :, k:, :n] = part[:, :, k - 1:k]  # (B, H, k, n) -> the padding rows
        inner = torch.zeros(T, dtype=torch.bool, device=bias.device)
        inner[1:-1] = True  # the official attention adds the bias on [1:-1, 1:-1] only
        bias = bias * (inner[:, None] & inner[None, :])
        summed = torch.einsum("bqkc,bk->bqc", kernels[:, :n], (~padding[:, :n]).to(kernels.dtype))  # (B, n, K)
        encoding = self.encoding_proj(summed).masked_fill(~observed[:, :n, None], 0.0)
        return bias, F.pad(encoding, (0, 0, 0, T - n))


def _longest_protein(padding: Tensor) -> int:
    """padding (B, T) True at padding -> the longest protein's positions (BOS and EOS included): every later
    position is padding in every row."""
    return int((~padding).sum(dim=1).max())


def _up_to_the_last_key(mask: Tensor, padding_mask: Tensor) -> Tensor:
    """The attention mask's key columns up to the longest protein's last token: the later keys are padding in
    every row (masked, they add exactly 0), so attention need not read them. With `pad_to` (the official 1024
    positions) they are most of the keys."""
    return mask[..., :_longest_protein(padding_mask)]


def _layer_with_bias(layer: TransformerLayer, x: Tensor, mask: Tensor) -> Tensor:
    """One fair-esm `TransformerLayer` on batch-first x (B, T, D), attention scores + `mask` (B, H|1, T|1, n):
    the queries are all T positions, the keys the first n (n < T when every later key is padding).

    Same parameters and arithmetic as fair-esm's pre-LayerNorm layer; its explicit attention (q scaled by
    head_dim**-0.5, then rotary) equals scaled_dot_product_attention's default scaling after rotary, since the
    rotation is linear.
    """
    attn = layer.self_attn
    B, T, D = x.shape
    h = layer.self_attn_layer_norm(x)

    def heads(t: Tensor) -> Tensor:
        return t.view(B, -1, attn.num_heads, attn.head_dim).transpose(1, 2)  # (B, H, T or n, d)

    q, k = attn.rot_emb(heads(attn.q_proj(h)), heads(attn.k_proj(h)))
    n = mask.shape[-1]
    out = F.scaled_dot_product_attention(q, k[:, :, :n], heads(attn.v_proj(h[:, :n])), attn_mask=mask.to(q.dtype),
                                         dropout_p=attn.dropout if layer.training else 0.0)
    x = x + attn.out_proj(out.transpose(1, 2).reshape(B, T, D))
    return x + layer.fc2(gelu(layer.fc1(layer.final_layer_norm(x))))


class StructureAwareESM(nn.Module):
    """ESM-2 whose attention in every layer sees the structure bias, and whose input sees the encoding."""

    def __init__(self, esm: ESM2, num_kernels: int = 128, sequence_only: bool = False,
                 drop_structure_rate: float = 0.0, encoding_scale: float = 0.01, window: int = ESM2_WINDOW,
                 kernel_epsilon: float = 1e-3, bias_masking: Literal["observed", "official"] = "observed",
                 pad_to: int | None = None):
        """`num_kernels`: K=128 in the paper (Sec. 3.1) and Transformer-M. `sequence_only`: ignore coordinates
        (the structure parameters stay, so one checkpoint serves both). `drop_structure_rate`: in training, drop
        each protein's structure with this probability (0.15 in stages 1 and 2). `encoding_scale`: 0.01 as in
        the official code, which adds it to no protein at batch size 1 (docs/fidelity.md); 0 turns it off.
        `window`: residues kept per protein (`crop_to_window`); 1022 for ESM-2, less only to save memory in
        small runs. `kernel_epsilon`, `bias_masking`: see `StructureBias`. `pad_to`: pad every protein to this
        many positions (1024 in the official inference, whose LLM reads the padding too); None pads to the
        longest in the batch."""
        super().__init__()
        if not 1 <= window <= ESM2_WINDOW:
            raise ValueError(f"window must be in [1, {ESM2_WINDOW}], got {window}")
        if not 0.0 <= drop_structure_rate <= 1.0:
            raise ValueError(f"drop_structure_rate must be in [0, 1], got {drop_structure_rate}")
        if pad_to is not None and pad_to < window + 2:
            raise ValueError(f"pad_to={pad_to} cannot hold window={window} residues plus BOS and EOS")
        self.esm = esm
        self.alphabet = esm.alphabet
        self.embed_dim = esm.embed_dim
        self.num_heads = esm.attention_heads
        self.sequence_only = sequence_only
        self.drop_structure_rate = drop_structure_rate
        self.encoding_scale = encoding_scale
        self.window, self.pad_to = window, pad_to
        self.structure = StructureBias(num_kernels, self.num_heads, self.embed_dim, kernel_epsilon, bias_masking)
        self._batch_converter = esm.alphabet.get_batch_converter()
        # One-letter tokens -> ids, for `_tokens` (-1: not a one-letter token).
        self._letter_ids = torch.full((128,), -1, dtype=torch.long)
        for token, index in esm.alphabet.tok_to_idx.items():
            if len(token) == 1 and ord(token) < 128:
                self._letter_ids[ord(token)] = index

    def parameters_unused_by_features(self) -> list[nn.Parameter]:
        """What `features` never depends on: the last layer, the final LayerNorm, the LM head (except its weight,
        which is the tied input embedding), the contact head, and with `sequence_only` the structure module.
        Frozen where only features are trained, so distributed training finds no parameter without a gradient."""
        esm = self.esm
        tied = {id(esm.embed_tokens.weight)}
        parts = (esm.layers[-1], esm.emb_layer_norm_after, esm.lm_head, esm.contact_head) + (
            (self.structure,) if self.sequence_only else ())
        return [p for part in parts for p in part.parameters() if id(p) not in tied]

    def tokenize(self, proteins: Sequence[Protein]) -> dict[str, Tensor]:
        """tokens (B, T) with BOS/EOS/padding, T = longest cropped length + 2 (or `pad_to`); coords (B, T, 3)
        with 0 where unknown; observed (B, T), False at BOS, EOS, padding and residues without coordinates."""
        proteins = [crop_to_window(p, self.window) for p in proteins]
        tokens = self._tokens([p.sequence for p in proteins])
        if self.pad_to is not None:
            tokens = F.pad(tokens, (0, self.pad_to - tokens.shape[1]), value=self.alphabet.padding_idx)
        coords = torch.zeros(*tokens.shape, 3)
        observed = torch.zeros(tokens.shape, dtype=torch.bool)
        for i, protein in enumerate(proteins):
            if protein.coords is not None:
                residues = torch.from_numpy(protein.coords.copy())  # (L, 3), NaN rows unobserved
                seen = torch.isfinite(residues).all(dim=1)
                coords[i, 1:len(protein) + 1] = residues.nan_to_num(0.0)
                observed[i, 1:len(protein) + 1] = seen
        return {"tokens": tokens, "coords": coords, "observed": observed}

    def _tokens(self, sequences: Sequence[str]) -> Tensor:
        """fair-esm's batch converter (BOS, the residues, EOS, padding) by table lookup: for sequences of
        one-letter tokens its per-token string splitting gives one token per letter, at ~3 ms a protein.
        Anything else goes through fair-esm itself."""
        codes = [torch.frombuffer(bytearray(s.encode()), dtype=torch.uint8).long() if s.isascii() else None
                 for s in sequences]
        ids = [None if c is None else self._letter_ids[c] for c in codes]
        if any(i is None or bool((i < 0).any()) for i in ids):
            return self._batch_converter([(str(n), s) for n, s in enumerate(sequences)])[2]
        alphabet = self.alphabet
        tokens = torch.full((len(ids), max(map(len, ids)) + 2), alphabet.padding_idx, dtype=torch.long)
        tokens[:, 0] = alphabet.cls_idx
        for row, residues in zip(tokens, ids):
            row[1:len(residues) + 1] = residues
            row[len(residues) + 1] = alphabet.eos_idx
        return tokens

    def forward(self, tokens: Tensor, coords: Tensor, observed: Tensor,
                return_attention_bias: bool = False, return_final: bool = True) -> dict[str, Tensor]:
        """-> features (B, T, D) from the second-to-last layer; final (B, T, D) the last layer after ESM-2's
        final LayerNorm (what `esm.lm_head` expects), unless `return_final` is False, when the last layer is
        not run at all (the instruction stages need only the features); padding_mask (B, T) True at padding;
        attention_bias (B, H, T, T) with `return_attention_bias` (zeros without structure)."""
        model = self.esm
        padding_mask = tokens.eq(model.padding_idx)  # (B, T)
        B, T = tokens.shape
        observed = observed & ~padding_mask
        if self.structure.masking == "official":  # there, (0, 0, 0) means "no coordinates"
            observed = observed & coords.ne(0).any(dim=-1)
        if self.sequence_only:
            observed = torch.zeros_like(observed)
        elif self.training and self.drop_structure_rate > 0:
            keep = torch.rand(B, device=tokens.device) >= self.drop_structure_rate
            observed = observed & keep[:, None]

        with_structure = observed.any(dim=1)
        if not return_attention_bias and 0 < int(with_structure.sum()) < B:
            # Most proteins have no coordinates: encode those without the (B, H, T, T) bias the others need.
            # Rows do not interact and both groups keep the batch's padded length, so each row gets what the
            # whole batch in one pass gives it.
            groups = [with_structure.nonzero().flatten(), (~with_structure).nonzero().flatten()]
            parts = [self._encode(tokens[g], coords[g], observed[g], padding_mask[g], False, return_final)
                     for g in groups]
            back = torch.cat(groups).argsort()
            return {key: torch.cat([part[key] for part in parts])[back] for key in parts[0]}
        return self._encode(tokens, coords, observed, padding_mask, return_attention_bias, return_final)

    def _encode(self, tokens: Tensor, coords: Tensor, observed: Tensor, padding_mask: Tensor,
                return_attention_bias: bool, return_final: bool) -> dict[str, Tensor]:
        model = self.esm
        B, T = tokens.shape
        x = model.embed_scale * model.embed_tokens(tokens)  # (B, T, D)
        if model.token_dropout:
            # ESM-2's training-time token dropout rescaling (applied by fair-esm at every forward).
            is_mask = tokens.eq(model.mask_idx)
            x = x.masked_fill(is_mask[..., None], 0.0)
            mask_ratio = is_mask.sum(-1).to(x.dtype) / (~padding_mask).sum(-1)
            x = x * (1 - 0.15 * 0.8) / (1 - mask_ratio)[:, None, None]

        # Key padding as -inf (B, 1, 1, T), structure bias on top (0 on padded key columns in either masking).
        # Without coordinates in the batch there is no bias: the (B, H, T, T) mask is never built.
        mask = torch.zeros(B, 1, 1, T, device=tokens.device, dtype=x.dtype)
        mask = mask.masked_fill(padding_mask[:, None, None, :], float("-inf"))
        bias = None
        if not self.sequence_only and bool(observed.any()):
            bias, encoding = self.structure(coords, observed, padding_mask, encoding=bool(self.encoding_scale))
            # Per residue: the official code's `x[1:-1] += ...` on a (B, T, D) tensor slices the batch instead.
            if encoding is not None:
                x = x + self.encoding_scale * encoding.to(x.dtype)
            mask = mask + bias.to(x.dtype)  # (B, H, T, T), computed once, used by every layer
        mask = _up_to_the_last_key(mask, padding_mask)
        x = x.masked_fill(padding_mask[..., None], 0.0)

        features = x
        for index, layer in enumerate(model.layers if return_final else model.layers[:-1]):
            x = _layer_with_bias(layer, x, mask)
            if index == model.num_layers - 2:
                features = x
        out = {"features": features, "padding_mask": padding_mask}
        if return_final:
            out["final"] = model.emb_layer_norm_after(x)
        if return_attention_bias:
            out["attention_bias"] = bias if bias is not None else x.new_zeros(B, self.num_heads, T, T)
        return out
