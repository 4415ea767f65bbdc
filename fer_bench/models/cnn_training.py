"""The CNN's training machinery, apart from the estimator (fer_bench.models.cnn): the tf.data input pipelines and
the stateless augmentation (crop, mirror, rotation, zoom, shift, random erasing keyed by (seed, epoch, batch)),
the weight averaging helpers, and the per-epoch checkpoint folder (state.json written last and atomically, so it
always names complete files). TensorFlow and Keras are imported inside the functions that need them.

* Augmentation (flip, shift, rotation, zoom and the random crop: one affine warp per image; then random
  erasing) runs in the tf.data input pipeline with stateless random numbers keyed by (seed, epoch, batch),
  and the epoch's shuffle order is drawn from (seed, epoch). Together with re-seeding the dropout generators
  at every epoch this makes an epoch's randomness independent of what ran before it, so a training resumed
  from a checkpoint ends with exactly the weights of an uninterrupted one.
* Checkpointing (`checkpoint_dir`): after every epoch the model with its optimizer state, the best weights
  and a JSON state (epoch, best-so-far, early-stopping counters, history) are written, the JSON last and
  atomically, so the JSON always names complete files. fit() with the same checkpoint_dir and the same
  data and parameters resumes after the last finished epoch; a finished training is loaded, not retrained.
  (Keras' BackupAndRestore keeps neither the best weights nor the early-stopping/plateau state, and cannot
  restore the random state of a resumed epoch; hence this small loop around model.fit, one call per epoch.)
* Determinism (`deterministic=True`): keras.utils.set_random_seed(seed) and
  tf.config.experimental.enable_op_determinism(). The latter is process-wide and cannot be undone; on this
  CPU it cost no measurable throughput (docs/cnn-recipe.md). tests/test_cnn.py trains twice and compares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.provenance import cpu_features
from fer_bench.storage import atomic_write

IMAGE_SIZE = 48
STATE_FILE = "state.json"
# 2: BatchNorm layers are FusedBatchNormalization; 3: crops, erasing, EMA, test views; 4: an averaged candidate's
# BatchNorm statistics are recomputed for its weights (a format-3 EMA candidate carried the trained weights')
CHECKPOINT_FORMAT = 4
PREDICT_BATCH = 512
PREFETCH_BATCHES = 2  # input batches prepared ahead of the training step
#: random erasing: aspect ratio (height / width) range of the erased rectangle, log-uniform
ERASING_ASPECT = (0.3, 3.3)


def load_keras_model(path: Path, **kwargs):
    import keras

    import fer_bench.models.keras_layers  # noqa: F401  (registers the custom layers for deserialisation)

    return keras.models.load_model(path, **kwargs)


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX); elsewhere bfloat16 is emulated and
    slower than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))


def keep_trained_weights_at_fit_end(model):
    """With use_ema, Keras' model.fit ends by overwriting the weights with their moving average
    (optimizer.finalize_variable_values). fit() calls model.fit once per epoch, so that would train every epoch
    on from the average; the trained weights must go on, and the average is only evaluated (averaged_weights)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "use_ema", False):
        optimizer.finalize_variable_values = lambda var_list: None


def overwrite_with_average(model):
    model.optimizer._overwrite_model_variables_with_average_value(model.trainable_variables)


def batchnorm_layers(model) -> list:
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batchnorm_statistics(model, batches) -> int:
    """Replace every BatchNorm layer's moving mean and variance by the average of its batch statistics over
    `batches` (an iterable of (images, ...) tuples) under the model's current weights; returns the number of
    batches. The optimizer's moving average covers the trainable weights only, and the moving statistics of the
    *trained* weights do not fit their average: on FER-2013 that average predicted one class for every face
    (docs/cnn-recipe.md). SWA's remedy (torch.optim.swa_utils.update_bn): a forward pass in training mode, here
    with the momentum set so that batch k weighs 1/(k+1), i.e. a running mean of the batch statistics."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for count, batch in enumerate(batches, 1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / count  # FusedBatchNormalization reads it at every eager call
            model(batch[0], training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return count


class averaged_weights:
    """Context: inside, the model's trainable weights are their moving average and, given `batches` (see
    recompute_batchnorm_statistics), its BatchNorm statistics are recomputed for them; on exit every weight
    (the trained ones and their statistics) is restored."""

    def __init__(self, model, batches=None):
        self.model = model
        self.batches = batches

    def __enter__(self):
        self.trained = self.model.get_weights()
        overwrite_with_average(self.model)
        if self.batches is not None:
            recompute_batchnorm_statistics(self.model, self.batches)
        return self.model

    def __exit__(self, *exc):
        self.model.set_weights(self.trained)
        return False


def accuracy_of(proba: np.ndarray, y_index: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y_index))


def derive_seed(seed: int, epoch: int, salt: int) -> int:
    return int(np.random.default_rng([int(seed), epoch, salt]).integers(0, 2**31 - 1))


def as_model_input(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float32)[..., None]


def current_learning_rate(model) -> float:
    optimizer = model.optimizer
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))


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


def compile_network(model, *, optimizer: str, learning_rate: float, weight_decay: float, schedule: str,
                    warmup_epochs: float, total_steps: int, steps_per_epoch: int, ema: float | None,
                    label_smoothing: float, jit_compile: bool) -> None:
    """Compile `model` for training: AdamW or SGD (Nesterov momentum 0.9) with decoupled weight decay, the
    learning rate schedule ("onecycle": linear warmup then linear decay to 0; "cosine": linear warmup from 1/25
    then cosine decay to 0; "plateau"/"constant": a constant rate the plateau rule may lower), optionally an
    exponential moving average of the weights, label-smoothed cross-entropy."""
    import keras

    from fer_bench.models.keras_layers import LinearOneCycle

    warmup = min(int(warmup_epochs * steps_per_epoch), total_steps - 1)
    if schedule == "onecycle":
        rate = LinearOneCycle(learning_rate, warmup, total_steps)
    elif schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate / 25 if warmup else learning_rate,
            decay_steps=total_steps - warmup, alpha=0.0, warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup)
    else:
        rate = float(learning_rate)
    average = dict(use_ema=True, ema_momentum=float(ema)) if ema else {}
    if optimizer == "adamw":
        chosen = keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay, **average)
    else:
        chosen = keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True, weight_decay=weight_decay,
                                      **average)
    model.compile(optimizer=chosen, loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)


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


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Checkpoint:
    """The files of one training's checkpoint folder; state.json (written last, atomically) names the others."""

    def __init__(self, directory, fingerprint: str):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def load_state(self):
        path = self.directory / STATE_FILE
        if not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FerBenchError(f"{path}: unreadable checkpoint state ({exc}); delete the folder to start over") \
                from None
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise FerBenchError(f"{self.directory}: holds a checkpoint written by another version of the CNN "
                                f"(format {saved.get('format')}, this version writes {CHECKPOINT_FORMAT}); delete "
                                "it or choose another checkpoint_dir")
        if saved.get("fingerprint") != self.fingerprint:
            raise FerBenchError(f"{self.directory}: holds a checkpoint of another training (different data or "
                                "parameters); delete it or choose another checkpoint_dir")
        return saved["state"]

    def load_model(self, state):
        return load_keras_model(self.directory / state["model_file"])

    def load_best_weights(self, state, model):
        if state.get("best_weights_file") is None:
            return None
        current = model.get_weights()
        model.load_weights(self.directory / state["best_weights_file"])
        best = model.get_weights()
        model.set_weights(current)
        return best

    def save(self, model, state, best_weights):
        self.directory.mkdir(parents=True, exist_ok=True)
        epoch = state["epoch"]
        previous = self._referenced_files()
        state["model_file"] = f"epoch{epoch:04d}.keras"
        model.save(self.directory / state["model_file"])
        if best_weights is not None:  # this epoch's trained weights or their moving average
            state["best_weights_file"] = f"best_epoch{epoch:04d}.weights.h5"
            trained = model.get_weights()
            model.set_weights(best_weights)
            model.save_weights(self.directory / state["best_weights_file"])
            model.set_weights(trained)
        atomic_write(self.directory / STATE_FILE, json.dumps(
            {"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "state": state}, indent=1))
        for name in previous - self._referenced_files():
            (self.directory / name).unlink(missing_ok=True)

    def _referenced_files(self) -> set[str]:
        path = self.directory / STATE_FILE
        if not path.exists():
            return set()
        state = json.loads(path.read_text())["state"]
        return {name for name in (state.get("model_file"), state.get("best_weights_file")) if name}
