"""Tiny random models built locally (no model hub), for tests and the CPU demo.

Each builder trains a tokenizer here with `tokenizers`, initialises a small model from its config with a fixed
seed, and saves both with `save_pretrained`, so the result loads through the same code as real weights:
`AutoTokenizer` / `AutoModelForCausalLM` / `AutoModel.from_pretrained(directory)`, and
`sepit.models.encoder.esm2_from_checkpoint(path)` for ESM-2. Same arguments -> same files, same weights.

    python -m sepit.tiny.builders OUTPUT_DIR [--force]   # OUTPUT_DIR/{llm,text_encoder,esm2.pt}

Configs name them `tiny:llm`, `tiny:text_encoder` and `tiny:esm2`; `sepit.model_paths.resolve_model_path` builds
them once under $SEPIT_CACHE/tiny-models and returns the path, so the tiny configs run on a fresh machine.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertModel, GenerationConfig, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)

from sepit.models.encoder import esm2_tiny
from sepit.tiny.corpus import training_samples

FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
            "mistral": (MistralConfig, MistralForCausalLM)}
VOCAB_SIZE = 4000
# bos, one line per turn ending in eos; the generation prompt is the assistant marker and a newline.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
README = ("# {name}\n\nA randomly initialised tiny {kind} built by `sepit.tiny.builders` ({call}) for tests and the "
          "CPU demo. Its weights are random: its outputs mean nothing.\n")


def default_corpus() -> list[str]:
    """Instructions and references of the corpus's train splits (`sepit.tiny.corpus`), each text once, in order."""
    texts = [text for sample in training_samples() for text in (sample.instruction, sample.reference)]
    return list(dict.fromkeys(texts))


def default_answer_tokens() -> list[str]:
    """The options of the bundled benchmark's closed-set train questions that are more than one word: one
    token each in the tiny tokenizer, so a tiny model answers "Transferases (EC 2)" in one step instead of
    spelling a name and a number it may mix up (a tokenizer fit to the answers)."""
    options = [choice for sample in training_samples() for choice in sample.choices or ()]
    return [option for option in dict.fromkeys(options) if " " in option]


def _corpus(corpus: Iterable[str] | None) -> list[str]:
    texts = default_corpus() if corpus is None else list(corpus)
    if not texts:
        raise ValueError("the tokenizer corpus is empty")
    return texts


def _write_readme(directory: Path, kind: str, call: str) -> None:
    (directory / "README.md").write_text(README.format(name=directory.name, kind=kind, call=call))


def build_tiny_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = VOCAB_SIZE,
                         answer_tokens: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (lossless decoding, no unknown bytes) with `<s>`, `</s>`, `<unk>`, `<pad>`
    (pad distinct from eos), the role markers as special tokens, and `CHAT_TEMPLATE`. It adds no bos/eos by
    itself: the chat template writes them, as `build_prompt` expects. `answer_tokens` become one (normal, not
    special) token each."""
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>", *ROLE_TOKENS]
    raw.train_from_iterator(_corpus(corpus), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", extra_special_tokens=ROLE_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.add_tokens(list(answer_tokens))
    return tokenizer


def build_tiny_llm(directory: str | Path, family: Literal["llama", "qwen2", "mistral"] = "llama",
                   hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0,
                   corpus: Iterable[str] | None = None, answer_tokens: Iterable[str] = ()) -> Path:
    """A random causal LM of `family` with untied input/output embeddings, and its tokenizer (`answer_tokens`:
    see `build_tiny_tokenizer`), saved to `directory`. Grouped-query attention with half as many key/value
    heads when `num_heads` is even; rope settings are the family's defaults; 2048 positions."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    directory = Path(directory)
    tokenizer = build_tiny_tokenizer(corpus, answer_tokens=answer_tokens)
    config_class, model_class = FAMILIES[family]
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = config_class(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                          num_hidden_layers=num_layers, num_attention_heads=num_heads,
                          num_key_value_heads=num_heads // 2 if num_heads % 2 == 0 else num_heads,
                          max_position_embeddings=2048, tie_word_embeddings=False, **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).eval()
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    _write_readme(directory, f"{family} causal language model",
                  f"build_tiny_llm(family={family!r}, hidden_size={hidden_size}, num_layers={num_layers}, "
                  f"num_heads={num_heads}, seed={seed})")
    return directory


def build_tiny_text_encoder(directory: str | Path, hidden_size: int = 32, seed: int = 0,
                            corpus: Iterable[str] | None = None, num_layers: int = 2, num_heads: int = 4,
                            vocab_size: int = VOCAB_SIZE) -> Path:
    """A random BERT-style encoder (stage-0 caption encoder) with a lowercasing word-level tokenizer (the
    `vocab_size` most frequent words of the corpus, ties by spelling) that wraps text as `[CLS] ... [SEP]`,
    saved to `directory`; loads with `AutoModel` / `AutoTokenizer`.

    The vocabulary is counted here rather than by `tokenizers`' WordPiece trainer, which breaks ties in a
    different order in every process: the same corpus gave other token ids, other captions to stage 0 and,
    through the stage chain, other SEPIT results from one fresh cache to the next. (The byte-level BPE of
    `build_tiny_tokenizer`, with its fixed initial alphabet, gave the same file in every process tried.)"""
    directory = Path(directory)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in _corpus(corpus)
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    words = sorted(counts, key=lambda word: (-counts[word], word))[:vocab_size - len(specials)]
    raw = Tokenizer(models.WordLevel({token: i for i, token in enumerate(specials + words)}, unk_token="[UNK]"))
    raw.normalizer, raw.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=512)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    _write_readme(directory, "BERT-style text encoder",
                  f"build_tiny_text_encoder(hidden_size={hidden_size}, num_layers={num_layers}, seed={seed})")
    return directory


def save_esm2_checkpoint(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a fair-esm ESM-2 in the released file layout: fairseq prefixes on the state dict, an
    `argparse.Namespace` config, no contact-regression weights (fair-esm ships those separately)."""
    state = {("encoder." if name.startswith("lm_head") else "encoder.sentence_encoder.") + name: tensor
             for name, tensor in model.state_dict().items() if not name.startswith("contact_head.regression")}
    cfg = argparse.Namespace(encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim,
                             encoder_attention_heads=model.attention_heads, token_dropout=model.token_dropout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "args": None, "cfg": {"model": cfg}}, path)
    return path


def build_tiny_esm(path: str | Path, num_layers: int = 2, embed_dim: int = 32, attention_heads: int = 4,
                   seed: int = 0) -> Path:
    """A random ESM-2 saved in the released layout; loads with `esm2_from_checkpoint(path)`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = esm2_tiny(num_layers=num_layers, embed_dim=embed_dim, attention_heads=attention_heads)
    return save_esm2_checkpoint(model, path)


def build_all(output_dir: str | Path, force: bool = False) -> dict[str, Path]:
    """OUTPUT_DIR/{llm, text_encoder, esm2.pt}; what already exists is kept unless `force`."""
    out = Path(output_dir)
    targets = {"llm": (out / "llm", out / "llm" / "config.json", build_tiny_llm),
               "text_encoder": (out / "text_encoder", out / "text_encoder" / "config.json", build_tiny_text_encoder),
               "esm2": (out / "esm2.pt", out / "esm2.pt", build_tiny_esm)}
    corpus = None
    for target, marker, build in targets.values():
        if force or not marker.exists():
            if build is not build_tiny_esm and corpus is None:
                corpus = default_corpus()  # read once for both tokenizers
            build(target) if build is build_tiny_esm else build(target, corpus=corpus)
    return {name: target for name, (target, _, _) in targets.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sepit.tiny.builders", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--force", action="store_true", help="rebuild what already exists")
    args = parser.parse_args(argv)
    for name, path in build_all(args.output_dir, force=args.force).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
