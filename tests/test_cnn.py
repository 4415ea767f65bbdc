"""The Keras CNN (fer_bench.models.cnn) on a small generated data set with quick=True."""

import json

import numpy as np
import pytest
from sklearn.base import clone

pytest.importorskip("tensorflow", reason="the CNN needs TensorFlow (pip install 'fer-bench[cnn]')")
import keras  # noqa: E402

from fer_bench.errors import FerBenchError  # noqa: E402
from fer_bench.models import make_model  # noqa: E402
from fer_bench.models.cnn import QUICK_PARAMS, CNNClassifier, make_cnn  # noqa: E402
from fer_bench.models.keras_layers import FusedBatchNormalization  # noqa: E402

pytestmark = pytest.mark.cnn

# Small and fast, yet the same code path as the default configuration.
TINY = dict(filters=(8, 16), convs_per_block=1, batch_size=32, verbose=0)
LABELS = np.array([2, 5, 7])  # not 0..k-1, so classes_ handling is exercised


def stripe_images(n: int, seed: int):
    """Three flip-invariant classes: horizontal stripes, vertical stripes, checkerboard; random period, phase,
    contrast and noise. Returns (uint8 images (n, 48, 48), labels from LABELS)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    grid = np.arange(48, dtype=np.float32)
    period = rng.uniform(6, 12, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    rows = np.sin(2 * np.pi * grid[None, :, None] / period + phase)
    cols = np.sin(2 * np.pi * grid[None, None, :] / period + phase)
    pattern = np.where(kind[:, None, None] == 0, rows, np.where(kind[:, None, None] == 1, cols, rows * cols))
    contrast = rng.uniform(30, 90, (n, 1, 1))
    images = 128 + contrast * pattern + rng.normal(0, 25, (n, 48, 48))
    return np.clip(images, 0, 255).astype(np.uint8), LABELS[kind]


@pytest.fixture(scope="module")
def data():
    X, y = stripe_images(900, seed=0)
    return {"train": (X[:600], y[:600]), "val": (X[600:750], y[600:750]), "test": (X[750:], y[750:])}


@pytest.fixture(scope="module")
def fitted(data):
    model = make_cnn(seed=0, quick=True, verbose=0)
    return model.fit(*data["train"], validation_data=data["val"])


def test_quick_model_learns_and_predicts_valid_probabilities(fitted, data):
    X, y = data["test"]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(fitted.classes_, LABELS)
    assert set(fitted.predict(X)) <= set(LABELS)
    assert np.mean(fitted.predict(X) == y) > 0.6  # chance is 1/3


def test_records_history_and_selection(fitted):
    assert [r["epoch"] for r in fitted.history_] == list(range(1, QUICK_PARAMS["epochs"] + 1))
    for record in fitted.history_:
        assert {"loss", "accuracy", "val_accuracy", "lr", "seconds"} <= set(record)
    chosen = fitted.selected_params_
    best = max(fitted.history_, key=lambda r: r["val_accuracy"])
    assert chosen["best_val_accuracy"] == best["val_accuracy"]
    assert fitted.history_[chosen["best_epoch"] - 1]["val_accuracy"] == best["val_accuracy"]
    assert chosen["epochs_run"] == QUICK_PARAMS["epochs"]
    # Flip TTA is off by default and recorded as such; nothing was compared on the validation data.
    assert chosen["tta"] is False and not fitted.uses_flip_tta()
    assert "val_accuracy_with_tta" not in chosen
    assert chosen["final_learning_rate"] >= 0
    json.dumps(chosen)  # stored in params.json by the harness


def test_keras_model_is_functional_with_named_conv_and_logits(fitted, data):
    model = fitted.keras_model_
    conv = model.get_layer(fitted.last_conv_layer_name_).output
    assert len(conv.shape) == 4
    # What Grad-CAM builds: the input to (last conv features, logits before the softmax).
    probe = keras.Model(model.input, [conv, model.get_layer("logits").output])
    X = data["test"][0][:4]
    features, logits = probe(X[..., None].astype("float32"))
    assert features.shape[0] == 4 and logits.shape == (4, 3)
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), fitted.predict_proba(X), rtol=1e-4, atol=1e-5)
    # Every BatchNorm is the fused one (tests/test_keras_layers.py compares it with Keras' own).
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, FusedBatchNormalization) for layer in norms)


def test_save_and_load_give_identical_predictions(fitted, data, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = CNNClassifier.load(tmp_path / "m")
    X = data["test"][0]
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.get_params() == {**fitted.get_params(), "callbacks": None, "checkpoint_dir": None}
    assert loaded.selected_params_ == fitted.selected_params_
    assert loaded.last_conv_layer_name_ == fitted.last_conv_layer_name_


def with_tta(model, tta):
    """A copy of the fitted `model` sharing its network, with the tta parameter set (the fixture stays as is)."""
    copy = clone(model).set_params(tta=tta)
    copy.keras_model_, copy.classes_, copy.selected_params_ = model.keras_model_, model.classes_, model.selected_params_
    return copy


def test_tta_averages_image_and_mirror(fitted, data):
    X = data["test"][0][:20]
    # tta=False explicitly, so the test does not depend on the default
    plain = with_tta(fitted, False).predict_proba(X)
    mirrored = with_tta(fitted, False).predict_proba(X[:, :, ::-1])
    proba = with_tta(fitted, True).predict_proba(X)
    assert proba.shape == plain.shape
    np.testing.assert_allclose(proba, (plain + mirrored) / 2, rtol=1e-6)


def test_tta_batches_cross_chunk_boundaries(fitted, data):
    """Flip TTA predicts an image and its mirror in one call, PREDICT_BATCH // 2 images per chunk."""
    from fer_bench.models.cnn import PREDICT_BATCH

    X = np.concatenate([data["train"][0]] * 2)[:PREDICT_BATCH + 7]
    plain = with_tta(fitted, False)
    expected = (plain.predict_proba(X) + plain.predict_proba(X[:, :, ::-1])) / 2
    np.testing.assert_allclose(with_tta(fitted, True).predict_proba(X), expected, rtol=1e-5, atol=1e-7)


def mirror_sided_images(n: int, seed: int):
    """Two classes that are each other's mirror image: a bright bar on the left or on the right half."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    images = rng.normal(100, 20, (n, 48, 48))
    column = rng.integers(4, 16, n)
    for i in range(n):
        c = column[i] if side[i] == 0 else 47 - column[i]
        images[i, :, c - 2:c + 3] += 100
    return np.clip(images, 0, 255).astype(np.uint8), side


# Global average pooling cannot tell left from right; flattening keeps where the bar is.
MIRROR_NET = {**TINY, "head": "flatten", "epochs": 3, "flip": False}


def test_tta_auto_turns_flipping_off_when_it_lowers_validation_accuracy():
    # Flipping turns one class into the other, so flip TTA averages towards 50/50 and loses accuracy.
    X, y = mirror_sided_images(500, seed=4)
    model = CNNClassifier(**MIRROR_NET, tta="auto").fit(X[:350], y[:350], validation_data=(X[350:], y[350:]))
    chosen = model.selected_params_
    # The restored best weights compared with and without flipping; without, that is the best epoch's accuracy.
    best = max(model.history_, key=lambda r: r["val_accuracy"])
    assert chosen["val_accuracy_without_tta"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert chosen["val_accuracy_without_tta"] > 0.9
    assert chosen["val_accuracy_with_tta"] < chosen["val_accuracy_without_tta"]
    assert chosen["tta"] is False and chosen["tta_selection"].startswith("off")
    np.testing.assert_array_equal(model.predict_proba(X[350:]),
                                  clone(model).set_params(tta=False).fit(X[:350], y[:350], validation_data=(
                                      X[350:], y[350:])).predict_proba(X[350:]))
    # Forced on, the same weights predict worse; without validation data "auto" means off.
    forced = with_tta(model, True)
    assert np.mean(forced.predict(X[350:]) == y[350:]) == pytest.approx(chosen["val_accuracy_with_tta"])
    # tta=True: the same weights (same seed), flipping kept, and its validation accuracy recorded.
    always = CNNClassifier(**MIRROR_NET, tta=True).fit(X[:350], y[:350], validation_data=(X[350:], y[350:]))
    assert always.selected_params_["tta"] is True and always.uses_flip_tta()
    assert always.selected_params_["val_accuracy_with_tta"] == chosen["val_accuracy_with_tta"]
    np.testing.assert_array_equal(always.predict_proba(X[350:]), forced.predict_proba(X[350:]))
    unvalidated = CNNClassifier(**{**MIRROR_NET, "epochs": 1}, tta="auto").fit(X[:350], y[:350])
    assert unvalidated.selected_params_["tta"] is False


def test_clone_and_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "keras_model_")
    assert make_cnn(quick=True).get_params() != make_cnn().get_params()
    assert make_model("cnn", seed=3, epochs=2).get_params()["seed"] == 3
    assert copy.set_params(epochs=9).epochs == 9


def train(data, **params):
    settings = {**TINY, "epochs": 3, **params}
    return CNNClassifier(**settings).fit(*data["train"], validation_data=data["val"])


class InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.count += 1


def test_same_seed_same_predictions_and_resume_matches_uninterrupted(data, tmp_path):
    X = data["test"][0]
    reference = train(data, seed=1).predict_proba(X)
    np.testing.assert_array_equal(train(data, seed=1).predict_proba(X), reference)
    assert not np.array_equal(train(data, seed=2).predict_proba(X), reference)

    checkpoints = tmp_path / "ckpt"
    interrupted = CNNClassifier(**TINY, epochs=3, seed=1, checkpoint_dir=str(checkpoints),
                                callbacks=[InterruptAtEpoch(2)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(*data["train"], validation_data=data["val"])
    assert json.loads((checkpoints / "state.json").read_text())["state"]["epoch"] == 2

    counter = CountEpochs()
    resumed = interrupted.set_params(callbacks=[counter]).fit(*data["train"], validation_data=data["val"])
    assert counter.count == 1 and resumed.selected_params_["resumed_from_epoch"] == 2
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3]
    np.testing.assert_array_equal(resumed.predict_proba(X), reference)

    # A finished training in checkpoint_dir is loaded, not retrained.
    again = CNNClassifier(**TINY, epochs=3, seed=1, checkpoint_dir=str(checkpoints), callbacks=[CountEpochs()])
    again.fit(*data["train"], validation_data=data["val"])
    assert again.callbacks[0].count == 0
    np.testing.assert_array_equal(again.predict_proba(X), reference)

    # ... but not for other data or parameters.
    with pytest.raises(FerBenchError, match="another training"):
        CNNClassifier(**TINY, epochs=4, seed=1, checkpoint_dir=str(checkpoints)).fit(*data["train"])

    # ... nor one written by an older version of the network code.
    state = json.loads((checkpoints / "state.json").read_text())
    (checkpoints / "state.json").write_text(json.dumps({**state, "format": 1}))
    with pytest.raises(FerBenchError, match="another version of the CNN"):
        CNNClassifier(**TINY, epochs=3, seed=1, checkpoint_dir=str(checkpoints)).fit(*data["train"])


def test_sample_weight_reaches_the_loss(data):
    X, y = data["train"]
    weights = np.where(y == LABELS[2], 0.0, 1.0)
    model = CNNClassifier(**TINY, epochs=2).fit(X, y, sample_weight=weights)
    # Without validation data the fixed number of epochs is trained and the last epoch kept.
    assert model.selected_params_["best_epoch"] == 2 and model.selected_params_["best_val_accuracy"] is None
    # Class 2 contributes nothing to the loss, so it is (almost) never predicted.
    assert np.mean(model.predict(data["test"][0]) == LABELS[2]) < 0.05


def test_user_errors(data):
    X, y = data["train"]
    with pytest.raises(FerBenchError, match="optimizer"):
        CNNClassifier(optimizer="rmsprop").fit(X, y)
    with pytest.raises(FerBenchError, match="tta"):
        CNNClassifier(tta="yes").fit(X, y)
    with pytest.raises(ValueError, match="48, 48"):
        CNNClassifier().fit(X[:, :40], y)
    with pytest.raises(ValueError, match="sample_weight"):
        CNNClassifier().fit(X, y, sample_weight=np.ones(3))


def test_verbose_auto_writes_one_line_per_epoch_unless_on_a_terminal(data, capfd, monkeypatch):
    params = {**TINY, "verbose": "auto", "epochs": 2}
    CNNClassifier(**params).fit(*data["train"], validation_data=data["val"])
    log = capfd.readouterr().out
    assert "Epoch 1/2" in log and "Epoch 2/2" in log and "val_accuracy" in log
    assert "\r" not in log and "\b" not in log  # no progress bar redrawn in a log file
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert CNNClassifier(verbose="auto")._keras_verbosity() == 1
    assert CNNClassifier(verbose=0)._keras_verbosity() == 0
    with pytest.raises(FerBenchError, match="verbose"):
        CNNClassifier(verbose="loud").fit(*data["train"])


def test_augmentation_is_a_seeded_mirror_and_small_warp():
    from fer_bench.models.cnn import _make_augmenter

    images, _ = stripe_images(16, seed=3)
    batch = images[..., None].astype("float32")
    seed = np.array([7, 0], dtype=np.int64)
    mirrored = _make_augmenter(True, 0, 0, 0)(batch, seed).numpy()
    flipped = np.array([np.array_equal(m, b[:, ::-1]) for m, b in zip(mirrored, batch, strict=True)])
    unchanged = np.array([np.array_equal(m, b) for m, b in zip(mirrored, batch, strict=True)])
    assert np.all(flipped | unchanged) and flipped.any() and unchanged.any()

    # A blob off the centre: a small warp moves it by at most the shift (4.8 px) plus what a 10 degree
    # rotation and a 10% zoom do at its distance from the centre (about 1.5 px).
    yy, xx = np.mgrid[:48, :48]
    blob = np.exp(-((yy - 20.0) ** 2 + (xx - 28.0) ** 2) / (2 * 4.0**2)) * 200
    blobs = np.repeat(blob[None, :, :, None], 32, axis=0).astype("float32")
    warp = _make_augmenter(True, 0.1, 10.0, 0.1)
    warped = warp(blobs, seed).numpy()[..., 0]
    np.testing.assert_array_equal(warp(blobs, seed).numpy()[..., 0], warped)
    assert not np.array_equal(warp(blobs, seed + 1).numpy()[..., 0], warped)
    mass = warped.sum(axis=(1, 2))
    centre_y, centre_x = (warped * yy).sum(axis=(1, 2)) / mass, (warped * xx).sum(axis=(1, 2)) / mass
    moved = np.minimum(np.hypot(centre_y - 20, centre_x - 28), np.hypot(centre_y - 20, centre_x - (47 - 28)))
    assert np.all(moved < 4.8 * np.sqrt(2) + 1.5) and np.median(moved) > 0.5
    assert _make_augmenter(False, 0, 0, 0) is None
