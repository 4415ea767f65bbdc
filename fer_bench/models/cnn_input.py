"""The CNN's input pipelines (tf.data), apart from the estimator (fer_bench.models.cnn): the stateless
augmentation (crop, mirror, rotation, zoom, shift: one affine warp per image; then random erasing), the epoch's
training batches and the validation batches. TensorFlow is imported inside the functions that need it.

Augmentation runs in the input pipeline with stateless random numbers keyed by (seed, epoch, batch), and the
epoch's shuffle order and alternating flips are drawn from (seed, epoch): an epoch's batches do not depend on
what ran before it (so a resumed training sees the batches an uninterrupted one would).
"""

from __future__ import annotations

import os

import numpy as np

from fer_bench.models.cnn_training import IMAGE_SIZE, PREDICT_BATCH, derive_seed

PREFETCH_BATCHES = 2  # input batches prepared ahead of the training step
#: random erasing: aspect ratio (height / width) range of the erased rectangle, log-uniform
ERASING_ASPECT = (0.3, 3.3)


def as_model_input(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float32)[..., None]


def pipeline_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def pipeline_options():
    """tf.data options of the input pipelines: autotuning off.

    With autotuning, every iterator runs a tuning thread that sleeps up to ~30 s between rounds, and deleting
    the iterator waits for it to wake. fit() makes one model.fit call, hence one iterator, per epoch, so on
    FER-2013 each ~55 s epoch idled ~27 s more (seen with py-spy: ~IteratorResource waiting in
    UnboundedThreadPool). Fixed parallelism gives the same batches (the augmentation is stateless)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def validation_dataset(X, y_index, n_classes: int):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((X, y_index.astype(np.int32))).batch(PREDICT_BATCH)
            .map(lambda images, labels: (tf.cast(images, tf.float32)[..., None], tf.one_hot(labels, n_classes)))
            .prefetch(PREFETCH_BATCHES).with_options(pipeline_options()))


def make_augmenter(flip: bool | str, shift: float, rotation: float, zoom: float, *, crop_size: int | None = None,
                   erasing: float = 0.0, erasing_area=(0.02, 0.2), output_size: int | None = None):
    """A function (images (B, 48, 48, 1) float32, seed (2,) int64[, mirror (B,) float32]) -> augmented images
    (B, out, out, 1), or None when there is nothing to do. One bilinear affine warp per image (reflecting at the
    border) does mirror, rotation about the centre, zoom, shift and the random crop at once (the crop is a
    whole-pixel translation of the output grid, so a crop alone copies pixels exactly); random erasing then
    replaces a rectangle by noise. Random numbers are stateless, so the same seed gives the same batch.

    flip: True mirrors each image with probability 1/2; "alternate" takes the mirror of each image from the
    caller (the third argument, -1 mirrored, 1 not): alternating flips mirror an image in every other epoch.
    output_size: the crop resampled to out x out pixels (progressive resizing trains on smaller images first);
    None: the crop's own size."""
    import tensorflow as tf

    size = IMAGE_SIZE if crop_size is None else int(crop_size)
    out = size if output_size is None else int(output_size)
    if (not flip and not shift and not rotation and not zoom and size == IMAGE_SIZE and not erasing
            and out == size):
        return None
    max_angle = np.deg2rad(rotation)
    centre = (IMAGE_SIZE - 1) / 2
    min_area, max_area = (float(a) for a in erasing_area)
    log_aspect = np.log(ERASING_ASPECT)

    def warp(images, seeds, mirror=None):
        n = tf.shape(images)[0]
        if mirror is None:
            mirror = tf.where(tf.random.stateless_uniform([n], seeds[0]) < 0.5, -1.0, 1.0) if flip else tf.ones([n])
        angle = tf.random.stateless_uniform([n], seeds[1], -max_angle, max_angle)
        scale = 1.0 + tf.random.stateless_uniform([n], seeds[2], -zoom, zoom)
        tx = tf.random.stateless_uniform([n], seeds[3], -shift, shift) * IMAGE_SIZE
        ty = tf.random.stateless_uniform([n], seeds[4], -shift, shift) * IMAGE_SIZE
        # Crop offsets: whole pixels, 0..48-size inclusive, uniform.
        ox = tf.cast(tf.random.stateless_uniform([n], seeds[5], 0, IMAGE_SIZE - size + 1, tf.int32), tf.float32)
        oy = tf.cast(tf.random.stateless_uniform([n], seeds[6], 0, IMAGE_SIZE - size + 1, tf.int32), tf.float32)
        # The transform maps each output pixel to the input pixel it samples: move the output grid to the crop's
        # place, undo shift, rotation and zoom about the centre, then mirror.
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        dx, dy = -centre - tx, -centre - ty
        a0, a1, a2 = cos, sin, cos * dx + sin * dy
        b0, b1, b2 = -sin, cos, -sin * dx + cos * dy + centre
        a0, a1, a2 = mirror * a0, mirror * a1, mirror * a2 + centre
        a2, b2 = a2 + a0 * ox + a1 * oy, b2 + b0 * ox + b1 * oy
        if out != size:
            # output pixel (u, v) samples the crop at ((u + 0.5) * size / out - 0.5, ...): pixel centres align
            step, start = size / out, (size / out - 1) / 2
            a2, b2 = a2 + (a0 + a1) * start, b2 + (b0 + b1) * start
            a0, a1, b0, b1 = a0 * step, a1 * step, b0 * step, b1 * step
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, tf.zeros([n]), tf.zeros([n])], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=[out, out],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    def erase(images, seeds):
        n = tf.shape(images)[0]
        on = tf.random.stateless_uniform([n], seeds[7]) < erasing
        area = tf.random.stateless_uniform([n], seeds[8], min_area, max_area) * out * out
        aspect = tf.exp(tf.random.stateless_uniform([n], seeds[9], log_aspect[0], log_aspect[1]))
        half_h, half_w = tf.sqrt(area * aspect) / 2, tf.sqrt(area / aspect) / 2
        centres = tf.random.stateless_uniform([n, 2], seeds[10], 0.0, float(out))
        grid = tf.range(out, dtype=tf.float32) + 0.5
        rows = tf.abs(grid[None, :] - centres[:, :1]) < half_h[:, None]
        cols = tf.abs(grid[None, :] - centres[:, 1:]) < half_w[:, None]
        mask = rows[:, :, None] & cols[:, None, :] & on[:, None, None]
        noise = tf.random.stateless_uniform(tf.shape(images), seeds[11], 0.0, 255.0)
        return tf.where(mask[..., None], noise, images)

    def augment(images, seed, mirror=None):
        seeds = tf.random.experimental.stateless_split(seed, 12)
        images = warp(images, seeds, mirror)
        return erase(images, seeds) if erasing else images

    return augment


def training_dataset(X, y_index, weights, n_classes: int, epoch: int, *, seed: int, batch_size: int,
                     augment, alternate_flips: bool):
    """One epoch's training batches (images (B, s, s, 1) float32, one-hot labels, weights): the images in the
    epoch's order drawn from (seed, epoch), each batch augmented by `augment` (make_augmenter's function, or None)
    with its seed from (seed, epoch, batch). alternate_flips: a random half of the images (drawn from the seed)
    mirrored in even epochs, the other half in odd ones, the mirror handed to `augment`."""
    import tensorflow as tf

    order = np.random.default_rng([int(seed), epoch]).permutation(len(X))
    epoch_seed = derive_seed(seed, epoch, 1 << 20)
    first_mirror = np.random.default_rng([int(seed), 0xF1]).integers(0, 2, len(X))
    mirror = np.where((first_mirror + epoch) % 2 == 1, -1.0, 1.0).astype(np.float32)

    def prepare(index, batch):
        images, labels, batch_weights, batch_mirror = batch
        images = tf.cast(images, tf.float32)[..., None]
        if augment is not None:
            images = augment(images, tf.stack([tf.constant(epoch_seed, tf.int64), index]),
                             batch_mirror if alternate_flips else None)
        return images, tf.one_hot(labels, n_classes), batch_weights

    return (tf.data.Dataset.from_tensor_slices((X[order], y_index[order].astype(np.int32), weights[order],
                                                mirror[order]))
            .batch(int(batch_size)).enumerate()
            .map(prepare, num_parallel_calls=pipeline_threads(), deterministic=True)
            .prefetch(PREFETCH_BATCHES).with_options(pipeline_options()))
