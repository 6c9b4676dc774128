"""The text around a protein: the chat-template prompt (or the Alpaca layout for a base LLM), and the official
inference's Llama-2 prompt (`OfficialLayout`), each with the answer appended when a loss or likelihood needs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from sepit.data.sample import PROTEIN_PLACEHOLDER
from sepit.errors import InputError
from sepit.models.tokens import BEGIN_PROTEIN, END_PROTEIN

# For base LLMs without a chat template (Galactica, LLaMA): a plain instruction layout (Alpaca's, without preamble).
PLAIN_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"


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
        raise InputError(f"instruction {instruction[:60]!r}", f"the official prompt is {len(prompt)} tokens and its "
                         f"{PROTEIN_PLACEHOLDER} token lies beyond the first {layout.text_length} (the official code "
                         "would fail here too)", "Shorten the instruction.")
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
