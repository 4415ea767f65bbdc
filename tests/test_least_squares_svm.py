"""The least-squares SVMs of baselines/least_squares_svm.py: the same models as scikit-learn's Ridge on +1/-1
targets (alpha = 1 / 2C), for a whole C grid, on a subset of the rows, with sample weights."""

from __future__ import annotations

import numpy as np
import pytest
from fer_bench.baselines.least_squares_svm import (
    gram_bytes,
    gram_matrix,
    least_squares_svms,
    one_vs_rest_targets,
)
from sklearn.linear_model import Ridge


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    features = (rng.normal(size=(120, 300)) + labels[:, None] * 0.3).astype(np.float32)  # more features than rows
    return features, labels, rng.uniform(0.5, 2.0, 120)


def test_each_c_is_ridge_regression_on_one_vs_rest_targets(problem):
    features, labels, weights = problem
    rows = np.arange(20, 120)
    models = least_squares_svms(features, labels, [0.05, 2.0], rows, weights)
    assert [model.C for model in models] == [0.05, 2.0]
    targets = one_vs_rest_targets(labels[rows], np.arange(4))
    for model in models:
        ridge = Ridge(alpha=1 / (2 * model.C)).fit(features[rows].astype(np.float64), targets,
                                                   sample_weight=weights[rows])
        np.testing.assert_allclose(model.coef_, ridge.coef_, atol=1e-5)
        np.testing.assert_allclose(model.intercept_, ridge.intercept_, atol=1e-5)
        np.testing.assert_allclose(model.decision_function(features), ridge.predict(features), atol=1e-4)
    np.testing.assert_array_equal(models[0].classes_, np.arange(4))
    assert not np.allclose(models[0].coef_, models[1].coef_)  # the C matters


def test_rows_of_weight_zero_are_left_out(problem):
    features, labels, weights = problem
    zeroed = weights.copy()
    zeroed[:30] = 0
    with_zeros = least_squares_svms(features, labels, [1.0], np.arange(120), zeroed)[0]
    without = least_squares_svms(features, labels, [1.0], np.arange(30, 120), weights)[0]
    np.testing.assert_allclose(with_zeros.coef_, without.coef_, atol=1e-6)


def test_two_classes_give_one_decision_column_for_the_second(problem):
    features, labels, _ = problem
    binary = np.where(labels >= 2, "positive", "negative")
    model = least_squares_svms(features, binary, [1.0], np.arange(120))[0]
    scores = model.decision_function(features)
    assert scores.shape == (120,) and list(model.classes_) == ["negative", "positive"]
    assert np.mean((scores > 0) == (binary == "positive")) > 0.9  # training rows, separable with 300 features


def test_one_class_is_refused(problem):
    features, labels, _ = problem
    with pytest.raises(ValueError, match="at least two classes"):
        least_squares_svms(features, np.zeros(120), [1.0], np.arange(120))


def test_gram_bytes_count_a_float32_gram_and_a_float64_factor():
    assert gram_bytes(1000, 900) == 4 * 1000 ** 2 + 8 * 900 ** 2


def test_the_gram_matrix_is_computed_in_blocks_of_rows(problem):
    features = problem[0]
    expected = features.astype(np.float64) @ features.T.astype(np.float64)
    # blocks that do not divide the 120 rows, and one block; on one thread and two
    for block_rows, n_jobs in ((7, 2), (64, 1), (1000, 1)):
        gram = gram_matrix(features, block_rows=block_rows, n_jobs=n_jobs)
        assert gram.dtype == np.float32
        np.testing.assert_allclose(gram, expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(gram, gram.T)
