"""Bootstrap weights and percentile CIs: the weight-matrix shortcut equals resampling the data itself."""

import numpy as np
import pytest

from sepit.metrics.bootstrap import (intervals_missing_their_point, iter_resample_weights, percentile_cis,
                                     weighted_mean)
from weights import point_weights, resample_weights


def percentile_ci(statistic, n, n_resamples=1000, seed=0, level=0.95):
    """One statistic's interval from `percentile_cis`; (nan, nan) when there is nothing to resample."""
    return percentile_cis(lambda W: {"value": statistic(W)}, n, n_resamples, seed, level).get(
        "value", (float("nan"), float("nan")))


def _rows(n, n_resamples, seed):
    return np.vstack(list(iter_resample_weights(n, n_resamples, seed)))


def test_resample_weights_are_counts_of_n_draws_fixed_by_the_seed():
    W = _rows(50, 200, seed=3)
    assert W.shape == (200, 50) and (W >= 0).all() and (W.sum(1) == 50).all()
    np.testing.assert_array_equal(W, _rows(50, 200, seed=3))
    assert not np.array_equal(W, _rows(50, 200, seed=4))


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_rows_equal_the_unchunked_rows(chunk):
    blocks = list(iter_resample_weights(37, 100, seed=5, chunk=chunk))
    assert all(len(b) <= chunk for b in blocks)
    np.testing.assert_array_equal(np.vstack(blocks), resample_weights(37, 100, seed=5))


def test_mean_ci_equals_resampling_the_values_themselves():
    x = np.random.default_rng(0).exponential(size=60)
    lo, hi = percentile_ci(lambda W: weighted_mean(x, W), len(x), n_resamples=500, seed=1)
    means = [x[np.repeat(np.arange(len(x)), row)].mean() for row in resample_weights(len(x), 500, seed=1)]
    expected = np.percentile(means, [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(expected), abs=1e-12)


def test_ci_brackets_the_point_estimate_and_depends_on_the_seed():
    x = np.random.default_rng(1).normal(10, 2, size=200)
    point = weighted_mean(x, point_weights(len(x)))[0]
    lo, hi = percentile_ci(lambda W: weighted_mean(x, W), len(x), seed=0)
    assert lo < point < hi and hi - lo < 1.5  # ~4 standard errors of 2 / sqrt(200)
    assert percentile_ci(lambda W: weighted_mean(x, W), len(x), seed=0) == (lo, hi)
    assert percentile_ci(lambda W: weighted_mean(x, W), len(x), seed=1) != (lo, hi)
    narrow = percentile_ci(lambda W: weighted_mean(x, W), len(x), seed=0, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi


def test_no_samples_give_a_nan_interval():
    lo, hi = percentile_ci(lambda W: weighted_mean(np.array([]), W), 0)
    assert np.isnan(lo) and np.isnan(hi)
    assert _rows(0, 4, seed=0).shape == (4, 0)


def test_weighted_mean_of_an_empty_row_is_nan():
    values = weighted_mean(np.array([1.0, 3.0]), np.array([[1, 1], [0, 2], [0, 0]]))
    assert values[:2].tolist() == [2.0, 3.0] and np.isnan(values[2])


def test_ten_thousand_samples_resample_in_blocks():
    # a speed and memory sanity check at the size of a real task, not a timed test
    x = np.random.default_rng(2).random(10_000)
    rows = []
    lo, hi = percentile_ci(lambda W: rows.append(len(W)) or weighted_mean(x, W), len(x), n_resamples=500)
    assert len(rows) > 1 and sum(rows) == 500
    assert lo < x.mean() < hi


def test_only_an_interval_that_misses_its_point_gets_a_note():
    cis = {"inside": (1.0, 2.0), "rounding": (0.3, 0.5), "below": (12.75, 19.63), "undefined": (np.nan, np.nan),
           "no_point": (1.0, 2.0)}
    points = {"inside": 1.5, "rounding": 0.3 - 1e-15, "below": 21.88, "undefined": 5.0, "no_point": None}
    notes = intervals_missing_their_point(points, cis)
    assert list(notes) == ["below"] and "[12.75, 19.63]" in notes["below"] and "21.88" in notes["below"]
