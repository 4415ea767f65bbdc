"""Saliency maps: which pixels of a 48x48 face a model's decision depends on.

Pure functions on arrays:

* `occlusion_map(predict_proba, images, targets)`: model-agnostic. A gray patch slides over the face and each
  pixel gets the mean drop of the target-class probability over the patch positions covering it, so the same
  faces can be compared across the CNN, HOG+SVM and logistic regression.
* `input_gradients`, `smoothgrad`, `grad_cam`: for a Keras model that takes raw 0..255 images of shape
  (N, 48, 48, 1). They differentiate the target class's score *before* the softmax (the layer named "logits"
  when there is one), because softmax gradients vanish on confident predictions. TensorFlow is imported only
  when one of them is called, so the rest of fer-bench works without it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fer_bench.data.dataset import check_images

#: occlusion defaults: 8x8 patch moved by 4 pixels (11 x 11 positions on a 48x48 face), mid-gray fill
OCCLUSION_PATCH = 8
OCCLUSION_STRIDE = 4
OCCLUSION_FILL = 128
#: occluded images sent to predict_proba at once
OCCLUSION_BATCH = 4096
#: SmoothGrad: noisy copies per image and noise standard deviation as a fraction of the 0..255 range
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.1
LOGITS_LAYER = "logits"


def _patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one axis; the last patch always touches the far edge, so every pixel is covered."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"occlusion patch {patch} with stride {stride} does not fit a {size}-pixel side")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_positions(shape=(48, 48), *, patch: int = OCCLUSION_PATCH, stride: int = OCCLUSION_STRIDE) -> int:
    """Number of patch positions, i.e. occluded images predict_proba sees per image (121 by default)."""
    return len(_patch_starts(shape[0], patch, stride)) * len(_patch_starts(shape[1], patch, stride))


def occlusion_map(predict_proba: Callable[[np.ndarray], np.ndarray], images, targets, *,
                  patch: int = OCCLUSION_PATCH, stride: int = OCCLUSION_STRIDE, fill: float = OCCLUSION_FILL,
                  batch_size: int = OCCLUSION_BATCH) -> np.ndarray:
    """Occlusion sensitivity of `predict_proba` for each image's target class.

    Returns float maps of shape (N, 48, 48): at each pixel, the mean over the patch positions covering it of
    p(target | image) - p(target | image with the patch filled with `fill`). Positive where hiding the pixel's
    neighbourhood costs the class probability; negative where hiding it helps the class.
    """
    images = check_images(images)
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (len(images),):
        raise ValueError(f"expected one target class per image ({len(images)}), got shape {targets.shape}")
    n, height, width = images.shape
    rows = _patch_starts(height, patch, stride)
    cols = _patch_starts(width, patch, stride)
    positions = [(r, c) for r in rows for c in cols]
    coverage = np.zeros((len(positions), height, width), dtype=np.float64)
    for k, (r, c) in enumerate(positions):
        coverage[k, r:r + patch, c:c + patch] = 1.0
    if n == 0:
        return np.zeros((0, height, width))

    base = np.asarray(predict_proba(images), dtype=np.float64)[np.arange(n), targets]
    drops = np.empty((n, len(positions)))
    images_per_batch = max(1, batch_size // len(positions))
    fill_value = np.asarray(fill).astype(images.dtype)
    for start in range(0, n, images_per_batch):
        chunk = images[start:start + images_per_batch]
        occluded = np.repeat(chunk, len(positions), axis=0).reshape(len(chunk), len(positions), height, width)
        for k, (r, c) in enumerate(positions):
            occluded[:, k, r:r + patch, c:c + patch] = fill_value
        proba = np.asarray(predict_proba(occluded.reshape(-1, height, width)), dtype=np.float64)
        proba = proba.reshape(len(chunk), len(positions), -1)
        chunk_targets = targets[start:start + len(chunk)]
        drops[start:start + len(chunk)] = base[start:start + len(chunk), None] - \
            proba[np.arange(len(chunk)), :, chunk_targets]
    flat_coverage = coverage.reshape(len(positions), -1)
    maps = drops @ flat_coverage / flat_coverage.sum(axis=0)
    return maps.reshape(n, height, width)


def normalise_map(saliency: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale each map to [0, 1] by its own `percentile` of absolute values (robust to a few hot pixels)."""
    saliency = np.abs(np.asarray(saliency, dtype=np.float64))
    flat = saliency.reshape(len(saliency), -1)
    scale = np.percentile(flat, percentile, axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(saliency / scale.reshape(-1, *[1] * (saliency.ndim - 1)), 0.0, 1.0)


# --- gradient maps (TensorFlow, imported lazily) -----------------------------------------------------------------

def _keras_input(images) -> np.ndarray:
    """uint8 (N, 48, 48) -> float32 (N, 48, 48, 1) raw 0..255, as fer-bench's CNN takes it."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images.astype(np.float32)


def score_layer_name(keras_model, layer_name: str = LOGITS_LAYER) -> str | None:
    """`layer_name` when the model has a layer of that name, else None (the model's output is used)."""
    return layer_name if any(layer.name == layer_name for layer in keras_model.layers) else None


def last_conv_layer_name(keras_model) -> str:
    """Name of the last layer with a 4-D (spatial) output whose class is a convolution."""
    for layer in reversed(keras_model.layers):
        if "Conv" in type(layer).__name__ and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"model {keras_model.name!r} has no convolution layer with a spatial output")


def _score_model(keras_model, layer_name: str, extra_outputs=()):
    """A sub-model from the input to [*extra_outputs, class scores before the softmax]."""
    import keras

    name = score_layer_name(keras_model, layer_name)
    scores = keras_model.get_layer(name).output if name else keras_model.output
    return keras.Model(inputs=keras_model.inputs, outputs=[*extra_outputs, scores])


def _gradient_batches(model, x: np.ndarray, targets: np.ndarray, batch_size: int) -> np.ndarray:
    import tensorflow as tf

    grads = []
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start:start + batch_size])
        batch_targets = tf.convert_to_tensor(targets[start:start + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(batch)
            scores = model(batch, training=False)
            picked = tf.gather(scores, batch_targets, axis=1, batch_dims=1)
        grads.append(tape.gradient(picked, batch).numpy().astype(np.float64))
    return np.concatenate(grads) if grads else np.zeros_like(x)


def _check_targets(images, targets) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (len(images),):
        raise ValueError(f"expected one target class per image ({len(images)}), got shape {targets.shape}")
    return targets


def input_gradients(keras_model, images, targets, *, layer_name: str = LOGITS_LAYER,
                    batch_size: int = 128) -> np.ndarray:
    """Vanilla gradient: |d score_target / d pixel|, shape (N, 48, 48), for raw 0..255 inputs."""
    x = _keras_input(images)
    targets = _check_targets(x, targets)
    grads = _gradient_batches(_score_model(keras_model, layer_name), x, targets, batch_size)
    return np.abs(grads).max(axis=-1)


def smoothgrad(keras_model, images, targets, *, n_samples: int = SMOOTHGRAD_SAMPLES,
               noise: float = SMOOTHGRAD_NOISE, seed: int = 0, layer_name: str = LOGITS_LAYER,
               batch_size: int = 128) -> np.ndarray:
    """SmoothGrad: mean absolute gradient over `n_samples` copies of each image with Gaussian noise of standard
    deviation `noise` x 255 added (seeded, so the same call gives the same maps). Shape (N, 48, 48)."""
    x = _keras_input(images)
    targets = _check_targets(x, targets)
    model = _score_model(keras_model, layer_name)
    rng = np.random.default_rng(seed)
    total = np.zeros(x.shape, dtype=np.float64)
    for _ in range(n_samples):
        noisy = (x + rng.normal(0.0, noise * 255.0, size=x.shape)).astype(np.float32)
        total += np.abs(_gradient_batches(model, noisy, targets, batch_size))
    return (total / max(n_samples, 1)).max(axis=-1)


def grad_cam(keras_model, images, targets, *, conv_layer_name: str | None = None,
             layer_name: str = LOGITS_LAYER, batch_size: int = 128) -> np.ndarray:
    """Grad-CAM: the last convolution's feature maps weighted by the spatial mean of the target score's gradient,
    rectified, bilinearly resized to the input size and scaled to [0, 1] per image (all-zero maps stay zero).
    Shape (N, 48, 48)."""
    import tensorflow as tf

    x = _keras_input(images)
    targets = _check_targets(x, targets)
    conv_layer_name = conv_layer_name or last_conv_layer_name(keras_model)
    model = _score_model(keras_model, layer_name, [keras_model.get_layer(conv_layer_name).output])
    cams = []
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start:start + batch_size])
        batch_targets = tf.convert_to_tensor(targets[start:start + batch_size])
        with tf.GradientTape() as tape:
            features, scores = model(batch, training=False)
            picked = tf.gather(scores, batch_targets, axis=1, batch_dims=1)
        # float32 from here on: a mixed-precision model has bfloat16 feature maps
        grads = tf.cast(tape.gradient(picked, features), tf.float32)
        features = tf.cast(features, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy().astype(np.float64)
        peak = cam.reshape(len(cam), -1).max(axis=1)
        cams.append(cam / np.where(peak > 0, peak, 1.0)[:, None, None])
    return np.concatenate(cams) if cams else np.zeros(x.shape[:3])
