"""FusedBatchNormalization (fer_bench.models.keras_layers) against Keras' own BatchNormalization."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the CNN needs TensorFlow (pip install 'fer-bench[cnn]')")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from fer_bench.models.keras_layers import FusedBatchNormalization  # noqa: E402

pytestmark = pytest.mark.cnn

SHAPE = (16, 6, 6, 8)  # batch, height, width, channels
VALUES_PER_CHANNEL = 16 * 6 * 6


def twin_layers(dtype, momentum=0.9):
    """A Keras BatchNormalization and a FusedBatchNormalization with the same (non-trivial) weights."""
    rng = np.random.default_rng(1)
    keras_bn = keras.layers.BatchNormalization(momentum=momentum, dtype=dtype)
    fused_bn = FusedBatchNormalization(momentum=momentum, dtype=dtype)
    for layer in (keras_bn, fused_bn):
        layer.build(SHAPE)
    fused_bn.set_weights([rng.normal(1, 0.3, 8), rng.normal(0, 0.5, 8), rng.normal(0, 1, 8),
                          rng.uniform(0.5, 2, 8)])
    keras_bn.set_weights(fused_bn.get_weights())
    return keras_bn, fused_bn


def inputs(dtype):
    x = np.random.default_rng(0).normal(1.0, 3.0, SHAPE).astype("float32")
    return tf.constant(x, dtype="bfloat16" if "bfloat16" in dtype else "float32")


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_training_step_matches_keras_batch_normalization(dtype):
    keras_bn, fused_bn = twin_layers(dtype)
    x = inputs(dtype)
    # A loss whose gradient differs per value (sum(y**2) would be almost flat in x: y is normalised).
    loss_weights = np.random.default_rng(2).normal(size=SHAPE).astype("float32")
    outputs, gradients = [], []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * loss_weights)
        outputs.append(y)
        gradients.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    assert outputs[0].dtype == outputs[1].dtype == x.dtype
    assert all(w.dtype == "float32" for w in fused_bn.weights)
    tolerance = 1e-5 if dtype == "float32" else 2e-2  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(np.float32(outputs[1]), np.float32(outputs[0]), rtol=tolerance, atol=tolerance)
    for keras_grad, fused_grad in zip(*gradients, strict=True):
        np.testing.assert_allclose(np.float32(fused_grad), np.float32(keras_grad), rtol=tolerance,
                                   atol=tolerance * np.abs(np.float32(keras_grad)).max())


def test_moving_statistics_follow_momentum_with_unbiased_variance():
    keras_bn, fused_bn = twin_layers("float32", momentum=0.8)
    before_mean, before_variance = fused_bn.moving_mean.numpy(), fused_bn.moving_variance.numpy()
    x = inputs("float32")
    keras_bn(x, training=True)
    fused_bn(x, training=True)
    batch = x.numpy().reshape(-1, 8)
    np.testing.assert_allclose(fused_bn.moving_mean.numpy(), 0.8 * before_mean + 0.2 * batch.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_bn.moving_variance.numpy(),
                               0.8 * before_variance + 0.2 * batch.var(axis=0, ddof=1), rtol=1e-5)
    # Keras updates with the biased variance: the only difference between the two layers.
    np.testing.assert_allclose(keras_bn.moving_mean.numpy(), fused_bn.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    keras_step = keras_bn.moving_variance.numpy() - 0.8 * before_variance
    fused_step = fused_bn.moving_variance.numpy() - 0.8 * before_variance
    np.testing.assert_allclose(fused_step / keras_step, VALUES_PER_CHANNEL / (VALUES_PER_CHANNEL - 1), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_inference_uses_moving_statistics_and_leaves_them_alone(dtype):
    keras_bn, fused_bn = twin_layers(dtype)
    before = [w.copy() for w in fused_bn.get_weights()]
    x = inputs(dtype)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(np.float32(fused_bn(x, training=False)), np.float32(keras_bn(x, training=False)),
                               rtol=tolerance, atol=tolerance)
    for weight, old in zip(fused_bn.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, old)
    # A frozen layer (trainable=False) normalises with its moving statistics even when training, as Keras does.
    fused_bn.trainable = False
    np.testing.assert_array_equal(np.float32(fused_bn(x, training=True)), np.float32(fused_bn(x, training=False)))


def test_saved_model_loads_with_the_fused_layer(tmp_path):
    model = keras.Sequential([keras.Input(SHAPE[1:]), FusedBatchNormalization(momentum=0.9, name="bn")])
    model.layers[0].set_weights(twin_layers("float32")[1].get_weights())
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    assert loaded.get_layer("bn").momentum == 0.9 and not loaded.get_layer("bn").autocast
    x = inputs("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="renorm"):
        FusedBatchNormalization(renorm=True)
    with pytest.raises(ValueError, match="last axis of 4-D"):
        FusedBatchNormalization(axis=1).build(SHAPE)
    with pytest.raises(ValueError, match="last axis of 4-D"):
        FusedBatchNormalization().build((16, 8))
