"""The Keras CNN (fer_bench.models.cnn) on a small generated data set with quick=True. The tests that fit a
network are marked slow; those of its parts (augmentation, batches, parameter checks) are not."""

import copy
import json

import numpy as np
import pytest
from sklearn.base import clone

pytest.importorskip("tensorflow", reason="the CNN needs TensorFlow (pip install 'fer-bench[cnn]')")
import keras  # noqa: E402

from fer_bench.errors import FerBenchError  # noqa: E402
from fer_bench.models import make_model  # noqa: E402
from fer_bench.models.cnn import QUICK_PARAMS, CNNClassifier, make_cnn  # noqa: E402
from fer_bench.models.cnn_epochs import EpochTrainer  # noqa: E402
from fer_bench.models.cnn_training import averaged_weights  # noqa: E402
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


@pytest.mark.slow
def test_quick_model_learns_and_predicts_valid_probabilities(fitted, data):
    X, y = data["test"]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(fitted.classes_, LABELS)
    assert set(fitted.predict(X)) <= set(LABELS)
    assert np.mean(fitted.predict(X) == y) > 0.6  # chance is 1/3


@pytest.mark.slow
def test_records_history_and_selection(fitted):
    assert [r["epoch"] for r in fitted.history_] == list(range(1, QUICK_PARAMS["epochs"] + 1))
    for record in fitted.history_:
        assert {"loss", "accuracy", "val_accuracy", "lr", "seconds"} <= set(record)
    chosen = fitted.selected_params_
    best = max(fitted.history_, key=lambda r: r["val_accuracy"])
    assert chosen["best_val_accuracy"] == best["val_accuracy"]
    assert fitted.history_[chosen["best_epoch"] - 1]["val_accuracy"] == best["val_accuracy"]
    assert chosen["epochs_run"] == QUICK_PARAMS["epochs"]
    # The views are chosen after training among 1, 2 and 10 on the validation data; one view is the epoch's.
    by_views = chosen["val_accuracy_by_views"]
    assert set(by_views) == {"1", "2", "10"} and chosen["test_views"] == fitted.prediction_views()
    assert by_views["1"] == pytest.approx(chosen["best_val_accuracy"], abs=1e-6)
    assert by_views[str(chosen["test_views"])] == max(by_views.values()) == fitted.validation_accuracy()
    assert chosen["input_size"] == 44 and chosen["weights"] == "trained"  # quick: no moving average
    assert chosen["final_learning_rate"] >= 0
    assert fitted.training_history() is fitted.history_ and fitted.selected_on_validation() == chosen
    json.dumps(chosen)  # stored in params.json by the harness


@pytest.mark.slow
def test_training_flops_count_three_forward_passes_of_every_training_image_of_every_epoch(fitted, data):
    from fer_bench.measure import forward_flops

    n_train = len(data["train"][0])
    per_epoch = n_train * 3 * forward_flops(fitted)
    assert [r["train_flops"] for r in fitted.history_] == [per_epoch] * QUICK_PARAMS["epochs"]
    assert fitted.training_flops() == QUICK_PARAMS["epochs"] * per_epoch
    saved_before_counting = copy.copy(fitted)  # a new history_ on the copy leaves fitted alone
    saved_before_counting.history_ = [{k: v for k, v in r.items() if k != "train_flops"} for r in fitted.history_]
    assert saved_before_counting.training_flops() is None  # unknown, never 0


@pytest.mark.slow
def test_keras_model_is_functional_with_named_conv_and_logits(fitted, data):
    model = fitted.keras_network()
    assert model is fitted.keras_model_ and tuple(model.input.shape) == (None, 44, 44, 1)
    assert fitted.parameter_count() == model.count_params() == fitted.selected_params_["n_parameters"]
    conv = model.get_layer(fitted.last_conv_layer_name_).output
    assert len(conv.shape) == 4
    # What Grad-CAM builds: the input to (last conv features, logits before the softmax).
    probe = keras.Model(model.input, [conv, model.get_layer("logits").output])
    X = data["test"][0][:4]
    features, logits = probe(X[:, 2:46, 2:46, None].astype("float32"))  # the centre crop
    assert features.shape[0] == 4 and logits.shape == (4, 3)
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), fitted.predict_proba_single_view(X),
                               rtol=1e-4, atol=1e-5)
    # Every BatchNorm is the fused one (tests/test_keras_layers.py compares it with Keras' own).
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, FusedBatchNormalization) for layer in norms)


@pytest.mark.slow
def test_save_and_load_give_identical_predictions(fitted, data, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = CNNClassifier.load(tmp_path / "m")
    X = data["test"][0]
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.get_params() == {**fitted.get_params(), "callbacks": None, "checkpoint_dir": None}
    assert loaded.selected_params_ == fitted.selected_params_
    assert loaded.last_conv_layer_name_ == fitted.last_conv_layer_name_


def with_views(model, views):
    """A copy of the fitted `model` sharing its network, with test_views set (the fixture stays as is)."""
    copy = clone(model).set_params(test_views=views)
    copy.keras_model_, copy.classes_, copy.selected_params_ = model.keras_model_, model.classes_, model.selected_params_
    return copy


def views_by_hand(model, X, views):
    """The mean softmax over the views of X, each crop cut and mirrored here, one network call per view."""
    crops = {"centre": X[:, 2:46, 2:46], "top left": X[:, :44, :44], "top right": X[:, :44, 4:],
             "bottom left": X[:, 4:, :44], "bottom right": X[:, 4:, 4:]}
    chosen = [crops["centre"]] if views < 10 else list(crops.values())
    if views > 1:
        chosen += [crop[:, :, ::-1] for crop in chosen]
    network = model.keras_network()
    return np.mean([network.predict_on_batch(crop[..., None].astype("float32")) for crop in chosen], axis=0)


@pytest.mark.parametrize("views", [1, 2, 10])
@pytest.mark.slow
def test_views_average_centre_corner_crops_and_mirrors(fitted, data, views):
    X = data["test"][0][:20]
    proba = with_views(fitted, views).predict_proba(X)
    assert with_views(fitted, views).prediction_views() == views
    np.testing.assert_allclose(proba, views_by_hand(fitted, X, views), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba_single_view(X), views_by_hand(fitted, X, 1), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
def test_views_batches_cross_chunk_boundaries(fitted, data):
    """Ten-crop predicts every view of an image in one call, PREDICT_BATCH // 10 images per chunk."""
    from fer_bench.models.cnn import PREDICT_BATCH

    X = np.concatenate([data["train"][0]] * 2)[:PREDICT_BATCH // 10 * 3 + 7]
    np.testing.assert_allclose(with_views(fitted, 10).predict_proba(X), views_by_hand(fitted, X, 10),
                               rtol=1e-5, atol=1e-6)


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
MIRROR_NET = {**TINY, "head": "flatten", "epochs": 3, "flip": False, "erasing": 0.0}


@pytest.mark.slow
def test_views_auto_chooses_on_validation_accuracy_alone():
    # Mirroring turns one class into the other, so the views with mirrors (2 and 10) average towards 50/50.
    X, y = mirror_sided_images(500, seed=4)
    validation = (X[350:], y[350:])
    model = CNNClassifier(**MIRROR_NET, test_views="auto").fit(X[:350], y[:350], validation_data=validation)
    chosen = model.selected_params_
    by_views = chosen["val_accuracy_by_views"]
    # The choice is the views with the best validation accuracy, ties to fewer; it is what predict_proba uses.
    best = min((-accuracy, int(views)) for views, accuracy in by_views.items())[1]
    assert chosen["test_views"] == best == model.prediction_views() == 1
    assert by_views["1"] > 0.9 and by_views["2"] < by_views["1"]
    np.testing.assert_allclose(model.predict_proba(X[350:]), views_by_hand(model, X[350:], best), rtol=1e-5,
                               atol=1e-6)
    for views, accuracy in by_views.items():  # each recorded accuracy is that of those views on validation
        assert np.mean(with_views(model, int(views)).predict(X[350:]) == y[350:]) == pytest.approx(accuracy)
    assert model.validation_accuracy() == by_views["1"]
    # The views never change the training: fixed views give the same weights and record only their accuracy.
    forced = CNNClassifier(**MIRROR_NET, test_views=2).fit(X[:350], y[:350], validation_data=validation)
    assert forced.selected_params_["val_accuracy_by_views"] == {"2": by_views["2"]}
    np.testing.assert_array_equal(forced.predict_proba(X[350:]), with_views(model, 2).predict_proba(X[350:]))
    unvalidated = CNNClassifier(**{**MIRROR_NET, "epochs": 1}).fit(X[:350], y[:350])
    assert unvalidated.selected_params_["test_views"] == 1 and unvalidated.validation_accuracy() is None


@pytest.mark.slow
def test_moving_average_competes_for_selection(data):
    model = train(data, seed=1, ema=0.9)
    history = model.history_
    assert all(0 <= r["ema_val_accuracy"] <= 1 for r in history)
    # The kept epoch and weights are the best of both candidates; ties go to the trained weights.
    best = max((max(r["val_accuracy"], r["ema_val_accuracy"]), -r["epoch"]) for r in history)
    chosen = model.selected_params_
    assert (chosen["best_val_accuracy"], chosen["best_epoch"]) == (best[0], -best[1])
    record = history[chosen["best_epoch"] - 1]
    assert chosen["weights"] == ("ema" if record["ema_val_accuracy"] > record["val_accuracy"] else "trained")
    assert chosen["val_accuracy_by_views"]["1"] == pytest.approx(chosen["best_val_accuracy"], abs=1e-6)
    assert "ema_val_accuracy" not in train(data, seed=1, epochs=1, ema=None).history_[0]


def batchnorm_input_model(model, layer_name):
    """The sub-network of `model` up to the input of its BatchNorm layer `layer_name`."""
    layer = model.get_layer(layer_name)
    return keras.Model(model.input, layer.input)


@pytest.mark.slow
def test_averaged_weights_get_batchnorm_statistics_of_their_own(data):
    model = train(data, seed=1, epochs=2, ema=0.5)
    trained = model.keras_model_.get_weights()
    network = model.keras_model_
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(0, 255, (16, 44, 44, 1)).astype("float32"),) for _ in range(3)]
    # keep_trained_weights_at_fit_end left the optimizer's average in place: the context swaps it in.
    with averaged_weights(network, batches):
        for name in ("block1_bn1", "block2_bn1"):
            layer = network.get_layer(name)
            features = [np.asarray(batchnorm_input_model(network, name)(images), dtype=np.float64)
                        for (images,) in batches]
            # the running mean over batches of each batch's statistics (the fused kernel's variance is unbiased)
            means = np.mean([f.mean(axis=(0, 1, 2)) for f in features], axis=0)
            variances = np.mean([f.var(axis=(0, 1, 2), ddof=1) for f in features], axis=0)
            np.testing.assert_allclose(layer.moving_mean.numpy(), means, rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(layer.moving_variance.numpy(), variances, rtol=1e-3, atol=1e-3)
            assert layer.momentum == pytest.approx(0.9)  # the layer's own momentum is back
        averaged = network.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(averaged, trained, strict=True))
    for after, before in zip(network.get_weights(), trained, strict=True):  # statistics included
        np.testing.assert_array_equal(after, before)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    with pytest.raises(FerBenchError, match="test_views"):
        CNNClassifier(test_views=3).fit(X, y)
    with pytest.raises(FerBenchError, match="ten-crop"):
        CNNClassifier(crop_size=None, test_views=10).fit(X, y)
    for bad in ({"crop_size": 50}, {"erasing": 1.5}, {"erasing_area": (0.3, 0.1)}, {"ema": 1.0}):
        with pytest.raises(FerBenchError, match=next(iter(bad))):
            CNNClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="48, 48"):
        CNNClassifier().fit(X[:, :40], y)
    with pytest.raises(ValueError, match="sample_weight"):
        CNNClassifier().fit(X, y, sample_weight=np.ones(3))


@pytest.mark.slow
def test_verbose_auto_writes_one_line_per_epoch_on_a_terminal_too(data, capfd, monkeypatch):
    params = {**TINY, "verbose": "auto", "epochs": 2}
    CNNClassifier(**params).fit(*data["train"], validation_data=data["val"])
    log = capfd.readouterr().out
    assert "Epoch 1/2" in log and "Epoch 2/2" in log and "val_accuracy" in log
    assert "\r" not in log and "\b" not in log  # no progress bar redrawn in a log file
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)  # nor in the grid's live panel on a terminal
    assert CNNClassifier(verbose="auto")._keras_verbosity() == 2
    assert CNNClassifier(verbose=1)._keras_verbosity() == 1
    assert CNNClassifier(verbose=0)._keras_verbosity() == 0
    with pytest.raises(FerBenchError, match="verbose"):
        CNNClassifier(verbose="loud").fit(*data["train"])


def test_augmentation_is_a_seeded_mirror_and_small_warp():
    from fer_bench.models.cnn_input import make_augmenter

    images, _ = stripe_images(16, seed=3)
    batch = images[..., None].astype("float32")
    seed = np.array([7, 0], dtype=np.int64)
    mirrored = make_augmenter(True, 0, 0, 0)(batch, seed).numpy()
    flipped = np.array([np.array_equal(m, b[:, ::-1]) for m, b in zip(mirrored, batch, strict=True)])
    unchanged = np.array([np.array_equal(m, b) for m, b in zip(mirrored, batch, strict=True)])
    assert np.all(flipped | unchanged) and flipped.any() and unchanged.any()

    # A blob off the centre: a small warp moves it by at most the shift (4.8 px) plus what a 10 degree
    # rotation and a 10% zoom do at its distance from the centre (about 1.5 px).
    yy, xx = np.mgrid[:48, :48]
    blob = np.exp(-((yy - 20.0) ** 2 + (xx - 28.0) ** 2) / (2 * 4.0**2)) * 200
    blobs = np.repeat(blob[None, :, :, None], 32, axis=0).astype("float32")
    warp = make_augmenter(True, 0.1, 10.0, 0.1)
    warped = warp(blobs, seed).numpy()[..., 0]
    np.testing.assert_array_equal(warp(blobs, seed).numpy()[..., 0], warped)
    assert not np.array_equal(warp(blobs, seed + 1).numpy()[..., 0], warped)
    mass = warped.sum(axis=(1, 2))
    centre_y, centre_x = (warped * yy).sum(axis=(1, 2)) / mass, (warped * xx).sum(axis=(1, 2)) / mass
    moved = np.minimum(np.hypot(centre_y - 20, centre_x - 28), np.hypot(centre_y - 20, centre_x - (47 - 28)))
    assert np.all(moved < 4.8 * np.sqrt(2) + 1.5) and np.median(moved) > 0.5
    assert make_augmenter(False, 0, 0, 0) is None


def test_random_crop_is_an_exact_window_that_varies_with_the_seed():
    from fer_bench.models.cnn_input import make_augmenter

    images, _ = stripe_images(32, seed=5)
    batch = images[..., None].astype("float32")
    crop = make_augmenter(False, 0, 0, 0, crop_size=44)
    seed = np.array([7, 3], dtype=np.int64)
    out = crop(batch, seed).numpy()
    assert out.shape == (32, 44, 44, 1)
    np.testing.assert_array_equal(crop(batch, seed).numpy(), out)  # reproducible
    offsets = []
    for image, cropped in zip(batch, out, strict=True):
        found = [(r, c) for r in range(5) for c in range(5) if np.array_equal(image[r:r + 44, c:c + 44], cropped)]
        assert found, "each crop is a 44x44 window of its image, pixels copied exactly"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # positions differ between the images of a batch
    assert not np.array_equal(crop(batch, seed + np.array([0, 1])).numpy(), out)  # ... and between batches


def test_random_erasing_replaces_one_rectangle_in_about_half_the_images():
    from fer_bench.models.cnn_input import make_augmenter

    batch = np.full((200, 48, 48, 1), 128.0, dtype="float32")
    erase = make_augmenter(False, 0, 0, 0, erasing=0.5, erasing_area=(0.05, 0.2))
    seed = np.array([11, 0], dtype=np.int64)
    out = erase(batch, seed).numpy()[..., 0]
    np.testing.assert_array_equal(erase(batch, seed).numpy()[..., 0], out)
    changed = out != 128.0
    erased = changed.any(axis=(1, 2))
    assert 0.35 < erased.mean() < 0.65
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.mean() > 0.97  # a filled rectangle (noise equal to 128 by chance aside)
        assert box.size <= 0.2 * 48 * 48 + 2 * 48 + 1
    assert not np.array_equal(erase(batch, seed + 1).numpy()[..., 0], out)


def test_training_batches_depend_on_epoch_and_batch_and_nothing_else(data):
    X, y = data["train"]
    model = CNNClassifier(**TINY)
    y_index, weights = np.searchsorted(LABELS, y), np.ones(len(y), dtype=np.float32)

    trainer = EpochTrainer(model, X, y_index, weights, None, 3)

    def first_batches(epoch):
        return [images.numpy() for images, _, _ in trainer.training_dataset(epoch).take(2)]

    epoch3 = first_batches(3)
    assert epoch3[0].shape == (32, 44, 44, 1)
    np.testing.assert_array_equal(first_batches(3)[1], epoch3[1])  # the same epoch, the same batches
    assert not np.array_equal(first_batches(4)[0], epoch3[0])
    # The same images in another batch of the same epoch get another crop and erasing: the keys differ.
    from fer_bench.models.cnn_input import make_augmenter
    from fer_bench.models.cnn_training import derive_seed

    augment = make_augmenter(True, 0, 10, 0.1, crop_size=44, erasing=0.5)
    key = derive_seed(0, 3, 1 << 20)
    same = X[:32, ..., None].astype("float32")
    assert not np.array_equal(augment(same, np.array([key, 0])).numpy(), augment(same, np.array([key, 1])).numpy())


@pytest.mark.slow
def test_saliency_network_takes_full_faces_and_explains_the_centre_crop(fitted, data):
    from fer_bench import saliency

    network, conv = fitted.saliency_network()
    assert tuple(network.input.shape) == (None, 48, 48, 1) and conv == fitted.last_conv_layer_name_
    X = data["test"][0][:6]
    np.testing.assert_allclose(network.predict_on_batch(X[..., None].astype("float32")),
                               fitted.predict_proba_single_view(X), rtol=1e-4, atol=1e-5)
    targets = fitted.predict_proba_single_view(X).argmax(axis=1)
    cams = saliency.grad_cam(network, X, targets, conv_layer_name=conv)
    assert cams.shape == (6, 48, 48) and cams.min() >= 0 and np.isclose(cams.max(), 1)
    gradients = saliency.input_gradients(network, X, targets)
    assert gradients.shape == (6, 48, 48) and gradients[:, 2:46, 2:46].any()
    assert not gradients[:, :2].any() and not gradients[:, :, 46:].any()  # outside the centre crop: no effect


@pytest.mark.slow
def test_loads_a_model_saved_before_crops_and_test_views(data, tmp_path):
    """cnn_params.json of the previous version: full 48x48 faces, a tta parameter instead of test_views."""
    model = CNNClassifier(**TINY, epochs=1, crop_size=None, erasing=0.0, ema=None, test_views=2)
    model.fit(*data["train"], validation_data=data["val"]).save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "cnn_params.json").read_text())
    for key in ("crop_size", "erasing", "erasing_area", "ema", "test_views"):
        del saved["params"][key]
    saved["params"]["tta"] = "auto"
    saved["selected_params"]["tta"] = True
    (tmp_path / "m" / "cnn_params.json").write_text(json.dumps(saved))
    loaded = CNNClassifier.load(tmp_path / "m")
    assert (loaded.crop_size, loaded.test_views, loaded.prediction_views()) == (None, "auto", 2)
    X = data["test"][0]
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)
