"""Saliency maps: occlusion finds the region a model looks at; gradient maps have the input's shape."""

import importlib.util

import numpy as np
import pytest

from fer_bench.saliency import (
    grad_cam,
    input_gradients,
    last_conv_layer_name,
    normalise_map,
    occlusion_map,
    occlusion_positions,
    smoothgrad,
)

HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow not installed")


def _top_left_model(images):
    """Two classes decided only by the mean brightness of the top-left 12x12 block (bright -> class 1)."""
    brightness = np.asarray(images, dtype=np.float64)[:, :12, :12].mean(axis=(1, 2)) / 255.0
    p1 = 1.0 / (1.0 + np.exp(-10.0 * (brightness - 0.5)))
    return np.stack([1.0 - p1, p1], axis=1)


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    images[:, :12, :12] = 230  # bright corner: class 1, far from the gray fill
    return images


def test_occlusion_peaks_in_the_only_region_the_model_uses():
    images = _faces(3)
    maps = occlusion_map(_top_left_model, images, np.ones(3, dtype=int))
    assert maps.shape == (3, 48, 48) and np.isfinite(maps).all()
    for m in maps:
        row, col = np.unravel_index(np.argmax(m), m.shape)
        assert row < 12 and col < 12, (row, col)
        # pixels no patch over the block can reach (patches are 8 wide, so beyond row/col 19) do not matter
        assert np.abs(m[20:, :]).max() == 0 and np.abs(m[:, 20:]).max() == 0
        assert m[:12, :12].mean() > 0.05


def test_occlusion_of_the_other_class_is_negative_there():
    images = _faces(2)
    maps = occlusion_map(_top_left_model, images, np.zeros(2, dtype=int))
    # hiding the bright corner makes class 0 more likely: a negative drop
    assert maps[:, :12, :12].mean() < -0.05


def test_occlusion_batches_do_not_change_the_result():
    images = _faces(5, seed=1)
    targets = np.array([1, 0, 1, 1, 0])
    whole = occlusion_map(_top_left_model, images, targets, batch_size=10_000)
    small = occlusion_map(_top_left_model, images, targets, batch_size=50)
    np.testing.assert_allclose(whole, small)


def test_occlusion_covers_every_pixel_with_uneven_stride():
    calls = []

    def constant(images):
        calls.append(len(images))
        return np.tile([0.3, 0.7], (len(images), 1))

    maps = occlusion_map(constant, _faces(2), [1, 1], patch=10, stride=7)
    assert np.all(maps == 0)
    # positions per axis: 0, 7, 14, 21, 28, 35 and the edge 38 -> 7 x 7 occluded copies per image
    assert sum(calls) == 2 + 2 * 49
    assert occlusion_positions(patch=10, stride=7) == 49 and occlusion_positions() == 121


def test_occlusion_rejects_bad_input():
    with pytest.raises(ValueError, match="target"):
        occlusion_map(_top_left_model, _faces(2), [1])
    with pytest.raises(ValueError, match="48, 48"):
        occlusion_map(_top_left_model, np.zeros((2, 32, 32), np.uint8), [0, 0])
    with pytest.raises(ValueError, match="patch"):
        occlusion_map(_top_left_model, _faces(1), [0], patch=60)


def test_normalise_map_scales_each_map_separately():
    maps = np.stack([np.linspace(0, 1, 48 * 48).reshape(48, 48), -10 * np.linspace(0, 1, 48 * 48).reshape(48, 48)])
    out = normalise_map(maps)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out[0], out[1])


@pytest.fixture(scope="module")
def tiny_keras_model():
    if not HAS_TF:
        pytest.skip("TensorFlow not installed")
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    outputs = keras.layers.Activation("softmax")(logits)
    return keras.Model(inputs, outputs)


@needs_tf
def test_gradient_maps_have_the_input_shape_and_are_finite(tiny_keras_model):
    images = _faces(4)
    targets = np.array([0, 1, 2, 1])
    for maps in (input_gradients(tiny_keras_model, images, targets, batch_size=3),
                 smoothgrad(tiny_keras_model, images, targets, n_samples=3, batch_size=3)):
        assert maps.shape == (4, 48, 48) and np.isfinite(maps).all() and (maps >= 0).all()
        assert maps.max() > 0
    np.testing.assert_array_equal(smoothgrad(tiny_keras_model, images, targets, n_samples=2, seed=5),
                                  smoothgrad(tiny_keras_model, images, targets, n_samples=2, seed=5))


@needs_tf
def test_grad_cam_uses_the_last_conv_layer_and_is_scaled(tiny_keras_model):
    assert last_conv_layer_name(tiny_keras_model) == "conv_b"
    images = _faces(3)
    cams = grad_cam(tiny_keras_model, images, [0, 1, 2])
    assert cams.shape == (3, 48, 48) and np.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1
    assert np.all((cams.reshape(3, -1).max(axis=1) == 0) | np.isclose(cams.reshape(3, -1).max(axis=1), 1))
    first = grad_cam(tiny_keras_model, images, [0, 1, 2], conv_layer_name="conv_a")
    assert first.shape == (3, 48, 48) and np.isfinite(first).all()


@needs_tf
def test_gradient_of_a_model_that_sees_one_pixel_is_zero_elsewhere():
    import keras

    inputs = keras.Input((48, 48, 1))
    flat = keras.layers.Flatten()(inputs)
    # the score of class 0 is 2 * pixel (5, 7); class 1 ignores the image
    logits = keras.layers.Dense(2, name="logits", use_bias=False)(flat)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    kernel = np.zeros((48 * 48, 2), np.float32)
    kernel[5 * 48 + 7, 0] = 2.0
    model.get_layer("logits").set_weights([kernel])
    grads = input_gradients(model, _faces(2), [0, 1])
    assert grads[0, 5, 7] == pytest.approx(2.0)
    assert np.count_nonzero(grads[0]) == 1 and np.count_nonzero(grads[1]) == 0
