"""The built-in synthetic data set: format, determinism, class balance, planted artifacts, learnability."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fer_bench import CLASS_NAMES, USAGES
from fer_bench.data import synthetic
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError

ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)


@pytest.fixture(scope="module")
def default_data():
    return make_synthetic()


@pytest.fixture(scope="module")
def clean_data():
    return make_synthetic(artifacts=False)


def duplicate_groups(ds):
    """Indices of images sharing identical pixels, one list per group of two or more."""
    groups = defaultdict(list)
    for i, image in enumerate(ds.images):
        groups[hashlib.sha256(image.tobytes()).hexdigest()].append(i)
    return [g for g in groups.values() if len(g) > 1]


def near_uniform(ds):
    return np.flatnonzero(ds.images.reshape(len(ds), -1).astype(float).std(axis=1) < 2.0)


def test_format_names_and_ids(default_data):
    ds = default_data
    assert ds.name == "synthetic"
    assert ds.source == "built-in synthetic generator (seed=0)"
    assert ds.images.dtype == np.uint8 and ds.images.shape == (4200, 48, 48)
    assert ds.labels.dtype == np.int64 and set(np.unique(ds.labels)) == set(range(len(CLASS_NAMES)))
    assert set(np.unique(ds.usage)) == set(USAGES)
    assert len(set(ds.ids)) == len(ds)
    for image_id, usage in zip(ds.ids, ds.usage, strict=True):
        assert re.fullmatch(rf"synthetic_{usage}_\d{{5}}", image_id)
    assert "synthetic_Training_00017" in set(ds.ids)


def test_faces_have_contrast(clean_data):
    per_image_std = clean_data.images.reshape(len(clean_data), -1).astype(float).std(axis=1)
    assert per_image_std.min() > 5
    assert 25 < np.median(per_image_std) < 80


def test_split_sizes_as_requested():
    ds = make_synthetic(n_train=150, n_public=30, n_private=41, seed=3, artifacts=False)
    assert {u: sum(c.values()) for u, c in ds.counts().items()} == {
        "Training": 150, "PublicTest": 30, "PrivateTest": 41}
    assert ds.source.endswith("(seed=3)")


def test_same_seed_same_data_other_seed_other_data():
    first = make_synthetic(n_train=120, n_public=25, n_private=25, seed=5)
    again = make_synthetic(n_train=120, n_public=25, n_private=25, seed=5)
    other = make_synthetic(n_train=120, n_public=25, n_private=25, seed=6)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.fingerprint == again.fingerprint
    assert not np.array_equal(first.images, other.images)
    assert first.fingerprint != other.fingerprint


def test_training_does_not_depend_on_test_split_sizes():
    small = make_synthetic(n_train=60, n_public=7, n_private=7, artifacts=False).split("Training")
    large = make_synthetic(n_train=60, n_public=90, n_private=30, artifacts=False).split("Training")
    np.testing.assert_array_equal(small.images, large.images)
    np.testing.assert_array_equal(small.labels, large.labels)


def test_every_class_in_every_split(default_data):
    for usage, counts in default_data.counts().items():
        minimum = 100 if usage == "Training" else 20
        assert min(counts.values()) >= minimum, (usage, counts)
    tiny = make_synthetic(n_train=7, n_public=7, n_private=7, artifacts=False)
    for counts in tiny.counts().values():
        assert list(counts.values()) == [1] * 7


def test_class_frequencies_follow_the_documented_shares(default_data):
    for counts in default_data.counts().values():
        n = sum(counts.values())
        shares = np.array([counts[c] for c in CLASS_NAMES]) / n
        np.testing.assert_allclose(shares, synthetic.CLASS_FREQUENCIES, atol=1 / n)
        assert min(counts, key=counts.get) == "disgust"
        assert max(counts, key=counts.get) == "happy"
        assert 0.03 <= counts["disgust"] / n <= 0.05


def test_artifacts_are_planted_with_the_documented_counts(default_data):
    ds = default_data
    groups = duplicate_groups(ds)
    assert all(len(g) == 2 for g in groups)
    within_training = [g for g in groups if set(ds.usage[g]) == {"Training"}]
    same_label = [g for g in within_training if len(set(ds.labels[g])) == 1]
    conflicting = [g for g in within_training if len(set(ds.labels[g])) == 2]
    assert len(same_label) == synthetic.N_TRAINING_DUPLICATES
    assert len(conflicting) == synthetic.N_CONFLICTING_DUPLICATES
    for split in ("PublicTest", "PrivateTest"):
        leaked = [g for g in groups if set(ds.usage[g]) == {"Training", split}]
        assert len(leaked) == synthetic.N_LEAKED_PER_TEST_SPLIT
        assert all(len(set(ds.labels[g])) == 1 for g in leaked)
    assert len(groups) == len(within_training) + 2 * synthetic.N_LEAKED_PER_TEST_SPLIT
    blanks = near_uniform(ds)
    assert sorted(ds.usage[blanks]) == sorted(u for u, k in synthetic.BLANK_IMAGES.items() for _ in range(k))
    assert (ds.images[blanks].reshape(len(blanks), -1) == 0).all(axis=1).any(), "one blank is all black"


def test_artifacts_replace_images_without_changing_counts(default_data, clean_data):
    assert duplicate_groups(clean_data) == []
    assert len(near_uniform(clean_data)) == 0
    assert default_data.counts() == clean_data.counts()
    np.testing.assert_array_equal(default_data.labels, clean_data.labels)
    changed = np.flatnonzero((default_data.images != clean_data.images).any(axis=(1, 2)))
    expected = (synthetic.N_TRAINING_DUPLICATES + synthetic.N_CONFLICTING_DUPLICATES
                + 2 * synthetic.N_LEAKED_PER_TEST_SPLIT + sum(synthetic.BLANK_IMAGES.values()))
    assert len(changed) == expected


def test_invalid_sizes_and_seeds_raise_user_errors():
    with pytest.raises(FerBenchError, match="PublicTest size must be an integer >= 7"):
        make_synthetic(n_public=3, artifacts=False)
    with pytest.raises(FerBenchError, match="Training size 50 is too small for artifacts=True"):
        make_synthetic(n_train=50, n_public=20, n_private=20)
    with pytest.raises(FerBenchError, match="seed must be a non-negative integer"):
        make_synthetic(seed=-1)
    with pytest.raises(FerBenchError, match="PrivateTest size must be an integer"):
        make_synthetic(n_private=20.5, artifacts=False)


def test_logistic_regression_learns_well_above_chance(clean_data):
    train, test = clean_data.split("Training"), clean_data.split("PrivateTest")

    def downsample(images):  # 12x12 block means: fast, and still enough to see the expression
        return images.reshape(len(images), 12, 4, 12, 4).mean(axis=(2, 4)).reshape(len(images), -1)

    x_train, x_test = downsample(train.images), downsample(test.images)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    model = LogisticRegression(C=0.05, max_iter=100, tol=1e-2).fit((x_train - mean) / std, train.labels)
    accuracy = model.score((x_test - mean) / std, test.labels)
    majority_share = np.bincount(test.labels).max() / len(test)
    assert accuracy > 2 / len(CLASS_NAMES)
    assert accuracy > majority_share + 0.15
    # ...but far from solved: the benchmark needs room for better models.
    assert accuracy < 0.8


def standardized_class_means(ds):
    """Per class, the mean of the images after per-image standardisation (removes skin tone and lighting)."""
    z = ds.images.astype(float)
    z = (z - z.mean(axis=(1, 2), keepdims=True)) / (z.std(axis=(1, 2), keepdims=True) + 1.0)
    return {c: z[ds.labels == c].mean(axis=0) for c in range(len(CLASS_NAMES))}


def test_happy_and_sad_differ_most_around_the_mouth(clean_data):
    means = standardized_class_means(clean_data)
    difference = np.abs(means[HAPPY] - means[SAD])
    mouth = np.zeros((48, 48), dtype=bool)
    mouth[30:44, 12:36] = True
    assert difference[mouth].mean() > 2 * difference[~mouth].mean()


def test_naturally_confused_expressions_look_more_alike(clean_data):
    means = standardized_class_means(clean_data)

    def distance(a, b):
        return np.abs(means[a] - means[b]).mean()

    assert distance(FEAR, SURPRISE) < distance(FEAR, HAPPY)
    assert distance(SAD, NEUTRAL) < distance(SAD, HAPPY)
    assert distance(ANGRY, DISGUST) < distance(ANGRY, SURPRISE)
