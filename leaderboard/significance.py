"""Paired bootstrap significance of the difference between two models on the samples both answered.

The difference of model A and model B on a task is the mean of the per-sample differences d_i = a_i - b_i
over the shared sample ids. A bootstrap resample draws the shared samples with replacement (the same rows of
counts as the scorer's confidence intervals, `sepit.metrics.bootstrap`), so both models are judged on the
same resampled proteins: the pairing removes the variance that comes from which proteins are hard.

The two-sided p-value is that of the percentile interval: p = 2 * min(P*(d <= 0), P*(d >= 0)), each
proportion counted as (k + 1) / (B + 1) so that B resamples never claim p = 0, and capped at 1. Identical
answers give p = 1. Over several tasks the resamples of each task are averaged, which tests the difference of
the task-averaged score; each task draws its own resamples (`task_seed`), independently of the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sepit.metrics.bootstrap import iter_resample_weights

ALPHA = 0.05


@dataclass(frozen=True)
class PairedDraws:
    diff: float  # point estimate: mean of a_i - b_i over the shared samples
    draws: np.ndarray  # (B,) bootstrap resamples of that mean
    n_shared: int


@dataclass(frozen=True)
class Comparison:
    diff: float
    p_value: float
    ci: tuple[float, float]  # 95 % percentile interval of the difference
    n_shared: int

    def as_dict(self) -> dict:
        return {"diff": self.diff, "p_value": self.p_value, "ci": list(self.ci), "n_shared": self.n_shared}


def task_seed(seed: int, task: str) -> int:
    """The bootstrap seed of one task: the board's seed and the task's name. One seed for every task would give
    tasks of equal size identical resample rows, so their draws would not be independent."""
    return (seed * 1_000_003 + zlib.crc32(task.encode())) % 2**32


def paired_draws(a: Mapping[str, float], b: Mapping[str, float], n_resamples: int = 1000,
                 seed: int = 0) -> PairedDraws | None:
    """Bootstrap draws of mean(a - b) over the ids both have; None when they share no sample."""
    shared = sorted(a.keys() & b.keys())
    if not shared or n_resamples < 1:
        return None
    d = np.array([a[i] - b[i] for i in shared], dtype=float)
    n = len(d)
    draws = np.concatenate([W @ d / n for W in iter_resample_weights(n, n_resamples, seed)])
    return PairedDraws(float(d.mean()), draws, n)


def compare(parts: Sequence[PairedDraws]) -> Comparison | None:
    """The difference averaged over tasks (one part per task, equal weight), with its p-value and CI."""
    if not parts:
        return None
    diff = float(np.mean([p.diff for p in parts]))
    draws = np.mean([p.draws for p in parts], axis=0)
    B = len(draws)
    below = (np.count_nonzero(draws <= 0) + 1) / (B + 1)
    above = (np.count_nonzero(draws >= 0) + 1) / (B + 1)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Comparison(diff, float(min(1.0, 2 * min(below, above))), (float(lo), float(hi)),
                      int(sum(p.n_shared for p in parts)))
