"""Closed-set metrics (accuracy, macro-F1, extraction failures) as functions of a weight matrix W (B, n).

Answers are class indices into a task's choices; -1 is an extraction failure (extraction.py found no
answer), which counts as wrong and is never a class. Like the text metrics, each function maps W to one
value per row, so the point estimate (W = ones) and the bootstrap share one code path.
"""

from __future__ import annotations

import numpy as np

from sepit.metrics.bootstrap import weighted_mean

FAILED = -1


def _check(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> None:
    if gold.shape != pred.shape or gold.ndim != 1:
        raise ValueError(f"gold {gold.shape} and pred {pred.shape} must be 1-d and the same length")
    if gold.size and (gold.min() < 0 or gold.max() >= n_classes):
        raise ValueError(f"gold answers must be class indices 0..{n_classes - 1}")
    if pred.size and (pred.min() < FAILED or pred.max() >= n_classes):
        raise ValueError(f"predicted answers must be class indices 0..{n_classes - 1} or {FAILED}")


def macro_f1(gold: np.ndarray, pred: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes present in the gold answers that each row of W weighs. (B,)

    The point estimate's own definition applied to a resample (or a leakage bin), as the bootstrap's plug-in
    principle needs: sklearn's `f1_score(gold, pred, labels=sorted(set(gold)), average="macro",
    zero_division=0)` on the resampled data. Averaging over the full set's classes instead scores a class the
    resample did not draw as 0 and biases every resample low, far enough with many classes that the interval
    missed its own point. An empty row (weights all 0) gives NaN.
    """
    labels = np.unique(gold)  # (K,)
    is_gold = (gold[:, None] == labels).astype(float)  # (n, K)
    is_pred = (pred[:, None] == labels).astype(float)  # (n, K)
    tp = W @ (is_gold * is_pred)  # (B, K)
    n_gold = W @ is_gold  # (B, K)
    denominator = n_gold + W @ is_pred  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = n_gold > 0  # (B, K)
    with np.errstate(invalid="ignore"):
        return (f1 * present).sum(1) / present.sum(1)  # 0 / 0 = NaN for a row with no class, as weighted_mean


def failure_rate(pred: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Fraction of answers extraction could not read. (B,)"""
    return weighted_mean(np.asarray(pred) == FAILED, W)


def closed_metrics(gold: np.ndarray, pred: np.ndarray, n_classes: int, W: np.ndarray,
                   with_macro_f1: bool = True) -> dict[str, np.ndarray]:
    """accuracy and macro_f1 (0-1) per row of W, from gold and predicted class indices (n,). `with_macro_f1`
    False skips macro-F1 (a task whose questions have their own options; its class arrays grow as n x classes)."""
    gold, pred = np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    _check(gold, pred, n_classes)
    metrics = {"accuracy": weighted_mean(gold == pred, W)}
    if with_macro_f1:
        metrics["macro_f1"] = macro_f1(gold, pred, W)
    return metrics
