"""Accuracy, macro-F1 and extraction failures per weight row equal scikit-learn on the resampled answers."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from sepit.metrics.closed import closed_metrics, failure_rate
from weights import point_weights, resample_weights

# 4 choices; class 3 never occurs in gold (a prediction of it is a false positive for nobody); -1: no answer
GOLD = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0, 1])
PRED = np.array([0, 1, 1, -1, 1, 2, 3, 0, -1, 0, 0, 1])


def sklearn_metrics(gold, pred, labels):
    return (accuracy_score(gold, pred), f1_score(gold, pred, labels=labels, average="macro", zero_division=0))


def test_point_estimate_equals_sklearn():
    metrics = closed_metrics(GOLD, PRED, 4, point_weights(len(GOLD)))
    accuracy, macro_f1 = sklearn_metrics(GOLD, PRED, sorted(set(GOLD)))
    assert metrics["accuracy"][0] == pytest.approx(accuracy, abs=1e-9)
    assert metrics["macro_f1"][0] == pytest.approx(macro_f1, abs=1e-9)


def test_each_bootstrap_row_equals_sklearn_on_the_resampled_answers():
    W = resample_weights(len(GOLD), 40, seed=2)
    metrics = closed_metrics(GOLD, PRED, 4, W)
    assert (W[:, GOLD == 2].sum(1) == 0).any()  # a resample that drew no gold class 2 is here
    for b, row in enumerate(W):
        index = np.repeat(np.arange(len(GOLD)), row)  # the resample itself
        # the point estimate's definition on the resample: its own gold classes, not the full set's
        accuracy, macro_f1 = sklearn_metrics(GOLD[index], PRED[index], sorted(set(GOLD[index])))
        assert metrics["accuracy"][b] == pytest.approx(accuracy, abs=1e-9)
        assert metrics["macro_f1"][b] == pytest.approx(macro_f1, abs=1e-9)


def test_many_rare_classes_equal_sklearn_on_each_resample():
    # 30 classes over 60 answers: most resamples miss some gold classes, and predict some they lack
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 30, 60)
    pred = np.where(rng.random(60) < 0.5, gold, rng.integers(-1, 30, 60))
    W = resample_weights(60, 50, seed=4)
    metrics = closed_metrics(gold, pred, 30, W)
    assert sum(len(set(gold[row > 0])) < len(set(gold)) for row in W) > 40
    for b, row in enumerate(W):
        index = np.repeat(np.arange(60), row)
        expected = f1_score(gold[index], pred[index], labels=sorted(set(gold[index])), average="macro",
                            zero_division=0)
        assert metrics["macro_f1"][b] == pytest.approx(expected, abs=1e-9)


def test_failure_rate_and_empty_rows():
    W = np.array([[1.0] * 12, [0.0] * 12])
    assert failure_rate(PRED, W)[0] == pytest.approx(2 / 12)
    metrics = closed_metrics(GOLD, PRED, 4, W)
    assert np.isnan(metrics["accuracy"][1]) and np.isnan(metrics["macro_f1"][1])


def test_answers_outside_the_choices_are_rejected():
    with pytest.raises(ValueError, match="class indices"):
        closed_metrics(np.array([0, 4]), np.array([0, 1]), 4, point_weights(2))
    with pytest.raises(ValueError, match="class indices"):
        closed_metrics(np.array([0, 1]), np.array([0, -2]), 4, point_weights(2))
