"""cnn_fast's ingredients, each a CNNClassifier parameter: resampled crops (progressive resizing), alternating
flips, the patch-whitening filters, dirac initialisation, the one-cycle schedule, and the recipe trained end to
end (FLOPs per epoch following the input size, a fixed-size network at the end)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the CNN needs TensorFlow (pip install 'fer-bench[cnn]')")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from test_cnn import stripe_images  # noqa: E402

from fer_bench.errors import FerBenchError  # noqa: E402
from fer_bench.measure import forward_flops  # noqa: E402
from fer_bench.models import make_model  # noqa: E402
from fer_bench.models.cnn_epochs import EpochTrainer  # noqa: E402
from fer_bench.models.cnn_fast import FAST_PARAMS, QUICK_FAST_PARAMS  # noqa: E402
from fer_bench.models.cnn_input import make_augmenter  # noqa: E402
from fer_bench.models.cnn_network import whitening_filters  # noqa: E402
from fer_bench.models.keras_layers import DiracHeNormal, LinearOneCycle  # noqa: E402


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48)).astype(np.float32)[..., None]


def test_a_crop_resampled_to_half_its_size_is_its_two_by_two_mean():
    """Output pixel centres land between four input pixels, so bilinear sampling at half size averages them."""
    images = faces(3)
    augment = make_augmenter(False, 0.0, 0.0, 0.0, crop_size=None, output_size=24)
    out = augment(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    expected = images.reshape(3, 24, 2, 24, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_the_resampled_size_leaves_the_crop_alone_when_it_equals_it():
    images = faces(4, seed=1)
    seed = tf.constant([3, 4], tf.int64)
    same = make_augmenter(True, 0.0, 10.0, 0.1, crop_size=44, erasing=0.5, output_size=44)
    default = make_augmenter(True, 0.0, 10.0, 0.1, crop_size=44, erasing=0.5)
    np.testing.assert_array_equal(same(tf.constant(images), seed).numpy(), default(tf.constant(images), seed).numpy())


def test_alternating_flips_mirror_the_images_the_caller_names():
    images = faces(4, seed=2)
    augment = make_augmenter("alternate", 0.0, 0.0, 0.0, crop_size=None)
    mirror = tf.constant([-1.0, 1.0, 1.0, -1.0])
    out = augment(tf.constant(images), tf.constant([5, 6], tf.int64), mirror).numpy()
    for i, flipped in enumerate((True, False, False, True)):
        np.testing.assert_allclose(out[i], images[i, :, ::-1] if flipped else images[i], atol=1e-3)


def test_training_batches_mirror_every_image_in_every_other_epoch():
    X, y = stripe_images(64, seed=3)
    model = make_model("cnn", seed=0, flip="alternate", rotation=0.0, zoom=0.0, crop_size=None, erasing=0.0,
                       batch_size=16)
    weights = np.ones(len(X), np.float32)

    trainer = EpochTrainer(model, X, y, weights, None, 3)

    def mirrored(epoch):
        images = np.concatenate([b[0].numpy()[..., 0] for b in trainer.training_dataset(epoch)])
        order = np.random.default_rng([0, epoch]).permutation(len(X))
        flags = np.zeros(len(X), bool)
        for image, index in zip(images, order, strict=True):
            same, flipped = np.abs(image - X[index]).max(), np.abs(image - X[index][:, ::-1]).max()
            assert min(same, flipped) < 1e-3
            flags[index] = flipped < same
        return flags

    first, second, third = mirrored(0), mirrored(1), mirrored(2)
    assert 0.3 < first.mean() < 0.7  # a random half in the first epoch
    np.testing.assert_array_equal(second, ~first)
    np.testing.assert_array_equal(third, first)


def test_whitening_filters_decorrelate_the_training_patches():
    rng = np.random.default_rng(4)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(200, 48, 48)), axis=1), axis=2)  # strongly correlated pixels
    images = np.clip(128 + 127 * smooth / np.abs(smooth).max(), 0, 255).astype(np.uint8)
    kernel = whitening_filters(images, 2, seed=0)
    assert kernel.shape == (2, 2, 1, 8)
    np.testing.assert_array_equal(kernel[..., 4:], -kernel[..., :4])
    patches = np.stack([images[:, r:r + 2, c:c + 2] for r in range(0, 46, 3) for c in range(0, 46, 3)])
    patches = patches.reshape(-1, 4).astype(np.float64) / 127.5 - 1.0
    whitened = patches @ kernel[..., :4].reshape(4, 4)
    covariance = np.cov(whitened, rowvar=False)
    eigenvalues = np.linalg.eigvalsh(np.cov(patches, rowvar=False))
    # identity up to the epsilon's shrinkage of the smallest directions: decorrelated, unit variance
    np.testing.assert_allclose(np.diag(covariance), eigenvalues / (eigenvalues + 5e-4), rtol=0.15)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 0.1


def test_dirac_initialisation_adds_the_identity_to_he_normal():
    shape = (3, 3, 4, 6)
    kernel = DiracHeNormal(seed=7)(shape).numpy()
    noise = keras.initializers.HeNormal(seed=7)(shape).numpy()
    identity = np.zeros(shape, np.float32)
    for i in range(4):
        identity[1, 1, i, i] = 1.0
    np.testing.assert_allclose(kernel - noise, identity, atol=1e-6)


def test_the_one_cycle_rate_rises_linearly_then_falls_to_zero():
    schedule = LinearOneCycle(0.5, warmup_steps=10, total_steps=110)
    rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 120)]
    np.testing.assert_allclose(rates, [0.02, 0.26, 0.5, 0.25, 0.0, 0.0], atol=1e-6)
    assert LinearOneCycle.from_config(schedule.get_config()).get_config() == schedule.get_config()


@pytest.mark.parametrize("params, message", [
    ({"progressive": (64, 0.5)}, "progressive"), ({"progressive": (32, 1.5)}, "progressive"),
    ({"progressive": 32}, "progressive"), ({"whitening": 9}, "whitening"), ({"flip": "sometimes"}, "flip"),
    ({"progressive": (32, 0.5), "head": "flatten"}, "head"), ({"schedule": "linear"}, "schedule"),
])
def test_bad_ingredient_values_are_named(params, message):
    with pytest.raises(FerBenchError, match=message):
        make_model("cnn_fast", seed=0, **params).check_parameters()


def test_cnn_fast_is_the_cnn_with_its_recipe_on_top():
    model = make_model("cnn_fast", seed=3)
    params = model.get_params()
    assert {k: params[k] for k in FAST_PARAMS} == FAST_PARAMS and params["seed"] == 3
    quick = make_model("cnn_fast", seed=0, quick=True).get_params()
    assert {k: quick[k] for k in QUICK_FAST_PARAMS} == QUICK_FAST_PARAMS
    assert type(model).__name__ == "CNNClassifier"


@pytest.mark.slow
def test_progressive_training_counts_each_epochs_flops_and_ends_at_the_full_size():
    X, y = stripe_images(600, seed=5)
    model = make_model("cnn_fast", seed=0, quick=True, verbose=0)
    model.fit(X[:400], y[:400], validation_data=(X[400:500], y[400:500]))
    assert tuple(model.keras_network().input.shape) == (None, 44, 44, 1)
    full = 3 * forward_flops(model) * 400
    small_epochs = round(QUICK_FAST_PARAMS["progressive"][1] * QUICK_FAST_PARAMS["epochs"])
    flops = [r["train_flops"] for r in model.history_]
    assert flops[small_epochs:] == [full] * (len(flops) - small_epochs)
    assert len(set(flops[:small_epochs])) == 1 and 0.4 * full < flops[0] < 0.65 * full  # (32/44)^2 = 0.53
    assert model.training_flops() == sum(flops)
    assert np.mean(model.predict(X[500:]) == y[500:]) > 0.6  # chance is 1/3
    whitening = model.keras_network().get_layer("whitening")
    assert not whitening.trainable
    np.testing.assert_allclose(whitening.get_weights()[0], whitening_filters(X[:400], 2, seed=0), rtol=1e-5)
