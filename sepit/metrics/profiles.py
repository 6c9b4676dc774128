"""Metric profiles: named, versioned recipes that turn predictions into the numbers a results file reports.

A run names its profile (`sepit bench/score --scoring.profile`, sepit_v1 by default) and every task of the run is scored
with it, so a results file holds one; a task's card only recommends one (`Task.metric_profile`). Scoring
(sepit/evaluation/scoring.py) computes the profile's per-sample
statistics once, then calls its metric functions with W = ones for the values and with bootstrap or leakage
weight rows for the rest. All values are on the 0-100 scale. A change to what a profile computes is a new
version, so numbers under one name and version stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from sepit.metrics import closed, text
from sepit.metrics.bootstrap import weighted_mean

ROUGE = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class MetricProfile:
    name: str
    version: str
    description: str
    bleu: tuple[tuple[str, tuple[float, ...]], ...]  # (metric name, n-gram weights)
    bleu_kind: Literal["sentence_mean", "corpus"]  # mean of sentence BLEU, or BLEU of summed counts
    rouge_stemmer: bool  # Porter stemming inside ROUGE (rouge_score's use_stemmer)
    meteor: bool = True

    def __post_init__(self):
        if self.bleu_kind not in ("sentence_mean", "corpus"):
            raise ValueError(f"bleu_kind must be 'sentence_mean' or 'corpus', not {self.bleu_kind!r}")

    def open_statistics(self, predictions: Sequence[str], references: Sequence[str],
                        tokenizer: text.Tokenizer = text.word_tokens) -> dict[str, np.ndarray]:
        """Per-sample statistics, n rows each. BLEU and METEOR count `tokenizer`'s tokens; ROUGE tokenizes
        the raw strings itself, as rouge_score does."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if self.meteor:
            text.require_wordnet()  # before the slow part, not after it
        hyps, refs = [tokenizer(p) for p in predictions], [tokenizer(r) for r in references]
        stats = text.bleu_statistics(hyps, refs)
        stats.update(text.rouge_statistics(predictions, references, self.rouge_stemmer))
        if self.meteor:
            stats["meteor"] = text.meteor_statistics(hyps, refs)
        return stats

    def open_metrics(self, stats: dict[str, np.ndarray], W: np.ndarray) -> dict[str, np.ndarray]:
        """Metric name -> value per row of W (B, n), 0-100. (B,) each"""
        bleu = text.sentence_bleu_mean if self.bleu_kind == "sentence_mean" else text.corpus_bleu
        metrics = {name: 100 * bleu(stats, W, weights) for name, weights in self.bleu}
        for name in ROUGE + (("meteor",) if self.meteor else ()):
            metrics[name] = 100 * weighted_mean(stats[name], W)
        return metrics

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each sample's metrics for the per-sample logs, 0-100. (n,) each

        Corpus BLEU has no per-sample value and is left out: a sentence BLEU under its name would invite
        averaging it into something else.
        """
        values = {}
        if self.bleu_kind == "sentence_mean":
            values = {name: 100 * text.sentence_bleu(stats, weights) for name, weights in self.bleu}
        for name in ROUGE + (("meteor",) if self.meteor else ()):
            values[name] = 100 * stats[name]
        return values

    def closed_metrics(self, gold: np.ndarray, pred: np.ndarray, n_classes: int,
                       W: np.ndarray, macro_f1: bool = True) -> dict[str, np.ndarray]:
        """accuracy, macro_f1 (unless asked not to), extraction_failure_rate per row of W, 0-100, from class
        indices (-1: failed)."""
        metrics = closed.closed_metrics(gold, pred, n_classes, W, macro_f1)
        metrics["extraction_failure_rate"] = closed.failure_rate(pred, W)
        return {name: 100 * values for name, values in metrics.items()}


SEPIT_V1 = MetricProfile(
    name="sepit_v1", version="1",
    description="The official SEPIT metric formulas: mean sentence BLEU-1..4 (nltk, no smoothing, weights as "
                "the official code), ROUGE-1/2/L F with Porter stemming, METEOR (nltk, WordNet); its PubMedBERT "
                "tokens need --scoring.vocab, its BERTScore needs --scoring.bertscore_model.",
    bleu=(("bleu1", text.BLEU1), ("bleu2", text.BLEU2), ("bleu3", text.BLEU3), ("bleu4", text.BLEU4)),
    bleu_kind="sentence_mean", rouge_stemmer=True)

CORPUS_V1 = MetricProfile(
    name="corpus_v1", version="1",
    description="ProtT3-style: corpus BLEU-2/4 (nltk corpus_bleu, no smoothing), ROUGE-1/2/L F without "
                "stemming, METEOR (nltk, WordNet).",
    bleu=(("corpus_bleu2", text.BLEU2), ("corpus_bleu4", text.BLEU4)),
    bleu_kind="corpus", rouge_stemmer=False)
