"""How far two scores of the same answers agree: Spearman's rank correlation over a task's samples, with a
percentile bootstrap interval from the same resamples as every other interval (`sepit.metrics.bootstrap`).

A model-based score (the LLM judge, BERTScore) is worth trusting as far as it ranks answers as a grounded metric
does; the grounded F1 needs no model, so it is the other side of each pair (docs/evaluation.md, "Agreement").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from sepit.metrics.bootstrap import iter_resample_weights

# (model-based score, grounded score) pairs, by the per-sample log's field names.
PAIRS = (("judge_score", "entity_f1"), ("bertscore_f1", "entity_f1"))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks (ties share their mean rank); NaN when either side
    is constant (no ranking to agree with)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def rank_agreement(x: Sequence[float], y: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """{spearman, ci, n} over the samples where both scores exist; a resample's rho is that of the samples it
    drew, repeats included. The interval is null where some resample has no ranking (a constant side)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    both = ~(np.isnan(x) | np.isnan(y))
    x, y = x[both], y[both]
    rho = spearman(x, y) if len(x) > 1 else float("nan")
    draws = [spearman(x[np.repeat(np.arange(len(x)), counts)], y[np.repeat(np.arange(len(x)), counts)])
             for W in iter_resample_weights(len(x), n_resamples if len(x) > 1 else 0, seed) for counts in W]
    tail = (1 - level) / 2 * 100
    ci = None
    if draws and not np.isnan(draws).any():
        ci = [float(v) for v in np.percentile(draws, [tail, 100 - tail])]
    return {"spearman": None if np.isnan(rho) else rho, "ci": ci, "n": int(len(x))}


def task_agreement(logs: Sequence[Mapping], n_resamples: int = 1000, seed: int = 0) -> dict:
    """Each pair of `PAIRS` whose two scores the task's per-sample logs hold, keyed `model~grounded`."""
    out = {}
    for model_based, grounded in PAIRS:
        if logs and any(log.get(model_based) is not None for log in logs) and \
                any(log.get(grounded) is not None for log in logs):
            values = [[np.nan if log.get(name) is None else log[name] for log in logs] for name in (model_based, grounded)]
            out[f"{model_based}~{grounded}"] = rank_agreement(*values, n_resamples=n_resamples, seed=seed)
    return out
