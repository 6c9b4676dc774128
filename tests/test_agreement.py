"""Rank agreement between a model-based score and the grounded F1 (sepit/metrics/agreement.py), on constructed
scores whose correlation is known, and against scipy's own Spearman."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from sepit.metrics.agreement import rank_agreement, spearman, task_agreement


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, 200).astype(float)  # judge-like integers: many ties
    y = x + rng.normal(0, 3, 200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert spearman(np.array([1.0, 2, 3]), np.array([5.0, 5, 5])) != spearman(x, y)  # NaN: nothing to rank
    assert np.isnan(spearman(np.array([1.0, 2, 3]), np.array([5.0, 5, 5])))


def test_known_correlations_and_their_intervals():
    x = np.arange(50, dtype=float)
    same = rank_agreement(x, x ** 3, n_resamples=200)  # any increasing transform ranks alike
    assert same["spearman"] == pytest.approx(1.0) and same["ci"] == pytest.approx([1.0, 1.0]) and same["n"] == 50
    assert rank_agreement(x, -x, n_resamples=200)["spearman"] == pytest.approx(-1.0)
    # Hand-worked: ranks (1, 2, 3, 4) against (2, 1, 4, 3): d = (1, 1, 1, 1), rho = 1 - 6 * 4 / (4 * 15) = 0.6.
    assert rank_agreement([1, 2, 3, 4], [2, 1, 4, 3], n_resamples=0)["spearman"] == pytest.approx(0.6)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=400), rng.normal(size=400)  # independent: rho near 0, the interval covers it
    independent = rank_agreement(a, b, n_resamples=500, seed=3)
    lo, hi = independent["ci"]
    assert lo < 0 < hi and lo <= independent["spearman"] <= hi and hi - lo < 0.25
    # rho = 0.6 by construction (bivariate normal with r = 0.6 gives Spearman 6/pi * asin(0.3) = 0.585).
    z = rng.normal(size=(4000, 2))
    c = 0.6 * z[:, 0] + 0.8 * z[:, 1]
    strong = rank_agreement(z[:, 0], c, n_resamples=200, seed=3)
    assert strong["spearman"] == pytest.approx(6 / np.pi * np.arcsin(0.3), abs=0.03)
    assert strong["ci"][0] < 6 / np.pi * np.arcsin(0.3) < strong["ci"][1]
    assert rank_agreement(x, x, n_resamples=200, seed=5) == rank_agreement(x, x, n_resamples=200, seed=5)


def test_missing_values_are_left_out_and_a_constant_side_gives_no_interval():
    result = rank_agreement([1, 2, None, 4, 5], [1, 2, 3, float("nan"), 5], n_resamples=50)
    assert result["n"] == 3 and result["spearman"] == pytest.approx(1.0)
    flat = rank_agreement([1, 2, 3, 4], [7, 7, 7, 7], n_resamples=50)
    assert flat == {"spearman": None, "ci": None, "n": 4}


def test_a_task_reports_each_pair_it_holds():
    logs = [{"judge_score": j, "entity_f1": f, "bleu2": 1.0} for j, f in [(2, 10.0), (5, 40.0), (9, 90.0), (7, None)]]
    agreement = task_agreement(logs, n_resamples=100)
    assert set(agreement) == {"judge_score~entity_f1"}  # no BERTScore in these logs
    assert agreement["judge_score~entity_f1"]["spearman"] == pytest.approx(1.0)
    assert agreement["judge_score~entity_f1"]["n"] == 3
    assert task_agreement([{"bleu2": 1.0}], n_resamples=10) == {}
