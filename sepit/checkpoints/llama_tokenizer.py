"""The fast tokenizer that transformers 4.39 built from a released Llama SentencePiece folder.

The official SEPIT release ships its text tokenizer as the slow SentencePiece files only (`tokenizer.model`,
`added_tokens.json`, `tokenizer_config.json`). Its inference ran under transformers 4.39, whose slow-to-fast
conversion gave a BPE tokenizer with a `Prepend("▁")` + `Replace(" ", "▁")` normalizer applied to every piece
of text between special tokens: it writes extra `▁` pieces next to `[INST]`, `<<SYS>>`, `<bop>` and the rest.
Those are the ids the released model saw at inference. transformers 5 reads the same files differently (for
the golden prompts in tests/data/official_golden, exactly the slow tokenizer's ids, which training used), so `sepit convert official` rebuilds the 4.39 tokenizer here, with the `tokenizers`
library alone, and saves it as a plain `tokenizer.json` (docs/fidelity.md, "tokenizer ids").

The rebuild reads the SentencePiece model proto (vocabulary and scores), derives the BPE merges as 4.39's
`SentencePieceExtractor` did (every split of a piece into two pieces of the vocabulary, ordered by the score
of the merged piece), and adds the tokens of `added_tokens.json` as special, unnormalized tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sepit.data.errors import DataError

SENTENCEPIECE_MODEL = "tokenizer.model"
ADDED_TOKENS = "added_tokens.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
BPE_MODEL_TYPE = 2  # sentencepiece TrainerSpec.ModelType.BPE


def _read_proto(path: Path) -> Any:
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as err:  # sentencepiece present, protobuf missing, or neither
        raise DataError(str(path), f"cannot be read: {err}",
                        "Install the 'sentencepiece' and 'protobuf' packages (pip install sentencepiece "
                        "protobuf).") from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf's DecodeError
        raise DataError(str(path), f"is not a SentencePiece model ({type(err).__name__})",
                        "Give the text_tokenizer/ folder of the released checkpoint.") from None
    if proto.trainer_spec.model_type != BPE_MODEL_TYPE:
        raise DataError(str(path), f"is a SentencePiece model of type {proto.trainer_spec.model_type}, not BPE",
                        "Only Llama-style BPE SentencePiece tokenizers can be converted.")
    return proto


def bpe_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every (left, right) split of a piece into two pieces of the vocabulary, highest merged score first;
    ties keep vocabulary order of the merged piece, then of the left and right parts."""
    merges = []
    for piece, score in scores.items():
        local = [(piece[:i], piece[i:], score) for i in range(1, len(piece))
                 if piece[:i] in vocab and piece[i:] in vocab]
        merges += sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: m[2], reverse=True)  # a stable sort: the order above breaks ties
    return [(left, right) for left, right, _ in merges]


def _special_tokens(folder: Path) -> dict[str, str]:
    """bos/eos/unk/pad token strings from tokenizer_config.json (Llama's defaults where absent)."""
    config_path = folder / TOKENIZER_CONFIG
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None}
    out = {}
    for name, default in names.items():
        value = config.get(name, default)
        out[name] = value.get("content") if isinstance(value, dict) else value
    if not config.get("add_bos_token", True) or config.get("add_eos_token", False) \
            or config.get("add_prefix_space", True) is False:
        raise DataError(str(config_path), "asks for add_bos_token false, add_eos_token true or add_prefix_space "
                        "false", "Only the layout of the official release (BOS added, no EOS, a prefix space) "
                        "is converted.")
    return out


def fast_tokenizer_from_sentencepiece(folder: str | Path) -> Any:
    """A `PreTrainedTokenizerFast` giving the ids transformers 4.39's `LlamaTokenizerFast` gave for `folder`."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    model_path = folder / SENTENCEPIECE_MODEL
    if not model_path.is_file():
        raise DataError(str(model_path), "tokenizer not found",
                        "Give the checkpoint folder as released: its text_tokenizer/ holds tokenizer.model.")
    proto = _read_proto(model_path)
    scores = {p.piece: p.score for p in proto.pieces}
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    specials = _special_tokens(folder)
    tokenizer = Tokenizer(BPE(vocab, bpe_merges(vocab, scores), unk_token=proto.trainer_spec.unk_piece,
                              fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens([AddedToken(specials[t], normalized=False, special=True)
                                  for t in ("unk_token", "bos_token", "eos_token")])
    added_path = folder / ADDED_TOKENS
    added = json.loads(added_path.read_text()) if added_path.is_file() else {}
    for token, index in sorted(added.items(), key=lambda item: item[1]):
        tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True)])
        if tokenizer.token_to_id(token) != index:
            raise DataError(str(added_path), f"token {token!r} should have id {index} but gets "
                            f"{tokenizer.token_to_id(token)}", "The added token ids must follow the vocabulary "
                            "without gaps, as the official tokenizer saved them.")
    bos = specials["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer,
                                   **{k: v for k, v in specials.items() if v is not None})
