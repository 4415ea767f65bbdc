"""The classic baselines: HOG features, and the HOG + SVM and pixel logistic regression estimators.

The estimators run in their quick configurations on small synthetic data (a few seconds per fit); one test
per model fits a 2,000-image subset of the real FER-2013 when it is available.
"""

from __future__ import annotations

import numpy as np
import pytest
from fer_bench.baselines.features import (
    CELL_SIZES,
    CELLS_PER_BLOCK,
    ORIENTATIONS,
    TRANSFORM_SQRT,
    hog_feature_length,
    hog_features,
    hog_visualisation,
)
from fer_bench.baselines.hog_svm import HogSVMClassifier, make_hog_svm
from fer_bench.baselines.logreg import PixelLogisticRegression, make_logreg
from skimage.feature import hog
from sklearn.base import clone

from fer_bench import USAGES
from fer_bench.data.synthetic import make_synthetic
from fer_bench.models import make_model
from fer_bench.models.base import load_model, save_model

FACTORIES = {"hog_svm": make_hog_svm, "logreg": make_logreg}
MODEL_NAMES = list(FACTORIES)
HAPPY = 3  # the most frequent class of the synthetic data (and of FER-2013)


@pytest.fixture(scope="module")
def synthetic():
    """{usage: (images, labels)} of a small synthetic data set without planted artifacts."""
    dataset = make_synthetic(n_train=2100, n_public=450, n_private=450, seed=0, artifacts=False)
    return {usage: (dataset.split(usage).images, dataset.split(usage).labels) for usage in USAGES}


@pytest.fixture(scope="module")
def small_synthetic(synthetic):
    """A 700-image Training subset (first images; the generator shuffles labels) for the extra fits."""
    images, labels = synthetic["Training"]
    return images[:700], labels[:700]


@pytest.fixture(scope="module")
def fitted(synthetic):
    """{model name: quick model fitted on the synthetic Training, chosen on PublicTest}."""
    train_images, train_labels = synthetic["Training"]
    return {name: factory(seed=0, quick=True).fit(train_images, train_labels,
                                                   validation_data=synthetic["PublicTest"])
            for name, factory in FACTORIES.items()}


def _face_like_images(n: int, seed: int = 0) -> np.ndarray:
    """Random blocky images plus edge cases for the orientation bins: flat, a left-to-right falling ramp
    (gradients at exactly 180 degrees), a vertical ramp (exactly 90 degrees, a bin edge for 8 bins), noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, 12, 12)).astype(float)
    images = np.kron(coarse, np.ones((4, 4))) + rng.normal(0, 8, (n, 48, 48))
    images = np.clip(images, 0, 255).astype(np.uint8)
    images[0] = 128
    images[1] = np.linspace(255, 0, 48).astype(np.uint8)[None, :]
    images[2] = np.linspace(0, 255, 48).astype(np.uint8)[:, None]
    images[3] = rng.integers(0, 256, size=(48, 48))
    return images


# -- HOG features --------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    {},
    {"cell_sizes": (8,), "cells_per_block": 3, "orientations": 12},
    {"cell_sizes": (4, 16), "orientations": 8, "transform_sqrt": False},
])
def test_hog_features_equal_skimage_hog(settings, synthetic):
    images = np.concatenate([_face_like_images(12), synthetic["Training"][0][:20]])
    features = hog_features(images, dtype=np.float64, **settings)
    full = {"orientations": ORIENTATIONS, "cell_sizes": CELL_SIZES, "cells_per_block": CELLS_PER_BLOCK,
            "transform_sqrt": TRANSFORM_SQRT, **settings}
    expected = np.stack([
        np.concatenate([hog(image, orientations=full["orientations"], pixels_per_cell=(cell, cell),
                            cells_per_block=(full["cells_per_block"],) * 2, block_norm="L2-Hys",
                            transform_sqrt=full["transform_sqrt"]) for cell in full["cell_sizes"]])
        for image in images])
    assert features.shape == (len(images), hog_feature_length(
        orientations=full["orientations"], cell_sizes=full["cell_sizes"], cells_per_block=full["cells_per_block"]))
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-6)


def test_hog_features_do_not_depend_on_chunking_or_threads(synthetic):
    images = synthetic["Training"][0][:300]
    reference = hog_features(images, n_jobs=1, chunk_size=300)
    assert reference.shape == (300, hog_feature_length()) and reference.dtype == np.float32
    np.testing.assert_array_equal(hog_features(images, n_jobs=2, chunk_size=7), reference)
    np.testing.assert_array_equal(hog_features(images, n_jobs=2, chunk_size=7), reference)  # deterministic
    assert hog_features(images[:0]).shape == (0, hog_feature_length())


def test_hog_visualisation_is_skimage_picture_of_the_chosen_scale(synthetic):
    image = synthetic["Training"][0][0]
    for scale, cell in enumerate(CELL_SIZES):
        picture = hog_visualisation(image, scale=scale)
        _, expected = hog(image, orientations=ORIENTATIONS, pixels_per_cell=(cell, cell),
                          cells_per_block=(CELLS_PER_BLOCK,) * 2, transform_sqrt=TRANSFORM_SQRT, visualize=True)
        assert picture.shape == (48, 48)
        np.testing.assert_allclose(picture, expected)
    assert hog_visualisation(image).max() > 0


def test_hog_settings_that_do_not_fit_the_image_are_rejected():
    images = _face_like_images(4)
    with pytest.raises(ValueError, match="does not fit"):
        hog_features(images, cell_sizes=(30,))
    with pytest.raises(ValueError, match=r"\(N, 48, 48\)"):
        hog_features(images[:, :40])


# -- the estimator contract, for both models --------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_beats_chance_on_synthetic_data(name, fitted, synthetic):
    images, labels = synthetic["PrivateTest"]
    majority_share = np.bincount(labels).max() / len(labels)
    accuracy = np.mean(fitted[name].predict(images) == labels)
    assert accuracy > majority_share + 0.1, (name, accuracy, majority_share)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predict_proba_is_a_distribution_whose_argmax_is_predict(name, fitted, synthetic):
    model = fitted[name]
    images = synthetic["PrivateTest"][0]
    proba = model.predict_proba(images)
    assert proba.shape == (len(images), 7)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    np.testing.assert_array_equal(model.classes_, np.arange(7))
    np.testing.assert_array_equal(model.predict(images), model.classes_[proba.argmax(axis=1)])
    assert len(np.unique(model.predict(images))) > 3  # not a constant or near-constant answer


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_then_load_gives_identical_predictions(name, fitted, synthetic, tmp_path):
    model = fitted[name]
    images = synthetic["PrivateTest"][0]
    expected = model.predict_proba(images)
    save_model(model, tmp_path / "generic")
    np.testing.assert_array_equal(load_model(tmp_path / "generic").predict_proba(images), expected)
    model.save(tmp_path / "own")
    loaded = type(model).load(tmp_path / "own")
    np.testing.assert_array_equal(loaded.predict_proba(images), expected)
    assert loaded.selected_params_ == model.selected_params_


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_gives_identical_predictions(name, fitted, synthetic):
    again = FACTORIES[name](seed=0, quick=True).fit(*synthetic["Training"], validation_data=synthetic["PublicTest"])
    images = synthetic["PrivateTest"][0]
    np.testing.assert_array_equal(again.predict_proba(images), fitted[name].predict_proba(images))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sample_weight_reaches_the_fit(name, small_synthetic, synthetic):
    """Weighting the rare disgust class 30 times makes the model predict it far more often."""
    images, labels = small_synthetic
    weights = np.where(labels == 1, 30.0, 1.0)
    test_images = synthetic["PrivateTest"][0]
    counts = []
    for sample_weight in (None, weights):
        model = FACTORIES[name](seed=0, quick=True).fit(images, labels, sample_weight=sample_weight,
                                                         validation_data=synthetic["PublicTest"])
        counts.append(int(np.sum(model.predict(test_images) == 1)))
    unweighted, weighted = counts
    assert weighted >= 2 * unweighted + 10, counts


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_params_follow_sklearn_conventions(name):
    model = make_model(name, seed=3, quick=True)
    params = model.get_params()
    assert params["random_state"] == 3
    copy = clone(model)
    assert copy.get_params() == params and not hasattr(copy, "classes_")
    copy.set_params(random_state=7)
    assert copy.random_state == 7 and model.random_state == 3
    # quick is a small configuration; explicit params override it
    assert len(FACTORIES[name](quick=True).Cs) <= len(FACTORIES[name]().Cs)
    assert FACTORIES[name](quick=True, Cs=(0.5,)).Cs == (0.5,)


# -- choosing on the validation data -----------------------------------------------------------------------

# Each grid pairs a sensible setting with a degenerate one that predicts the majority class (happy) for
# every image: logistic regression with almost no weight allowed, or an RBF kernel so narrow that no
# training image is similar to any test image.
SELECTION_GRIDS = {
    "logreg": ({"Cs": (1e-8, 1e-2)}, "C", 1e-8, 1e-2),
    "hog_svm": ({"Cs": (1.0,), "gamma_scales": (1.0, 1000.0)}, "gamma_scale", 1000.0, 1.0),
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_setting_with_the_best_validation_accuracy_is_chosen(name, small_synthetic, synthetic):
    grid, key, degenerate, sensible = SELECTION_GRIDS[name]
    val_images, val_labels = synthetic["PublicTest"]
    # True labels: the sensible setting wins clearly.
    model = FACTORIES[name](seed=0, quick=True, **grid).fit(*small_synthetic, validation_data=(val_images, val_labels))
    assert model.selected_params_[key] == sensible
    scores = {entry[key]: entry["validation_accuracy"] for entry in model.validation_scores_}
    assert set(scores) == {degenerate, sensible} and scores[sensible] > scores[degenerate] + 0.1
    assert model.selected_params_["validation_scores"] == model.validation_scores_
    assert model.selected_params_["validation_source"] == "validation_data"
    # Non-happy faces all labelled happy: only the degenerate setting gets them "right".
    not_happy = val_labels != HAPPY
    relabelled = (val_images[not_happy], np.full(not_happy.sum(), HAPPY))
    model = FACTORIES[name](seed=0, quick=True, **grid).fit(*small_synthetic, validation_data=relabelled)
    assert model.selected_params_[key] == degenerate
    scores = {entry[key]: entry["validation_accuracy"] for entry in model.validation_scores_}
    assert scores[degenerate] > 0.9 > scores[sensible]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_without_validation_data_a_training_fraction_is_held_out(name, small_synthetic):
    model = FACTORIES[name](seed=0, quick=True).fit(*small_synthetic)
    assert model.selected_params_["validation_source"] == "held-out training fraction"
    assert 0 <= model.selected_params_["validation_accuracy"] <= 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bad_training_input_is_rejected(name, small_synthetic):
    images, labels = small_synthetic
    model = FACTORIES[name](quick=True)
    with pytest.raises(ValueError, match="48, 48"):
        model.fit(images[:, :47], labels)
    with pytest.raises(ValueError, match="labels"):
        model.fit(images, labels[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(images, labels, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="two classes"):
        model.fit(images, np.zeros(len(images), dtype=int))


# -- model-specific ---------------------------------------------------------------------------------------

def test_logreg_coef_images_are_the_weights_on_raw_pixels(fitted, synthetic, small_synthetic):
    images = synthetic["PrivateTest"][0][:50].astype(float)
    for model in (fitted["logreg"],
                  PixelLogisticRegression(Cs=(1e-2,), max_iter=50).fit(
                      small_synthetic[0], (small_synthetic[1] == HAPPY).astype(int))):
        templates = model.coef_images_
        assert templates.shape == (len(model.classes_), 48, 48)
        # log p_k - log p_0 = (T_k - T_0) . pixels + a constant, for every image
        log_proba = np.log(model.predict_proba(images.astype(np.uint8)))
        linear = np.einsum("kij,nij->nk", templates, images)
        offsets = (log_proba - log_proba[:, :1]) - (linear - linear[:, :1])
        np.testing.assert_allclose(offsets, np.broadcast_to(offsets[:1], offsets.shape), atol=1e-4)


def test_hog_svm_records_its_choice_and_calibration(fitted):
    model = fitted["hog_svm"]
    assert isinstance(model, HogSVMClassifier)
    selected = model.selected_params_
    assert {"C", "gamma", "gamma_scale", "validation_accuracy"} <= set(selected)
    assert len(model.validation_scores_) == len(model.Cs) * len(model.gamma_scales)
    best = max(score["validation_accuracy"] for score in model.validation_scores_)
    assert any(score["validation_accuracy"] == best and score["C"] == selected["C"]
               and score["gamma_scale"] == selected["gamma_scale"] for score in model.validation_scores_)
    # the SVM never saw the calibration images: together they are the whole Training set
    assert selected["n_train_svm"] + selected["n_train_calibration"] == 2100
    assert model.svc_.shape_fit_[0] == selected["n_train_svm"]


# -- real data ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fer2013_subset(fer2013_dir):
    """2,000 Training, 500 PublicTest and 500 PrivateTest FER-2013 images (seeded choice), decoded directly."""
    from fer_bench.data.folder import decode_images, list_images

    entries = list_images(fer2013_dir)
    rng = np.random.default_rng(0)
    subset = {}
    for usage, size in (("Training", 2000), ("PublicTest", 500), ("PrivateTest", 500)):
        candidates = [entry for entry in entries if entry.usage == usage]
        chosen = [candidates[i] for i in sorted(rng.choice(len(candidates), size, replace=False))]
        subset[usage] = (decode_images([entry.path for entry in chosen]),
                         np.array([entry.label for entry in chosen]))
    return subset


@pytest.mark.fer2013
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_beats_chance_on_a_fer2013_subset(name, fer2013_subset):
    model = FACTORIES[name](seed=0, quick=True).fit(*fer2013_subset["Training"],
                                                     validation_data=fer2013_subset["PublicTest"])
    images, labels = fer2013_subset["PrivateTest"]
    majority_share = np.bincount(labels).max() / len(labels)
    accuracy = np.mean(model.predict(images) == labels)
    assert accuracy > majority_share + 0.05, (name, accuracy, majority_share)
