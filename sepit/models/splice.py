"""Protein vectors into the text: each `<protein>` token's embedding replaced by the projected encoder
positions (between `<bop>` and `<eop>`), labels that carry loss only on the answer, and padding to a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from sepit.data.sample import PROTEIN_PLACEHOLDER

IGNORE_INDEX = -100  # torch cross_entropy's default ignore_index, also what HF causal LMs expect


def answer_labels(ids: Tensor, answer_mask: Tensor | None) -> Tensor:
    """The ids where they carry loss (the answer and its eos), IGNORE_INDEX elsewhere and when generating."""
    if answer_mask is None:
        return torch.full_like(ids, IGNORE_INDEX)
    return ids.masked_fill(~answer_mask.to(ids.device), IGNORE_INDEX)


def splice_embeddings(input_ids: Sequence[Tensor], protein_embeds: Tensor, protein_mask: Tensor,
                      embed_tokens: nn.Module, protein_token_id: int, bop_id: int | None, eop_id: int | None,
                      answer_masks: Sequence[Tensor] | None = None,
                      padding_side: Literal["left", "right"] = "left",
                      token_masks: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Replace the one `<protein>` in each sequence by `<bop>` + its valid protein vectors + `<eop>` (by the
    vectors alone where `bop_id`/`eop_id` are None: the official prompt writes them as text).

    input_ids: B unpadded id sequences (L_i,); protein_embeds (B, T, H) projected encoder features;
    protein_mask (B, T) True at the positions to splice in (per sample a different count); answer_masks: B
    (L_i,) masks of the tokens that carry loss (none when generating); token_masks: B (L_i,) attention masks
    of the text (0 on padding written into the ids: its embedding is zeroed, as the official code does).
    -> inputs_embeds (B, L', H), attention_mask (B, L'), labels (B, L') with IGNORE_INDEX on prompt,
    protein and padding positions; padded on `padding_side` to the longest spliced sequence L'.
    """
    wrap = bop_id is not None
    specials = embed_tokens(torch.tensor([bop_id, eop_id], device=protein_embeds.device)) if wrap else \
        protein_embeds.new_zeros(0, protein_embeds.shape[-1])  # (2 or 0, H)
    pieces, targets, masks = [], [], []
    for i, ids in enumerate(input_ids):
        ids = ids.to(protein_embeds.device)
        where = (ids == protein_token_id).nonzero().flatten()
        if where.numel() != 1:
            raise ValueError(f"sequence {i} holds {where.numel()} {PROTEIN_PLACEHOLDER} tokens, expected 1")
        at = int(where)
        text = embed_tokens(ids)  # (L_i, H)
        text_mask = torch.ones_like(ids) if token_masks is None else token_masks[i].to(ids.device)
        text = text * text_mask[:, None].to(text.dtype)
        protein = protein_embeds[i][protein_mask[i]].to(text.dtype)  # (n_i, H)
        pieces.append(torch.cat([text[:at], specials[:1], protein, specials[1:], text[at + 1:]]))
        inserted = protein.shape[0] + specials.shape[0]
        masks.append(torch.cat([text_mask[:at], text_mask.new_ones(inserted), text_mask[at + 1:]]))
        labels = answer_labels(ids, None if answer_masks is None else answer_masks[i])
        skipped = torch.full((inserted,), IGNORE_INDEX, dtype=ids.dtype, device=ids.device)
        targets.append(torch.cat([labels[:at], skipped, labels[at + 1:]]))

    return pad_embeddings(pieces, targets, padding_side, masks)


def pad_embeddings(pieces: Sequence[Tensor], targets: Sequence[Tensor], padding_side: Literal["left", "right"],
                   masks: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """B embedded sequences (L_i, H), their labels (L_i,) and attention masks (L_i,; all ones if None) ->
    inputs_embeds (B, L, H), attention_mask (B, L), labels (B, L) padded on `padding_side` to the longest
    (IGNORE_INDEX on padding)."""
    length = max(p.shape[0] for p in pieces)
    B, H = len(pieces), pieces[0].shape[-1]
    inputs_embeds = pieces[0].new_zeros(B, length, H)
    attention_mask = torch.zeros(B, length, dtype=torch.long, device=inputs_embeds.device)
    labels = torch.full((B, length), IGNORE_INDEX, dtype=torch.long, device=inputs_embeds.device)
    for i, (piece, target) in enumerate(zip(pieces, targets)):
        n = piece.shape[0]
        span = slice(length - n, length) if padding_side == "left" else slice(0, n)
        inputs_embeds[i, span] = piece
        attention_mask[i, span] = 1 if masks is None else masks[i]
        labels[i, span] = target
    return inputs_embeds, attention_mask, labels
