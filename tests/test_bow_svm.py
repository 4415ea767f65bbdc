"""bow_svm (baselines/bow_svm.py): its parameters checked before any cell, determinism, the spatial pyramid's
histograms, memory-bounded batching, the dense SIFT-like descriptors, bad images, and what a cell stores for it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli
from fer_bench.baselines.bow_svm import BowSVMClassifier, make_bow_svm
from fer_bench.baselines.dense_descriptors import (
    DESCRIPTORS,
    dense_descriptors,
    descriptor_centres,
    descriptor_length,
)
from fer_bench.baselines.fisher_vectors import fisher_vector_length, fisher_vectors
from fer_bench.baselines.spatial_pyramid import pyramid_histograms, pyramid_regions

from fer_bench.data.synthetic import make_synthetic
from fer_bench.run import run_grid


@pytest.fixture(scope="module")
def synthetic():
    dataset = make_synthetic(n_train=420, n_public=140, n_private=140, seed=0)
    return {usage: (dataset.split(usage).images, dataset.split(usage).labels)
            for usage in ("Training", "PublicTest", "PrivateTest")}


#: word histograms with LinearSVC (the fitted_fisher fixture below has the default Fisher vectors)
HISTOGRAMS = {"encoding": "histogram", "vocabulary_size": 24, "solver": "liblinear"}


@pytest.fixture(scope="module")
def fitted(synthetic):
    return make_bow_svm(seed=3, quick=True, **HISTOGRAMS).fit(*synthetic["Training"],
                                                              validation_data=synthetic["PublicTest"])


# --- parameters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("setting", "what"), [
    ("bow_svm.vocabulary_size=1", "vocabulary_size must be an integer in [2, inf), got 1"),
    ("bow_svm.pyramid=(1,0)", "pyramid must be a sequence of integers in [1, 48], got (1, 0)"),
    ("bow_svm.pyramid=(2,2)", "pyramid must list each grid size once"),
    ("bow_svm.scales=(13,)", "scales must be a sequence of integers in [1, 12], got (13,)"),
    ("bow_svm.descriptor=surf", "descriptor must be one of sift, hog, daisy, got 'surf'"),
    ("bow_svm.kernel_map=rbf", "kernel_map must be one of hellinger, chi2, linear, got 'rbf'"),
    ("bow_svm.Cs=(1.0,-1.0)", "Cs must be a sequence of numbers in (0, inf)"),
    ("bow_svm.vocabulary_descriptors=10", "vocabulary_descriptors must be an integer in [64, inf)"),
    ("bow_svm.batch_size=0", "batch_size must be an integer in [1, inf)"),
    ("bow_svm.encoding=vlad", "encoding must be one of histogram, fisher, got 'vlad'"),
    ("bow_svm.solver=sgd", "solver must be one of liblinear, least_squares, got 'sgd'"),
    ("bow_svm.pca_components=129", "pca_components must be an integer in [1, 128], got 129"),
])
def test_bad_parameters_are_refused_in_one_line_before_any_cell(setting, what, tiny_fer_folder, tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, "--models", "bow_svm", "--tasks",
                            "binary", "--set", setting], capsys)
    one_line_error(code, err, what)
    assert not out.exists()


def test_bad_images_are_refused_in_one_line(fitted, synthetic):
    images, labels = synthetic["Training"]
    nan_images = images.astype(np.float64)
    nan_images[3, 10, 10] = np.nan
    for bad, message in [(images[:, :40], r"shape \(N, 48, 48\)"), (nan_images, "1 NaN or infinite pixel"),
                         (images.astype(bool), "dtype bool"), (images.astype(object), "dtype object")]:
        with pytest.raises(ValueError, match=message) as caught:
            fitted.predict_proba(bad)
        assert "\n" not in str(caught.value)
        with pytest.raises(ValueError, match=message):
            make_bow_svm(quick=True).fit(bad, labels)


# --- determinism ------------------------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_model_and_another_seed_another_vocabulary(fitted, synthetic):
    again = make_bow_svm(seed=3, quick=True, **HISTOGRAMS).fit(*synthetic["Training"],
                                                               validation_data=synthetic["PublicTest"])
    images = synthetic["PrivateTest"][0]
    np.testing.assert_array_equal(again.predict_proba(images), fitted.predict_proba(images))
    np.testing.assert_array_equal(again.word_centres_, fitted.word_centres_)
    other = make_bow_svm(seed=4, quick=True, **HISTOGRAMS).fit(*synthetic["Training"],
                                                               validation_data=synthetic["PublicTest"])
    assert not np.array_equal(other.word_centres_, fitted.word_centres_)


def test_fit_records_its_choice_and_stages(fitted, synthetic):
    selected = fitted.selected_params_
    scores = {entry["C"]: entry["validation_accuracy"] for entry in fitted.validation_scores_}
    assert set(scores) == set(fitted.Cs) and scores[selected["C"]] == max(scores.values())
    assert selected["validation_accuracy"] == scores[selected["C"]]
    assert selected["n_train_svm"] + selected["n_train_calibration"] == len(synthetic["Training"][1])
    assert selected["n_features"] == (1 + 4) * fitted.vocabulary_size  # quick pyramid (1, 2)
    assert set(fitted.stage_timings()) == {"descriptor_images_per_s", "vocabulary_seconds", "encode_seconds",
                                           "encode_images_per_s", "svm_seconds"}


# --- the spatial pyramid ----------------------------------------------------------------------------------------

def test_pyramid_regions_and_weights_follow_the_levels():
    centres = descriptor_centres("sift", (2, 3, 4), 4)
    regions, weights = pyramid_regions(centres, (1, 2, 4))
    assert regions.shape == (3, len(centres)) and weights.shape == (1 + 4 + 16,)
    np.testing.assert_array_equal(regions[0], 0)
    assert set(regions[1]) == set(range(1, 5)) and set(regions[2]) == set(range(5, 21))
    np.testing.assert_allclose([weights[:1].sum(), weights[1:5].sum(), weights[5:].sum()], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(weights[1:5], 1 / 16)
    # a descriptor's 4x4 region is the quarter of the face its centre lies in, per axis
    top_left = (centres[:, 0] < 12) & (centres[:, 1] < 12)
    np.testing.assert_array_equal(regions[2][top_left], 5)


def test_pyramid_histograms_count_words_per_region_and_sum_to_one():
    # four descriptors, one per quarter of the face: words 0, 1, 1, 2
    centres = np.array([[10.0, 10.0], [10.0, 40.0], [40.0, 10.0], [40.0, 40.0]])
    regions, weights = pyramid_regions(centres, (1, 2))
    words = np.array([[0, 1, 1, 2], [2, 2, 2, 2]])
    histograms = pyramid_histograms(words, regions, weights, vocabulary_size=3)
    assert histograms.shape == (2, 5 * 3) and histograms.dtype == np.float32
    np.testing.assert_allclose(histograms[0, :3], [0.5 * 1 / 4, 0.5 * 2 / 4, 0.5 * 1 / 4])  # 1x1 level: weight 1/2
    np.testing.assert_allclose(histograms[0, 3:].reshape(4, 3), 0.125 * np.array(
        [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]))  # each quarter: weight 1/2 shared by 4
    np.testing.assert_allclose(histograms.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(histograms[1].reshape(5, 3)[:, 2], [0.5, 0.125, 0.125, 0.125, 0.125])


def test_encoded_images_are_pyramids_summing_to_one(fitted, synthetic):
    histograms = fitted.encode(synthetic["PrivateTest"][0][:20])
    assert histograms.shape == (20, len(fitted.region_weights_) * fitted.vocabulary_size)
    blocks = histograms.reshape(20, -1, fitted.vocabulary_size).sum(axis=2)
    np.testing.assert_allclose(blocks, np.broadcast_to(fitted.region_weights_, blocks.shape), rtol=1e-5)
    np.testing.assert_allclose(histograms.sum(axis=1), 1, rtol=1e-5)


# --- batching ---------------------------------------------------------------------------------------------------

def test_batches_and_threads_give_the_same_features_as_one_batch(fitted, synthetic):
    images = synthetic["PrivateTest"][0][:50]
    whole = fitted.encode(images)
    batched = BowSVMClassifier(**{**fitted.get_params(), "batch_size": 7, "n_jobs": 2})
    for name in ("vocabulary_", "word_centres_", "word_norms_", "regions_", "region_weights_"):
        setattr(batched, name, getattr(fitted, name))
    np.testing.assert_array_equal(batched.encode(images), whole)
    one_batch = BowSVMClassifier(**{**fitted.get_params(), "batch_size": 1000, "n_jobs": 1})
    for name in ("vocabulary_", "word_centres_", "word_norms_", "regions_", "region_weights_"):
        setattr(one_batch, name, getattr(fitted, name))
    np.testing.assert_array_equal(one_batch.encode(images), whole)


# --- descriptors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DESCRIPTORS)
def test_descriptors_have_their_layout_and_batch_independence(kind, synthetic):
    images = synthetic["Training"][0][:6]
    descriptors = dense_descriptors(images, kind, (2, 3), 4)
    assert descriptors.shape == (6, len(descriptor_centres(kind, (2, 3), 4)), descriptor_length(kind))
    assert descriptors.dtype == np.float32 and np.isfinite(descriptors).all() and (descriptors >= 0).all()
    np.testing.assert_allclose(dense_descriptors(images[2:3], kind, (2, 3), 4), descriptors[2:3], rtol=1e-5)


def test_sift_descriptors_are_unit_length_and_see_the_gradient_direction():
    flat = np.full((1, 48, 48), 128, dtype=np.uint8)
    assert not dense_descriptors(flat, "sift", (3,), 4).any()  # no gradient, no descriptor energy
    ramp = np.tile(np.arange(0, 240, 5, dtype=np.uint8), (48, 1))[None]  # brighter to the right: 0 degrees
    descriptors = dense_descriptors(np.concatenate([ramp, ramp[:, :, ::-1]]), "sift", (3,), 4)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=-1), 1, rtol=1e-4)
    by_orientation = descriptors.reshape(2, -1, 16, 8).sum(axis=(1, 2))
    assert by_orientation[0].argmax() == 0 and by_orientation[1].argmax() == 4  # 0 and 180 degrees


# --- a cell ---------------------------------------------------------------------------------------------------

def test_a_cell_stores_stage_timings_and_occlusion_maps(tmp_path):
    out = run_grid(dataset=make_synthetic(n_train=300, n_public=90, n_private=90, seed=0), tasks=["binary"],
                   models=["bow_svm"], quick=True, out=tmp_path / "r", report=False)
    cell = out / "runs" / "binary" / "bow_svm" / "seed0"
    stages = json.loads((cell / "timings.json").read_text())["stages"]
    assert stages["vocabulary_seconds"] > 0 and stages["encode_images_per_s"] > 0
    with np.load(cell / "maps.npz") as maps:
        assert maps["occlusion"].shape[1:] == (48, 48) and np.abs(maps["occlusion"]).max() > 0


def test_the_timing_section_lists_the_stages_a_model_timed():
    from fer_bench.report.timing import TIMING_COLUMNS, timing_markdown

    def row(model, seed, stages):
        return {**dict.fromkeys(TIMING_COLUMNS), "task": "7class", "model": model, "seed": seed, "stages": stages}

    rows = [row("bow_svm", 0, {"vocabulary_seconds": 10.0, "encode_images_per_s": 1000.0}),
            row("bow_svm", 1, {"vocabulary_seconds": 20.0, "encode_images_per_s": 3000.0}),
            row("logreg", 0, None)]
    text = timing_markdown(rows, "PrivateTest")
    assert "**7class bow_svm** (M1): vocabulary 15.0 s; encode 2,000 images/s." in text
    assert "logreg" not in text.split("Stages of fit")[1]
    assert "Stages of fit" not in timing_markdown(rows[2:], "PrivateTest")


def test_no_progress_bar_is_drawn_into_a_log(fitted, synthetic, monkeypatch, capsys):
    """verbose=True draws tqdm bars on a terminal only: a grid's or `fer-bench robustness`'s log (stderr not a
    terminal, as under capsys) gets none, however many images are encoded."""
    import fer_bench.baselines.bow_svm as bow_svm

    monkeypatch.setattr(bow_svm, "PROGRESS_MIN_IMAGES", 10)  # 50 images would draw a bar on a terminal
    model = BowSVMClassifier(**{**fitted.get_params(), "verbose": True})
    for name in ("vocabulary_", "word_centres_", "word_norms_", "regions_", "region_weights_"):
        setattr(model, name, getattr(fitted, name))
    model.encode(synthetic["PrivateTest"][0][:50])
    captured = capsys.readouterr()
    assert "BoW encoding" not in captured.err + captured.out


# --- Fisher vectors ---------------------------------------------------------------------------------------------

def test_fisher_vectors_are_skimages_per_region_for_a_whole_batch():
    """Every region's slice is skimage.feature.fisher_vector(the region's descriptors, improved=True), scaled by the
    square root of its pyramid weight; a region without descriptors is zeros."""
    from skimage.feature import fisher_vector
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(3, 40, 5)).astype(np.float32)
    gmm = GaussianMixture(4, covariance_type="diag", random_state=0).fit(rng.normal(size=(500, 5)))
    regions = np.stack([np.zeros(40, dtype=np.intp), 1 + (np.arange(40) >= 20)])  # whole image; two halves
    weights = np.array([0.5, 0.25, 0.25, 0.0])  # a 4th region no descriptor falls in
    vectors = fisher_vectors(descriptors, gmm, regions, weights)
    assert vectors.shape == (3, 4 * fisher_vector_length(4, 5)) and vectors.dtype == np.float32
    per_region = vectors.reshape(3, 4, -1)
    for image in range(3):
        for region, members in enumerate([np.arange(40), np.arange(20), np.arange(20, 40)]):
            expected = fisher_vector(descriptors[image, members].astype(np.float64), gmm, improved=True)
            np.testing.assert_allclose(per_region[image, region], np.sqrt(weights[region]) * expected, atol=1e-5)
    assert not per_region[:, 3].any()
    without_power = fisher_vectors(descriptors, gmm, regions, weights, power=False)
    assert not np.allclose(without_power, vectors)
    np.testing.assert_allclose(np.linalg.norm(without_power.reshape(3, 4, -1)[:, 0], axis=1), np.sqrt(0.5), rtol=1e-5)


def clone_with(model, **params):
    """A fitted model's copy with other batching parameters (what encode reads), sharing its fitted state."""
    copy = BowSVMClassifier(**{**model.get_params(), **params})
    for name, value in vars(model).items():
        if name.endswith("_"):
            setattr(copy, name, value)
    return copy


@pytest.fixture(scope="module")
def fitted_fisher(synthetic):
    return make_bow_svm(seed=3, quick=True, encoding="fisher", vocabulary_size=4, pca_components=16).fit(
        *synthetic["Training"], validation_data=synthetic["PublicTest"])


def test_the_fisher_encoding_fits_and_predicts_beyond_chance(fitted_fisher, synthetic):
    images, labels = synthetic["PrivateTest"]
    proba = fitted_fisher.predict_proba(images)
    assert proba.shape == (len(images), len(fitted_fisher.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(fitted_fisher.classes_[proba.argmax(axis=1)] == labels) > 2 / len(fitted_fisher.classes_)
    # quick pyramid (1, 2): 5 regions of K + 2Kd numbers, d the PCA's 16 components
    assert fitted_fisher.selected_params_["n_features"] == 5 * fisher_vector_length(4, 16)
    assert fitted_fisher.pca_.n_components_ == 16 and fitted_fisher.vocabulary_.n_components == 4
    again = make_bow_svm(seed=3, quick=True, encoding="fisher", vocabulary_size=4, pca_components=16).fit(
        *synthetic["Training"], validation_data=synthetic["PublicTest"])
    np.testing.assert_array_equal(again.predict_proba(images), proba)


def test_fisher_batches_and_threads_give_the_same_features_as_one_batch(fitted_fisher, synthetic):
    images = synthetic["PrivateTest"][0][:50]
    one_batch = clone_with(fitted_fisher, batch_size=50, n_jobs=1).encode(images)
    np.testing.assert_allclose(clone_with(fitted_fisher, batch_size=7, n_jobs=2).encode(images), one_batch,
                               rtol=1e-5, atol=1e-7)


def test_fisher_vectors_too_large_for_the_svm_are_refused_before_encoding(synthetic, monkeypatch):
    from fer_bench.baselines import bow_svm

    monkeypatch.setattr(bow_svm, "physical_memory_bytes", lambda: 5_000_000)  # a 5 MB machine
    model = make_bow_svm(seed=0, quick=True, encoding="fisher", vocabulary_size=4, pca_components=16, n_jobs=2,
                         solver="liblinear")
    monkeypatch.setattr(model, "encode", lambda images: pytest.fail("encoded before the memory check"))
    with pytest.raises(ValueError, match=r"378 SVM training faces in LinearSVC's copies \(2 C values at once\) need "
                                         r"about 0\.008 GB, more than 3/4 of this machine's 0\.005 GB") as caught:
        model.fit(*synthetic["Training"], validation_data=synthetic["PublicTest"])
    assert "\n" not in str(caught.value)
    # histograms are stored sparse by liblinear (their non-zeros only): no such check
    make_bow_svm(seed=0, quick=True, encoding="histogram", solver="liblinear", n_jobs=2).check_resources(378)


def test_a_grid_naming_bow_svm_stops_before_any_cell_when_it_would_not_fit(tiny_fer_folder, tmp_path, capsys,
                                                                           monkeypatch):
    from fer_bench.baselines import bow_svm

    monkeypatch.setattr(bow_svm, "physical_memory_bytes", lambda: 10_000)  # a 10 kB machine
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, "--models", "logreg,bow_svm", "--tasks",
                            "binary", "--quick", "--no-report"], capsys)
    one_line_error(code, err, "model bow_svm on binary: the least-squares solver's Gram matrices of")
    assert not list(out.glob("runs/*/*/seed*"))  # not even logreg's cell: the grid stopped before it


def test_the_default_grid_leaves_out_a_task_and_model_that_would_not_fit(tiny_fer_folder, capsys, monkeypatch):
    from fer_bench.baselines import bow_svm

    from fer_bench.data import load_dataset
    from fer_bench.run import _leave_out_what_does_not_fit

    dataset = load_dataset(str(tiny_fer_folder))
    todo = [("binary", "logreg", 0), ("binary", "bow_svm", 0), ("binary", "bow_svm", 1), ("7class", "hog_svm", 0)]
    assert _leave_out_what_does_not_fit(todo, dataset, quick=True, named=False) == todo  # it fits this machine
    monkeypatch.setattr(bow_svm, "physical_memory_bytes", lambda: 10_000)
    kept = _leave_out_what_does_not_fit(todo, dataset, quick=True, named=False)
    assert kept == [("binary", "logreg", 0), ("7class", "hog_svm", 0)]
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("skipping model bow_svm on binary: the least-squares solver's Gram matrices of")


def test_the_chi2_map_is_refused_with_fisher_vectors():
    with pytest.raises(ValueError, match="kernel_map 'chi2' applies to histograms"):
        make_bow_svm(encoding="fisher", kernel_map="chi2").check_parameters()


def test_visual_words_need_the_histogram_encoding(fitted_fisher, synthetic):
    with pytest.raises(ValueError, match="visual_words needs encoding 'histogram'"):
        fitted_fisher.visual_words(synthetic["PrivateTest"][0][:2])


# --- the least-squares solver -----------------------------------------------------------------------------------

def test_the_least_squares_solver_fits_and_chooses_c_on_validation(synthetic):
    model = make_bow_svm(seed=3, quick=True, encoding="fisher", vocabulary_size=4, pca_components=16,
                         solver="least_squares", Cs=(0.01, 1.0))
    model.fit(*synthetic["Training"], validation_data=synthetic["PublicTest"])
    images, labels = synthetic["PrivateTest"]
    proba = model.predict_proba(images)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(model.classes_[proba.argmax(axis=1)] == labels) > 2 / len(model.classes_)
    assert [score["C"] for score in model.validation_scores_] == [0.01, 1.0]
    assert model.svm_.C == model.selected_params_["C"]
    assert model.svm_.coef_.shape == (len(model.classes_), model.selected_params_["n_features"])


def test_the_least_squares_solver_checks_its_gram_memory_before_encoding(synthetic, monkeypatch):
    from fer_bench.baselines import bow_svm

    monkeypatch.setattr(bow_svm, "physical_memory_bytes", lambda: 1_000_000)  # a 1 MB machine
    model = make_bow_svm(seed=0, quick=True)
    monkeypatch.setattr(model, "encode", lambda images: pytest.fail("encoded before the memory check"))
    with pytest.raises(ValueError, match=r"the least-squares solver's Gram matrices of 420 training faces beside "
                                         r"their features need about 0\.0041 GB") as caught:
        model.fit(*synthetic["Training"], validation_data=synthetic["PublicTest"])
    assert "\n" not in str(caught.value)


def test_mirror_encodes_a_face_and_its_mirror_image_alike(fitted_fisher, synthetic):
    images = synthetic["PrivateTest"][0][:6]
    mirrored, plain = clone_with(fitted_fisher, mirror=True), clone_with(fitted_fisher, mirror=False)
    np.testing.assert_allclose(mirrored.encode(images), mirrored.encode(images[:, :, ::-1]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(plain.encode(images), plain.encode(images[:, :, ::-1]), rtol=1e-3)
    expected = (plain.encode(images) + plain.encode(images[:, :, ::-1])) / 2
    np.testing.assert_allclose(mirrored.encode(images), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="mirror must be True or False, got 'yes'"):
        make_bow_svm(mirror="yes").check_parameters()
