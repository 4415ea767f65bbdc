import numpy as np
import pytest
from sklearn import metrics as skm

from fer_bench.metrics import (
    expected_calibration_error,
    floors,
    get_metric,
    mcnemar_exact,
    metric_intervals,
    summary_metrics,
)


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.0 * np.eye(4)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


def test_summary_metrics_agree_with_sklearn(predictions):
    y, proba = predictions
    m = summary_metrics(y, proba, 4)
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["accuracy_ci_low"] < m["accuracy"] < m["accuracy_ci_high"]


def test_binary_auc_is_plain_auc(predictions):
    y, proba = predictions
    yb = (y >= 2).astype(int)
    pb = np.stack([proba[:, :2].sum(1), proba[:, 2:].sum(1)], axis=1)
    m = summary_metrics(yb, pb, 2)
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(yb, pb[:, 1]))


def test_ece_of_perfectly_calibrated_and_overconfident_predictions():
    # 80% confidence, right 80% of the time -> ECE 0; 100% confidence, right half the time -> ECE 0.5
    y = np.array([0] * 8 + [1] * 2)
    proba = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(y, proba) == pytest.approx(0.0)
    y = np.array([0, 1] * 5)
    assert expected_calibration_error(y, np.tile([1.0, 0.0], (10, 1))) == pytest.approx(0.5)


def test_bootstrap_is_seeded_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    y_small = rng.integers(0, 3, 100)
    y_large = rng.integers(0, 3, 3000)
    noisy = lambda y: np.where(rng.random(len(y)) < 0.7, y, (y + 1) % 3)  # noqa: E731
    accuracy = [get_metric("accuracy")]
    small = metric_intervals(y_small, np.eye(3)[noisy(y_small)], 3, accuracy, seed=0)
    large_proba = np.eye(3)[noisy(y_large)]
    large = metric_intervals(y_large, large_proba, 3, accuracy, seed=0)
    assert large == metric_intervals(y_large, large_proba, 3, accuracy, seed=0)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(large["accuracy"]) < width(small["accuracy"])


def test_mcnemar_exact_counts_and_p_value():
    a = np.array([True] * 30 + [False] * 5 + [True] * 50)
    b = np.array([False] * 30 + [True] * 5 + [True] * 50)
    result = mcnemar_exact(a, b)
    assert (result["a_right_b_wrong"], result["a_wrong_b_right"]) == (30, 5)
    from scipy.stats import binomtest

    assert result["p_value"] == pytest.approx(binomtest(30, 35, 0.5).pvalue)
    assert result["p_value"] < 0.001
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_floors():
    f = floors(np.array([0, 1, 1, 2]), np.array([1, 1, 0, 2, 2]), 3)
    assert f["majority_class"] == 1
    assert f["majority_accuracy"] == pytest.approx(0.4)
    assert f["chance_accuracy"] == pytest.approx(1 / 3)
