"""The protein-language model: a Hugging Face causal LM that reads proteins, in one of two ways.

Spliced (SEPIT, and the pLM + projector and Q-Former baselines): `InstructionSample`s -> `collate` (encoder
tokens from `StructureAwareESM.tokenize`, chat-template prompt ids with one `<protein>` token per sample) -> the
encoder gives per-position features (B, T, D) -> a connector maps them to the LLM width (`Projector`: one vector
per position; `QFormer`: a fixed number of query vectors) -> `splice_embeddings` replaces each `<protein>` by
`<bop>` + that protein's vectors + `<eop>` -> the LLM, for the teacher-forced loss or for `generate`.

As text (no encoder: the Galactica / Mol-Instructions / "PureLLM" baselines): `collate` writes the sequence into
the prompt through the formatter registry (`sepit.models.formatters`), and the LLM reads only tokens.

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
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepit.data.protein import ESM2_WINDOW
from sepit.data.sample import PROTEIN_PLACEHOLDER, InstructionSample
from sepit.models.encoder import StructureAwareESM
from sepit.models.formatters import check_format, sequence_prompt
from sepit.models import decoding
from sepit.models.decoding import position_ids_from_mask
from sepit.interface import GenerationConfig
from sepit.models.moe import routing_statistics
from sepit.models.qformer import QFormer, QFormerSettings

BEGIN_PROTEIN = "<bop>"
END_PROTEIN = "<eop>"
PAD_TOKEN = "<pad>"
IGNORE_INDEX = -100  # torch cross_entropy's default ignore_index, also what HF causal LMs expect
# For base LLMs without a chat template (Galactica, LLaMA): a plain instruction layout (Alpaca's, without preamble).
PLAIN_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
LossAverage = Literal["tokens", "answers"]


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


def build_connector(kind: str, in_dim: int, out_dim: int, qformer: QFormerSettings | None = None) -> nn.Module:
    """`mlp` or `linear`: a per-position `Projector`; `qformer`: a `QFormer` with the `qformer` settings."""
    if kind == "qformer":
        return QFormer(in_dim, out_dim, qformer or QFormerSettings())
    if qformer:
        raise ValueError(f"Q-Former settings given for the {kind!r} connector; set connector to 'qformer'")
    return Projector(in_dim, out_dim, kind)


@dataclass(frozen=True)
class ProteinTokenIds:
    protein: int
    bop: int
    eop: int


def add_protein_tokens(tokenizer: Any, model: nn.Module, protein_tokens: bool = True,
                       distinct_pad: bool = True) -> ProteinTokenIds | None:
    """Give `tokenizer` the special tokens `<protein>`, `<bop>`, `<eop>` (unless `protein_tokens` is False: the
    sequence-as-text models need none), an eos (from the model config where the tokenizer names none) and a pad
    token distinct from eos (unless `distinct_pad` is False, for the official layout), and grow `model`'s
    embeddings (input, and output where untied) to match. Idempotent: a tokenizer that already has them (e.g.
    reloaded from a checkpoint) keeps its ids."""
    if tokenizer.eos_token is None:  # e.g. Galactica's tokenizer names none; its model config does
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or model.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            raise ValueError(f"{getattr(tokenizer, 'name_or_path', 'the tokenizer')}: neither the tokenizer nor the "
                             "model config names an end-of-sequence token; set eos_token in tokenizer_config.json")
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    new = [t for t in (PROTEIN_PLACEHOLDER, BEGIN_PROTEIN, END_PROTEIN) if t not in tokenizer.get_vocab()]
    if new and protein_tokens:
        extra = list(getattr(tokenizer, "extra_special_tokens", None) or [])
        tokenizer.add_special_tokens({"extra_special_tokens": extra + new})
    if tokenizer.pad_token is None or (distinct_pad and tokenizer.pad_token_id == tokenizer.eos_token_id):
        # Padding with eos would hide the real eos from the loss mask and from generation's stopping.
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not protein_tokens:
        return None
    ids = tokenizer.convert_tokens_to_ids([PROTEIN_PLACEHOLDER, BEGIN_PROTEIN, END_PROTEIN])
    return ProteinTokenIds(*ids)


def build_prompt(tokenizer: Any, instruction: str, answer: str | None = None,
                 protein_token: bool = True) -> tuple[Tensor, Tensor]:
    """The chat-template prompt for one instruction (which holds `<protein>` unless `protein_token` is False),
    plus the answer and eos when training. -> ids (L,), answer_mask (L,) True exactly on the answer tokens and
    the final eos."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": instruction}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template writes its own BOS where the model wants one; adding special tokens would double it.
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        # BOS only where the tokenizer itself puts one (LLaMA does, GPT-NeoX and Galactica do not).
        bos = tokenizer.bos_token_id
        bos = [bos] if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else []
        prompt = bos + tokenizer(PLAIN_PROMPT.format(instruction=instruction), add_special_tokens=False)["input_ids"]
    protein_id = tokenizer.convert_tokens_to_ids(PROTEIN_PLACEHOLDER) if protein_token else None
    if protein_token and prompt.count(protein_id) != 1:
        raise ValueError(f"the prompt must hold exactly one {PROTEIN_PLACEHOLDER} token, found "
                         f"{prompt.count(protein_id)} (was add_protein_tokens called on this tokenizer?)")
    target = []
    if answer is not None:
        target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor(prompt + target, dtype=torch.long)
    answer_mask = torch.zeros(len(ids), dtype=torch.bool)
    answer_mask[len(prompt):] = True
    return ids, answer_mask


# The official code's fixed system prompt (its Llama-2 conversation template).
OFFICIAL_SYSTEM_PROMPT = ("You are a helpful biological assistant. You are able to understand the protein that the "
                          "user provides, and assist the user with a variety of tasks using natural language.")


@dataclass(frozen=True)
class OfficialLayout:
    """The official inference's prompt and splice (docs/fidelity.md), recorded in converted checkpoints.

    The Llama-2 template `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{question} [/INST]` with `<protein>` written
    as `<bop><protein><eop>`, BOS from the tokenizer, right-truncated and left-padded with the pad token (eos
    there) to `text_length` tokens; the padding is masked and its embedding zeroed. Every encoder position,
    the protein's padding included (all but `<cls>` with `feature_strategy="default"`), replaces `<protein>`,
    all attended. Every sequence has the same length, so no row depends on the others in its batch."""

    system_prompt: str = OFFICIAL_SYSTEM_PROMPT
    text_length: int = 256
    feature_strategy: Literal["full", "default"] = "full"

    def __post_init__(self):
        if self.feature_strategy not in ("full", "default"):
            raise ValueError(f"feature_strategy must be 'full' or 'default', got {self.feature_strategy!r}")

    def text(self, instruction: str) -> str:
        question = instruction.replace(PROTEIN_PLACEHOLDER, BEGIN_PROTEIN + PROTEIN_PLACEHOLDER + END_PROTEIN)
        return f"[INST] <<SYS>>\n{self.system_prompt}\n<</SYS>>\n\n{question} [/INST]"


def official_prompt(tokenizer: Any, instruction: str, layout: OfficialLayout, answer: str | None = None
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """-> ids (L,), answer_mask (L,), attention_mask (L,): the official prompt, padded on the left to
    `layout.text_length`, then (when scoring an answer) the answer as the official training wrote it
    (` {answer} </s>` after `[/INST]`), which the official inference never scores."""
    text = layout.text(instruction)
    prompt = tokenizer(text)["input_ids"]
    protein_id = tokenizer.convert_tokens_to_ids(PROTEIN_PLACEHOLDER)
    if protein_id not in prompt[:layout.text_length]:
        raise ValueError(f"the official prompt is {len(prompt)} tokens and its {PROTEIN_PLACEHOLDER} token lies "
                         f"beyond the first {layout.text_length} (the official code would fail here too); "
                         "shorten the instruction")
    target = []
    if answer is not None:
        full = tokenizer(f"{text} {answer} {tokenizer.eos_token}")["input_ids"]
        if full[:len(prompt)] != prompt:
            raise ValueError(f"the answer {answer!r} changes the prompt's tokens")
        target = full[len(prompt):]
    prompt = prompt[:layout.text_length]
    pad = layout.text_length - len(prompt)
    ids = torch.tensor([tokenizer.pad_token_id] * pad + prompt + target, dtype=torch.long)
    attention = torch.ones(len(ids), dtype=torch.long)
    attention[:pad] = 0
    answer_mask = torch.zeros(len(ids), dtype=torch.bool)
    answer_mask[pad + len(prompt):] = True
    return ids, answer_mask, attention


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


class ProteinLanguageModel(nn.Module):
    """StructureAwareESM -> connector -> a Hugging Face causal LM, with its tokenizer; or, with no encoder, the
    LLM alone reading the sequence as text written in `sequence_format`."""

    def __init__(self, encoder: StructureAwareESM | None, llm: nn.Module, tokenizer: Any,
                 connector: Literal["mlp", "linear", "qformer"] = "mlp", qformer: QFormerSettings | None = None,
                 sequence_format: str = "galactica", max_residues: int = ESM2_WINDOW,
                 official: OfficialLayout | None = None):
        """`official`: the official inference's prompt and splice (converted official checkpoints); its pad
        token is eos, as there."""
        super().__init__()
        if official is not None and encoder is None:
            raise ValueError("the official layout needs a protein encoder")
        self.encoder = encoder
        self.llm = llm
        self.tokenizer = tokenizer
        self.official = official
        self.token_ids = add_protein_tokens(tokenizer, llm, protein_tokens=encoder is not None,
                                            distinct_pad=official is None)
        self.projector = None if encoder is None else \
            build_connector(connector, encoder.embed_dim, llm.config.hidden_size, qformer)
        self.sequence_format, self.max_residues = sequence_format, max_residues
        if encoder is None:
            check_format(sequence_format)  # an unknown format fails here, not at the first batch

    def _instruction(self, sample: InstructionSample) -> str:
        return sample.instruction if self.encoder is not None else \
            sequence_prompt(sample, self.sequence_format, self.max_residues)

    def collate(self, samples: Sequence[InstructionSample], with_answers: bool = True) -> dict[str, Any]:
        """Prompt ids (and, with answers, the answer masks) per sample; encoder inputs for the proteins."""
        batch: dict[str, Any] = {} if self.encoder is None else dict(self.encoder.tokenize([s.protein for s in samples]))
        if self.official is not None:
            prompts = [official_prompt(self.tokenizer, s.instruction, self.official,
                                       s.reference if with_answers else None) for s in samples]
            batch["token_masks"] = [attention for _, _, attention in prompts]
        else:
            prompts = [build_prompt(self.tokenizer, self._instruction(s), s.reference if with_answers else None,
                                    protein_token=self.encoder is not None) for s in samples]
        batch["input_ids"] = [prompt[0] for prompt in prompts]
        batch["answer_masks"] = [prompt[1] for prompt in prompts] if with_answers else None
        return batch

    def embed(self, batch: dict[str, Any], padding_side: Literal["left", "right"] = "left"
              ) -> tuple[Tensor, Tensor, Tensor]:
        """-> inputs_embeds (B, L', H), attention_mask (B, L'), labels (B, L')."""
        embed_tokens = self.llm.get_input_embeddings()
        if self.encoder is None:
            ids = [ids.to(embed_tokens.weight.device) for ids in batch["input_ids"]]
            masks = batch["answer_masks"] or [None] * len(ids)
            return pad_embeddings([embed_tokens(i) for i in ids], [answer_labels(i, m) for i, m in zip(ids, masks)],
                                  padding_side)
        device = next(self.projector.parameters()).device
        encoded = self.encoder(batch["tokens"].to(device), batch["coords"].to(device),
                               batch["observed"].to(device), return_final=False)
        protein, keep = self.projector(encoded["features"], encoded["padding_mask"])  # (B, T', H), (B, T')
        ids = self.token_ids
        if self.official is None:
            return splice_embeddings(batch["input_ids"], protein, keep, embed_tokens, ids.protein, ids.bop, ids.eop,
                                     batch["answer_masks"], padding_side)
        keep = torch.ones_like(keep)  # every position, the protein's padding included
        keep[:, 0] = self.official.feature_strategy == "full"  # "default" drops <cls>
        return splice_embeddings(batch["input_ids"], protein, keep, embed_tokens, ids.protein, None, None,
                                 batch["answer_masks"], padding_side, batch["token_masks"])

    def token_losses(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Teacher-forced cross-entropy of every next token -> losses (B, L'-1), answer mask (B, L'-1)."""
        inputs_embeds, attention_mask, labels = self.embed(batch, padding_side="right")
        logits = self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                          position_ids=position_ids_from_mask(attention_mask)).logits  # (B, L', V)
        # Token t predicts token t+1; the loss lives here once rather than in each LLM's own loss function.
        targets = labels[:, 1:]
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX,
                                 reduction="none")  # (B, L'-1), 0 where ignored
        return losses, targets.ne(IGNORE_INDEX)

    def forward(self, batch: dict[str, Any], average: LossAverage = "tokens") -> Tensor:
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

    def spliced_lengths(self, samples: Sequence[InstructionSample]) -> list[int]:
        """Each sample's prompt length once spliced, up to a constant of the template: instruction tokens plus
        the positions its protein becomes. It orders the decoding queue (`sepit.models.decoding`)."""
        text = self.tokenizer([self._instruction(s) for s in samples], add_special_tokens=False)["input_ids"]
        if self.encoder is None:
            return [len(ids) for ids in text]
        if self.official is not None or self.encoder.pad_to is not None:
            return [len(ids) + (self.encoder.pad_to or 0) for ids in text]
        if self.projector.kind == "qformer":
            return [len(ids) + self.projector.settings.num_queries for ids in text]
        return [len(ids) + min(len(s.protein.sequence), self.encoder.window) + 2 for ids, s in zip(text, samples)]

    @torch.no_grad()
    def generate_tokens(self, samples: Sequence[InstructionSample], config: GenerationConfig,
                        batch_size: int | None = None) -> list[tuple[Tensor, Tensor | None]]:
        """Per sample, the new token ids (up to and including eos) and, with `config.logprobs`, the natural-log
        probability of each under the model's distribution (after the logits processors of the model's own
        generation config, before temperature and top-p: what greedy decoding picks from).

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

    def _decode_continuously(self, samples: Sequence[InstructionSample], config: GenerationConfig,
                             batch_size: int) -> list[tuple[Tensor, Tensor | None]]:
        def embed(indices: list[int]) -> tuple[Tensor, Tensor]:
            inputs_embeds, attention_mask, _ = self.embed(self.collate([samples[i] for i in indices], False))
            return inputs_embeds, attention_mask

        decoder = decoding.ContinuousDecoder(self.llm, self.tokenizer.eos_token_id, config.max_new_tokens,
                                             slots=min(batch_size, len(samples)), logprobs=config.logprobs)
        with routing_statistics(self.llm, enabled=False):
            return decoder.run(self.spliced_lengths(samples), embed)

    def _hf_generate(self, samples: Sequence[InstructionSample], config: GenerationConfig
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

    def generate_token_ids(self, samples: Sequence[InstructionSample], config: GenerationConfig,
                           batch_size: int | None = None) -> list[Tensor]:
        """The new token ids per sample (up to and including eos)."""
        return [ids for ids, _ in self.generate_tokens(samples, config, batch_size)]

    def decode(self, ids: Tensor) -> str:
        """An answer's text: special tokens skipped, stripped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def generate(self, samples: Sequence[InstructionSample], config: GenerationConfig,
                 batch_size: int | None = None) -> list[str]:
        """One answer per sample: only the new tokens, special tokens skipped, stripped."""
        return [self.decode(ids) for ids, _ in self.generate_tokens(samples, config, batch_size)]
