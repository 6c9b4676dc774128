"""The protein-language model: a Hugging Face causal LM that reads proteins, one class per way of reading them.

- `SplicedLanguageModel` (SEPIT, and the pLM + projector and Q-Former baselines): `InstructionSample`s ->
  `collate` (encoder tokens from `StructureAwareESM.tokenize`, chat-template prompt ids with one `<protein>`
  token per sample) -> the encoder gives per-position features (B, T, D) -> the projector maps them to the LLM
  width (`Projector`: one vector per position; `QFormer`: a fixed number of query vectors) -> `splice_embeddings`
  replaces each `<protein>` by `<bop>` + that protein's vectors + `<eop>` -> the LLM.
- `OfficialLanguageModel`: the same network with the official inference's prompt and splice (converted official
  checkpoints; `OfficialLayout`, docs/fidelity.md).
- `TextLanguageModel` (no encoder: the Galactica / Mol-Instructions / "PureLLM" baselines): `collate` writes the
  sequence into the prompt through the formatter registry (`sepit.models.formatters`); the LLM reads only tokens.

The base class holds what they share: the teacher-forced loss, answer likelihoods and generation.

Choices, stated once:
- The projector contributes every valid encoder position, BOS and EOS included (docs/fidelity.md, "protein
  span"): a protein of n residues (after cropping) becomes `<bop>` + n + 2 vectors + `<eop>`.
- Training text is the generation prompt (chat template, `add_generation_prompt=True`; the Alpaca layout for
  a tokenizer without a chat template) followed by the answer tokens and eos, so the model learns to continue
  exactly the prompt it sees at generation time. The loss covers the answer tokens and that eos, nothing else.
- Position ids count from each sequence's first real token, so a sequence gives the same logits alone or in
  a batch. Generation pads on the LEFT (new tokens follow every prompt directly); training and scoring pad on
  the RIGHT, so no query row is fully masked: on GPUs, bf16 attention kernels can return NaN gradients for
  such rows (seen on an H100 in stage 2: NaN after ~30 steps with left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepit.data.protein import ESM2_WINDOW
from sepit.data.sample import InstructionSample
from sepit.interface import GenerationSettings
from sepit.models import decoding
from sepit.models.decoding import position_ids_from_mask
from sepit.models.encoder import StructureAwareESM
from sepit.models.formatters import check_format, sequence_prompt
from sepit.models.moe import routing_statistics
from sepit.models.projector import ProjectorKind, build_projector
from sepit.models.prompts import OfficialLayout, build_prompt, official_prompt
from sepit.models.qformer import QFormerSettings
from sepit.models.splice import IGNORE_INDEX, answer_labels, pad_embeddings, splice_embeddings
from sepit.models.tokens import TokenEmbeddingSettings, add_protein_tokens

LossAverage = Literal["tokens", "answers"]
Batch = dict[str, Any]
Embedded = tuple[Tensor, Tensor, Tensor]  # inputs_embeds (B, L, H), attention_mask (B, L), labels (B, L)


class ProteinLanguageModel(nn.Module):
    """A causal LM and its tokenizer that read proteins as a subclass says (`collate`, `embed`,
    `spliced_lengths`): the answer loss, answer likelihoods and generation, the same for every way of reading."""

    def __init__(self, llm: nn.Module, tokenizer: Any):
        super().__init__()
        self.llm = llm
        self.tokenizer = tokenizer
        self.encoder: StructureAwareESM | None = None  # a spliced model's protein encoder
        self.official: OfficialLayout | None = None  # the official prompt and splice, where they are used

    def collate(self, samples: Sequence[InstructionSample], with_answers: bool = True) -> Batch:
        """Prompt ids (and, with answers, the answer masks) per sample, and what the encoder reads."""
        raise NotImplementedError

    def embed(self, batch: Batch, padding_side: Literal["left", "right"] = "left") -> Embedded:
        """-> inputs_embeds (B, L', H), attention_mask (B, L'), labels (B, L')."""
        raise NotImplementedError

    def spliced_lengths(self, samples: Sequence[InstructionSample]) -> list[int]:
        """Each sample's prompt length once embedded, up to a constant of the template. It orders the decoding
        queue (`sepit.models.decoding`)."""
        raise NotImplementedError

    def token_losses(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Teacher-forced cross-entropy of every next token -> losses (B, L'-1), answer mask (B, L'-1)."""
        inputs_embeds, attention_mask, labels = self.embed(batch, padding_side="right")
        logits = self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                          position_ids=position_ids_from_mask(attention_mask)).logits  # (B, L', V)
        # Token t predicts token t+1; the loss lives here once rather than in each LLM's own loss function.
        targets = labels[:, 1:]
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX,
                                 reduction="none")  # (B, L'-1), 0 where ignored
        return losses, targets.ne(IGNORE_INDEX)

    def forward(self, batch: Batch, average: LossAverage = "tokens") -> Tensor:
        """Mean cross-entropy of the answers (and their eos): over all answer tokens of the batch ("tokens", as
        the official model's loss, torch's CrossEntropyLoss mean over the non-ignored tokens), or over each
        answer's tokens and then over the answers ("answers": a one-token yes/no answer weighs as much as a
        200-token caption)."""
        losses, answer = self.token_losses(batch)
        if average == "tokens":
            return losses.sum() / answer.sum().clamp(min=1)
        if average != "answers":
            raise ValueError(f"average must be 'tokens' or 'answers', got {average!r}")
        counts = answer.sum(dim=1)
        answered = counts > 0
        return (losses.sum(dim=1)[answered] / counts[answered]).sum() / answered.sum().clamp(min=1)

    @torch.no_grad()
    def answer_log_likelihoods(self, samples: Sequence[InstructionSample]) -> Tensor:
        """(B,) log-probability of each sample's `reference` (tokens and eos) as the answer to its prompt."""
        losses, _ = self.token_losses(self.collate(samples, with_answers=True))
        return -losses.sum(dim=1)

    @torch.no_grad()
    def generate_tokens(self, samples: Sequence[InstructionSample], config: GenerationSettings,
                        batch_size: int | None = None) -> list[tuple[Tensor, Tensor | None]]:
        """Per sample, the new token ids (up to and including eos) and, with `config.logprobs`, the natural-log
        probability of each under the model's distribution (after the logits processors of the model's own
        generation config, before temperature and top-p: what greedy decoding picks from). `decode` turns the
        ids into the answer's text.

        Greedy decoding of a Llama-layout LLM runs `batch_size` rows at a time (default: all samples) with
        continuous batching (`sepit.models.decoding`); sampling and other LLMs go through Hugging Face's
        `generate`, `batch_size` samples per call, left-padded, with the KV cache."""
        if not samples:
            return []
        batch_size = batch_size or len(samples)
        was_training = self.training
        self.eval()
        try:
            if not config.do_sample and decoding.supports(self.llm):
                return self._decode_continuously(samples, config, batch_size)
            return [answer for start in range(0, len(samples), batch_size)
                    for answer in self._hf_generate(samples[start:start + batch_size], config)]
        finally:
            self.train(was_training)

    def decode(self, ids: Tensor) -> str:
        """An answer's text: special tokens skipped, stripped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def _decode_continuously(self, samples: Sequence[InstructionSample], config: GenerationSettings,
                             batch_size: int) -> list[tuple[Tensor, Tensor | None]]:
        def embed(indices: list[int]) -> tuple[Tensor, Tensor]:
            inputs_embeds, attention_mask, _ = self.embed(self.collate([samples[i] for i in indices], False))
            return inputs_embeds, attention_mask

        decoder = decoding.ContinuousDecoder(self.llm, self.tokenizer.eos_token_id, config.max_new_tokens,
                                             slots=min(batch_size, len(samples)), logprobs=config.logprobs)
        with routing_statistics(self.llm, enabled=False):
            return decoder.run(self.spliced_lengths(samples), embed)

    def _hf_generate(self, samples: Sequence[InstructionSample], config: GenerationSettings
                     ) -> list[tuple[Tensor, Tensor | None]]:
        """One left-padded batch through Hugging Face's `generate`."""
        from transformers import LogitsProcessorList

        inputs_embeds, attention_mask, _ = self.embed(self.collate(samples, with_answers=False))
        options: dict[str, Any] = {"do_sample": config.do_sample}
        if config.do_sample:
            torch.manual_seed(config.seed)
            options.update(temperature=config.temperature, top_p=config.top_p)
        recorder = decoding.ChosenTokenLogprobs() if config.logprobs else None
        if recorder is not None:
            options["logits_processor"] = LogitsProcessorList([recorder])
        # With inputs_embeds and no input_ids, decoder-only `generate` returns only the new tokens.
        new_tokens = self.llm.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            max_new_tokens=config.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id, **options)  # (B, <= max_new_tokens)
        logprobs = recorder.finish(new_tokens) if recorder is not None else None  # (B, n)
        answers = []
        for i, row in enumerate(new_tokens):
            stop = (row == self.tokenizer.eos_token_id).nonzero()
            n = int(stop[0]) + 1 if len(stop) else len(row)  # finished rows are padded after eos
            answers.append((row[:n], None if logprobs is None else logprobs[i, :n]))
        return answers


class TextLanguageModel(ProteinLanguageModel):
    """The LLM alone, reading the sequence as text written in `sequence_format` (at most `max_residues`)."""

    def __init__(self, llm: nn.Module, tokenizer: Any, sequence_format: str = "galactica",
                 max_residues: int = ESM2_WINDOW, token_embeddings: TokenEmbeddingSettings = TokenEmbeddingSettings()):
        super().__init__(llm, tokenizer)
        check_format(sequence_format)  # an unknown format fails here, not at the first batch
        add_protein_tokens(tokenizer, llm, protein_tokens=False, embeddings=token_embeddings)
        self.sequence_format, self.max_residues = sequence_format, max_residues

    def _instruction(self, sample: InstructionSample) -> str:
        return sequence_prompt(sample, self.sequence_format, self.max_residues)

    def collate(self, samples: Sequence[InstructionSample], with_answers: bool = True) -> Batch:
        prompts = [build_prompt(self.tokenizer, self._instruction(s), s.reference if with_answers else None,
                                protein_token=False) for s in samples]
        return {"input_ids": [ids for ids, _ in prompts],
                "answer_masks": [mask for _, mask in prompts] if with_answers else None}

    def embed(self, batch: Batch, padding_side: Literal["left", "right"] = "left") -> Embedded:
        embed_tokens = self.llm.get_input_embeddings()
        ids = [ids.to(embed_tokens.weight.device) for ids in batch["input_ids"]]
        masks = batch["answer_masks"] or [None] * len(ids)
        return pad_embeddings([embed_tokens(i) for i in ids], [answer_labels(i, m) for i, m in zip(ids, masks)],
                              padding_side)

    def spliced_lengths(self, samples: Sequence[InstructionSample]) -> list[int]:
        text = self.tokenizer([self._instruction(s) for s in samples], add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in text]


class SplicedLanguageModel(ProteinLanguageModel):
    """StructureAwareESM -> projector -> the LLM, each protein's vectors spliced in place of its `<protein>`
    token between `<bop>` and `<eop>`; the pad token is distinct from eos."""

    distinct_pad = True

    def __init__(self, encoder: StructureAwareESM, llm: nn.Module, tokenizer: Any, projector: ProjectorKind = "mlp",
                 qformer: QFormerSettings | None = None,
                 token_embeddings: TokenEmbeddingSettings = TokenEmbeddingSettings()):
        super().__init__(llm, tokenizer)
        self.encoder = encoder
        self.token_ids = add_protein_tokens(tokenizer, llm, distinct_pad=self.distinct_pad, embeddings=token_embeddings)
        self.projector = build_projector(projector, encoder.embed_dim, llm.config.hidden_size, qformer)

    def collate(self, samples: Sequence[InstructionSample], with_answers: bool = True) -> Batch:
        batch: Batch = dict(self.encoder.tokenize([s.protein for s in samples]))
        prompts = [build_prompt(self.tokenizer, s.instruction, s.reference if with_answers else None)
                   for s in samples]
        batch["input_ids"] = [ids for ids, _ in prompts]
        batch["answer_masks"] = [mask for _, mask in prompts] if with_answers else None
        return batch

    def _project(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """-> the projected protein vectors (B, T', H) and the (B, T') mask of those to splice in."""
        device = next(self.projector.parameters()).device
        encoded = self.encoder(batch["tokens"].to(device), batch["coords"].to(device),
                               batch["observed"].to(device), return_final=False)
        return self.projector(encoded["features"], encoded["padding_mask"])

    def embed(self, batch: Batch, padding_side: Literal["left", "right"] = "left") -> Embedded:
        protein, keep = self._project(batch)
        ids = self.token_ids
        return splice_embeddings(batch["input_ids"], protein, keep, self.llm.get_input_embeddings(), ids.protein,
                                 ids.bop, ids.eop, batch["answer_masks"], padding_side)

    def spliced_lengths(self, samples: Sequence[InstructionSample]) -> list[int]:
        text = self.tokenizer([s.instruction for s in samples], add_special_tokens=False)["input_ids"]
        if self.encoder.pad_to is not None:
            return [len(ids) + self.encoder.pad_to for ids in text]
        if self.projector.kind == "qformer":
            return [len(ids) + self.projector.settings.num_queries for ids in text]
        return [len(ids) + min(len(s.protein.sequence), self.encoder.window) + 2 for ids, s in zip(text, samples)]


class OfficialLanguageModel(SplicedLanguageModel):
    """The spliced network with the official inference's prompt and splice (`OfficialLayout`): every encoder
    position replaces `<protein>`, the text is left-padded to a fixed length, and the pad token is eos, as there."""

    distinct_pad = False

    def __init__(self, encoder: StructureAwareESM, llm: nn.Module, tokenizer: Any, projector: ProjectorKind = "mlp",
                 layout: OfficialLayout = OfficialLayout()):
        super().__init__(encoder, llm, tokenizer, projector)
        self.official = layout

    def collate(self, samples: Sequence[InstructionSample], with_answers: bool = True) -> Batch:
        """As the spliced model's, with the official prompt and its attention mask (0 on its left padding)."""
        batch: Batch = dict(self.encoder.tokenize([s.protein for s in samples]))
        prompts = [official_prompt(self.tokenizer, s.instruction, self.official, s.reference if with_answers else None)
                   for s in samples]
        batch["input_ids"] = [ids for ids, _, _ in prompts]
        batch["answer_masks"] = [mask for _, mask, _ in prompts] if with_answers else None
        batch["token_masks"] = [attention for _, _, attention in prompts]
        return batch

    def embed(self, batch: Batch, padding_side: Literal["left", "right"] = "left") -> Embedded:
        protein, keep = self._project(batch)
        keep = torch.ones_like(keep)  # every position, the protein's padding included
        keep[:, 0] = self.official.feature_strategy == "full"  # "default" drops <cls>
        return splice_embeddings(batch["input_ids"], protein, keep, self.llm.get_input_embeddings(),
                                 self.token_ids.protein, None, None, batch["answer_masks"], padding_side,
                                 batch["token_masks"])

    def spliced_lengths(self, samples: Sequence[InstructionSample]) -> list[int]:
        text = self.tokenizer([s.instruction for s in samples], add_special_tokens=False)["input_ids"]
        return [len(ids) + (self.encoder.pad_to or 0) for ids in text]
