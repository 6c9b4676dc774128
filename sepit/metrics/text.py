"""Open-ended text metrics: BLEU, ROUGE and METEOR, from per-sample statistics.

Scoring tokenizes each (prediction, reference) pair once into per-sample statistics: n-gram match counts and
lengths for BLEU, per-sample ROUGE F-measures and METEOR. Every metric is then a function of those arrays and
a weight matrix W (B, n), W[b, i] = how often sample i is in row b: W = ones (1, n) gives the point estimate,
bootstrap resamples and leakage bins are other rows (see bootstrap.py). Values here are on the 0-1 scale;
profiles.py scales them to 0-100.

Each metric equals its reference implementation on every pair, edge cases included: BLEU nltk's
`corpus_bleu` without smoothing, ROUGE rouge_score's `RougeScorer`, METEOR nltk's `meteor_score`.
nltk is imported on first use (it pulls in scipy), so closed-set scoring never pays for it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from sepit.errors import InputError
from sepit.metrics.bootstrap import weighted_mean
from sepit.nltk_data import INSTALL_HINT

MAX_ORDER = 4
# n-gram weights of the official SEPIT evaluation (nltk corpus_bleu per sample): 0.33, not 1/3, as there.
BLEU1 = (1.0, 0.0, 0.0, 0.0)
BLEU2 = (0.5, 0.5, 0.0, 0.0)
BLEU3 = (0.33, 0.33, 0.33, 0.0)
BLEU4 = (0.25, 0.25, 0.25, 0.25)
# nltk's method0 stands in sys.float_info.min for a precision with no matches, so BLEU is ~1e-77, not 0.
_LOG_NO_MATCH = math.log(sys.float_info.min)
_ROUGE_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_ROUGE_VALID = re.compile(r"^[a-z0-9]+$")


class MetricError(InputError, RuntimeError):
    """A metric that cannot be computed as defined here, e.g. METEOR without WordNet's data files."""


class Tokenizer(Protocol):
    """Text -> tokens for BLEU and METEOR. `name` goes into the results, so scores say how they were counted."""
    name: str

    def __call__(self, text: str) -> list[str]: ...


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: `re.findall(r"\\w+|[^\\w\\s]", text.lower())`.

    The offline stand-in for PubMedBERT's WordPiece: "ATP-binding." -> ["atp", "-", "binding", "."].
    """
    return re.findall(r"\w+|[^\w\s]", text.lower())


word_tokens.name = "words-v1"  # type: ignore[attr-defined]


class WordPieceTokens:
    """WordPiece tokens from a BERT vocab.txt, as the official recipe (PubMedBERT's vocab) counts them.

    Lower-cased, no special tokens, continuation pieces kept as "##ing": HF `BertTokenizer.tokenize`.
    """

    def __init__(self, vocab_file: str | Path):
        from tokenizers import BertWordPieceTokenizer

        path = Path(vocab_file)
        self._tokenizer = BertWordPieceTokenizer(str(path), lowercase=True)
        self.name = f"wordpiece:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"

    def __call__(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


def make_tokenizer(vocab_file: str | Path | None = None) -> Tokenizer:
    """WordPiece with the given vocab, else the word tokenizer."""
    return WordPieceTokens(vocab_file) if vocab_file else word_tokens  # type: ignore[return-value]


# BLEU

def bleu_stats(hyp: Sequence[str], ref: Sequence[str], max_n: int = MAX_ORDER) -> tuple[list[int], list[int]]:
    """(clipped n-gram matches, hypothesis n-gram counts) for n = 1..max_n, against a single reference."""
    matches, totals = [], []
    for n in range(1, max_n + 1):
        hyp_ngrams = Counter(zip(*(hyp[i:] for i in range(n))))
        ref_ngrams = Counter(zip(*(ref[i:] for i in range(n))))
        matches.append(sum((hyp_ngrams & ref_ngrams).values()))
        totals.append(max(0, len(hyp) - n + 1))
    return matches, totals


def bleu_statistics(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per-sample BLEU counts: bleu_matches, bleu_totals (n, 4), bleu_hyp_len, bleu_ref_len (n,)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    counts = [bleu_stats(h, r) for h, r in zip(hyps, refs)]
    return {"bleu_matches": np.array([m for m, _ in counts], dtype=np.int64).reshape(-1, MAX_ORDER),
            "bleu_totals": np.array([t for _, t in counts], dtype=np.int64).reshape(-1, MAX_ORDER),
            "bleu_hyp_len": np.array([len(h) for h in hyps], dtype=np.int64),
            "bleu_ref_len": np.array([len(r) for r in refs], dtype=np.int64)}


def _nltk_denominators(stats: dict[str, np.ndarray]) -> np.ndarray:
    # nltk's modified_precision divides by max(1, #hypothesis n-grams), per sample, before any summing.
    return np.maximum(stats["bleu_totals"], 1)  # (n, 4)


def _bleu(matches: np.ndarray, denominators: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray,
          weights: Sequence[float]) -> np.ndarray:
    """nltk's BLEU formula for each row (a sample, or a corpus as one weighted row). matches (R, 4) -> (R,)."""
    if len(weights) > MAX_ORDER:
        raise ValueError(f"BLEU weights beyond {MAX_ORDER}-grams: {weights}")
    w = np.zeros(MAX_ORDER)
    w[:len(weights)] = weights
    with np.errstate(divide="ignore", invalid="ignore"):
        log_precision = np.where(matches > 0, np.log(matches / denominators), _LOG_NO_MATCH)
        brevity = np.where(hyp_len > ref_len, 1.0, np.exp(1 - ref_len / hyp_len))
    brevity = np.where(hyp_len == 0, 0.0, brevity)
    score = brevity * np.exp(log_precision @ w)
    return np.where(matches[:, 0] == 0, 0.0, score)  # no unigram match: nltk returns 0 before smoothing


def sentence_bleu(stats: dict[str, np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Each sample's BLEU, nltk `corpus_bleu([[ref]], [hyp], weights)`. (n,)"""
    return _bleu(stats["bleu_matches"], _nltk_denominators(stats), stats["bleu_hyp_len"],
                 stats["bleu_ref_len"], weights)


def sentence_bleu_mean(stats: dict[str, np.ndarray], W: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Mean sentence BLEU per row of W (the official SEPIT BLEU). (B,)"""
    return weighted_mean(sentence_bleu(stats, weights), W)


def corpus_bleu(stats: dict[str, np.ndarray], W: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Corpus BLEU per row of W: counts and lengths summed over the (weighted) samples, then BLEU. (B,)"""
    return _bleu(W @ stats["bleu_matches"], W @ _nltk_denominators(stats), W @ stats["bleu_hyp_len"],
                 W @ stats["bleu_ref_len"], weights)


# ROUGE

@functools.cache
def _porter():
    from nltk.stem import porter

    return porter.PorterStemmer()  # the NLTK_EXTENSIONS mode, as rouge_score's DefaultTokenizer


@functools.lru_cache(maxsize=1 << 18)
def _stem(token: str) -> str:
    return _porter().stem(token)  # stemming dominates ROUGE time and descriptions reuse few words


def rouge_tokens(text: str, use_stemmer: bool) -> list[str]:
    """rouge_score's tokenization: lower-case, non-alphanumerics to spaces, Porter stems of words over 3 chars."""
    tokens = _ROUGE_NON_ALNUM.sub(" ", text.lower()).split()
    if use_stemmer:
        tokens = [_stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if _ROUGE_VALID.match(t)]


def _fmeasure(overlap: int, n_prediction: int, n_target: int) -> float:
    precision = overlap / max(n_prediction, 1)
    recall = overlap / max(n_target, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ngram_f(prediction: list[str], target: list[str], n: int) -> float:
    pred = Counter(zip(*(prediction[i:] for i in range(n))))
    gold = Counter(zip(*(target[i:] for i in range(n))))
    return _fmeasure(sum((pred & gold).values()), sum(pred.values()), sum(gold.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, bit-parallel (Hyyro 2004): bit i of v stands for a[i], one pass over b."""
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | 1 << i
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        if u:
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_scores(prediction: str, reference: str, use_stemmer: bool) -> tuple[float, float, float]:
    """(ROUGE-1, ROUGE-2, ROUGE-L) F-measures, rouge_score's `score(target=reference, prediction=...)`."""
    pred, gold = rouge_tokens(prediction, use_stemmer), rouge_tokens(reference, use_stemmer)
    lcs = _fmeasure(lcs_length(gold, pred), len(pred), len(gold)) if pred and gold else 0.0
    return _ngram_f(pred, gold, 1), _ngram_f(pred, gold, 2), lcs


def rouge_statistics(predictions: Sequence[str], references: Sequence[str],
                     use_stemmer: bool) -> dict[str, np.ndarray]:
    """Per-sample rouge1, rouge2, rougeL F-measures. Each (n,)"""
    scores = np.array([rouge_scores(p, r, use_stemmer) for p, r in zip(predictions, references)],
                      dtype=float).reshape(-1, 3)
    return {"rouge1": scores[:, 0], "rouge2": scores[:, 1], "rougeL": scores[:, 2]}


# METEOR

def require_wordnet() -> None:
    """Raise MetricError unless WordNet is on nltk's data path: METEOR without synonyms is another metric."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")  # honours the current nltk.data.path, even after WordNet has loaded
        nltk.corpus.wordnet.ensure_loaded()
    except LookupError as err:
        raise MetricError("METEOR", "needs the WordNet corpus, which nltk cannot find", INSTALL_HINT) from err


class _CachedWordNet:
    """nltk's WordNet with memoized synsets: METEOR looks up the same words for every sample. Same answers."""

    def __init__(self, wordnet):
        self.synsets = functools.lru_cache(maxsize=1 << 16)(wordnet.synsets)


class _CachedStemmer:
    """METEOR's default stemmer (nltk's PorterStemmer, NLTK_EXTENSIONS mode), memoized like ROUGE's."""
    stem = staticmethod(_stem)


def meteor_statistics(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> np.ndarray:
    """Per-sample METEOR, nltk `meteor_score([ref], hyp)` with its defaults (alpha 0.9, beta 3, gamma 0.5). (n,)"""
    require_wordnet()
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    wn, stemmer = _CachedWordNet(wordnet), _CachedStemmer()
    return np.array([meteor_score([list(r)], list(h), stemmer=stemmer, wordnet=wn)
                     for h, r in zip(hyps, refs)], dtype=float)
