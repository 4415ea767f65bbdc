"""The CNN's training machinery, apart from the estimator (fer_bench.models.cnn) and its input pipelines
(cnn_input.py: augmentation and the tf.data datasets): the optimiser and its schedule, the weight averaging
helpers, seeds, and the per-epoch checkpoint folder (state.json written last and atomically, so it always names
complete files). TensorFlow and Keras are imported inside the functions that need them.

* Randomness: the input pipelines' is keyed by (seed, epoch, batch) (cnn_input.py), and the dropout generators
  are re-seeded at every epoch from (seed, epoch), so an epoch's randomness is independent of what ran before
  it and a training resumed from a checkpoint ends with exactly the weights of an uninterrupted one.
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

import hashlib
import json
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


def current_learning_rate(model) -> float:
    optimizer = model.optimizer
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))


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


def training_fingerprint(params: dict, arrays) -> str:
    """What a checkpoint must match to be resumed: the training data (`arrays`: images, labels, weights and the
    validation data) and every parameter (CNNClassifier.get_params()) that shapes training."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    shaping = {k: v for k, v in params.items() if k not in ("checkpoint_dir", "callbacks", "verbose", "test_views")}
    h.update(json.dumps(jsonable(shaping), sort_keys=True).encode())
    return h.hexdigest()[:16]


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
