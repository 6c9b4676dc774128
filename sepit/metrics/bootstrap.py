"""Bootstrap resamples as weight matrices, and percentile confidence intervals.

A resample is a row of counts, W[b, i] = how often sample i was drawn, so a metric computed from per-sample
statistics and W (B, n) gives B bootstrap values in one matrix product instead of B passes over the data.
The point estimate is the same function at W = ones (1, n).
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import numpy as np

CHUNK_ENTRIES = 1 << 22  # rows per block keep a block of W near 32 MiB (int64) however large n is


def weighted_mean(values: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Mean of per-sample `values` (n,) under each row of W (B, n). (B,); NaN for a row that weighs nothing."""
    totals = W.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, (W @ np.asarray(values, dtype=float)) / totals, np.nan)


def iter_resample_weights(n: int, n_resamples: int = 1000, seed: int = 0,
                          chunk: int | None = None) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n samples as counts, in blocks of `chunk` rows (default ~4M entries): row b draws n
    samples with replacement (B, n) from numpy's multinomial with `seed`.

    The blocks are draws from one generator, and numpy's multinomial draws row after row, so the rows do not
    depend on the chunk size (tests check it against all rows drawn at once).
    """
    if n == 0:
        if n_resamples:
            yield np.zeros((n_resamples, 0), dtype=np.int64)
        return
    chunk = chunk or max(1, CHUNK_ENTRIES // n)
    rng = np.random.default_rng(seed)
    uniform = np.full(n, 1.0 / n)
    for start in range(0, n_resamples, chunk):
        yield rng.multinomial(n, uniform, size=min(chunk, n_resamples - start))  # (chunk, n)


def percentile_cis(metrics: Callable[[np.ndarray], dict[str, np.ndarray]], n: int, n_resamples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric of `metrics(W) -> {name: (B,)}`, all from the same
    resamples, at `level`, with np.percentile's linear interpolation.

    No samples, or no resamples, give {}: there is nothing to resample. A NaN value in any resample (a
    statistic undefined on that resample) makes that interval NaN rather than silently narrower.
    """
    if n == 0 or n_resamples == 0:
        return {}
    draws: dict[str, list[np.ndarray]] = {}
    for W in iter_resample_weights(n, n_resamples, seed):
        for name, values in metrics(W).items():
            draws.setdefault(name, []).append(values)
    tail = (1 - level) / 2 * 100
    return {name: tuple(float(v) for v in np.percentile(np.concatenate(parts), [tail, 100 - tail]))
            for name, parts in draws.items()}


def intervals_missing_their_point(points: Mapping[str, float | None],
                                  cis: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    """Why each interval in `cis` that does not contain its point estimate must not be reported, by name.

    A percentile interval is read off the resampled values, not built around the point, so a statistic that
    is biased on resamples can miss its own point (macro-F1 once reported 21.88 [12.75, 19.63]); shown, such an
    interval would mislead. Float rounding (the point and a resample summed in another order) is no miss, and
    an undefined point or interval (None, NaN) has nothing to compare.
    """
    notes = {}
    for name, (lo, hi) in cis.items():
        point = points.get(name)
        if point is None or np.isnan([point, lo, hi]).any():
            continue
        slack = 1e-9 * max(1.0, abs(point))
        if not lo - slack <= point <= hi + slack:
            notes[name] = (f"the percentile bootstrap interval [{lo:.4g}, {hi:.4g}] does not contain the point "
                           f"estimate {point:.4g}: the statistic is biased on resamples, so no interval is "
                           "reported")
    return notes
