"""The protein tokens a spliced model adds to its LLM's tokenizer (`<protein>`, `<bop>`, `<eop>`), and the pad
and eos tokens every model needs, with the embedding rows they take (`TokenEmbeddingSettings`)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from sepit.data.sample import PROTEIN_PLACEHOLDER
from sepit.errors import InputError

BEGIN_PROTEIN = "<bop>"
END_PROTEIN = "<eop>"
PAD_TOKEN = "<pad>"


@dataclass(frozen=True)
class TokenEmbeddingSettings:
    """How the LLM's embedding tables (input, and output where untied) grow for the added tokens.

    Args:
        init: the new rows: "mean", near the old rows' mean (transformers' `mean_resizing`: their mean and
            covariance x 1e-9); "normal", N(0, initializer_range) (0.02 for TinyLlama), as transformers 4.39,
            the official code's pin, drew them (`_init_weights`; docs/fidelity.md, "new-token embeddings").
        pad_to_multiple_of: grow the tables to a multiple of this many rows, the extra rows belonging to no token
            (the official code: 8, `modeling_pit.py:93`); None: exactly the tokenizer's size.
    """

    init: Literal["mean", "normal"] = "mean"
    pad_to_multiple_of: int | None = None

    def check(self, key: str) -> None:
        """Refuse what `add_protein_tokens` cannot grow the tables with; `key` is where these sit in a config."""
        if self.init not in ("mean", "normal"):
            raise InputError(f"{key}.init", f"must be mean or normal, got {self.init!r}",
                             "Set normal for the official code's N(0, initializer_range).")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise InputError(f"{key}.pad_to_multiple_of", f"must be 1 or more, got {self.pad_to_multiple_of}",
                             "Set 8 (the official code), or null for no padding.")


@contextlib.contextmanager
def _quiet_resize_notices():
    """transformers announces mean resizing on every resize, even when asked for it by name; here the choice is
    a setting, so the notice says nothing new."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class ProteinTokenIds:
    protein: int
    bop: int
    eop: int


def add_protein_tokens(tokenizer: Any, model: nn.Module, protein_tokens: bool = True,
                       distinct_pad: bool = True, embeddings: TokenEmbeddingSettings = TokenEmbeddingSettings()
                       ) -> ProteinTokenIds | None:
    """Give `tokenizer` the special tokens `<protein>`, `<bop>`, `<eop>` (unless `protein_tokens` is False: the
    sequence-as-text models need none), an eos (from the model config where the tokenizer names none) and a pad
    token distinct from eos (unless `distinct_pad` is False, for the official layout), and grow `model`'s
    embeddings (input, and output where untied) to match, as `embeddings` says. Idempotent: a tokenizer that
    already has them (e.g. reloaded from a checkpoint) keeps its ids, and tables already as large keep theirs."""
    if tokenizer.eos_token is None:  # e.g. Galactica's tokenizer names none; its model config does
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or model.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            raise InputError(str(getattr(tokenizer, "name_or_path", "the tokenizer")), "neither the tokenizer nor the "
                             "model config names an end-of-sequence token", "Set eos_token in tokenizer_config.json.")
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    new = [t for t in (PROTEIN_PLACEHOLDER, BEGIN_PROTEIN, END_PROTEIN) if t not in tokenizer.get_vocab()]
    if new and protein_tokens:
        extra = list(getattr(tokenizer, "extra_special_tokens", None) or [])
        tokenizer.add_special_tokens({"extra_special_tokens": extra + new})
    if tokenizer.pad_token is None or (distinct_pad and tokenizer.pad_token_id == tokenizer.eos_token_id):
        # Padding with eos would hide the real eos from the loss mask and from generation's stopping.
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        with _quiet_resize_notices():
            model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=embeddings.pad_to_multiple_of,
                                          mean_resizing=embeddings.init == "mean")
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not protein_tokens:
        return None
    ids = tokenizer.convert_tokens_to_ids([PROTEIN_PLACEHOLDER, BEGIN_PROTEIN, END_PROTEIN])
    return ProteinTokenIds(*ids)
