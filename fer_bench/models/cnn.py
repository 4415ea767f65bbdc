"""The Keras 3 CNN: a VGG-style functional network trained on raw 48x48 grayscale faces.

    from fer_bench.models import make_model
    model = make_model("cnn", seed=0)                       # or make_cnn(seed=0, epochs=10, test_views=2)
    model.fit(X_train, y_train, sample_weight=w, validation_data=(X_public, y_public))
    model.predict_proba(X_private)

Design:

* The network takes raw 0..255 pixels (a Rescaling layer normalises them), so saliency code can feed images
  as they are. Blocks of 3x3 Conv -> BatchNorm -> ReLU, max-pooling between blocks (BatchNorm is
  keras_layers.FusedBatchNormalization: Keras' layer computed by one fused kernel; the 7class fit on 2 CPU
  cores went from 3,116 s to 1,942 s); the last block's output is the layer `last_conv_layer_name_`
  (Grad-CAM); global average pooling, dropout, a Dense layer named "logits" and a separate softmax
  Activation (saliency maps differentiate the logits).
* The training recipe (docs/cnn-recipe.md holds its ablation on FER-2013): random 44x44 crops of the 48x48
  faces (the network's input is 44x44), with mirror, +-10 degree rotation, +-10% zoom (no shift: the crop
  position already moves the face by up to +-2 pixels) and random erasing (p 0.5, 2-20% of the crop); AdamW
  with cosine decay over 60 epochs; an exponential moving average of the weights (decay 0.999) competes with
  the trained weights for selection. At test time each face is the mean over 1, 2 or 10 views (centre crop;
  + its mirror; ten-crop), the number chosen on PublicTest once after training (test_views="auto").
* Augmentation (flip, shift, rotation, zoom and the random crop: one affine warp per image; then random
  erasing) runs in the tf.data input pipeline with stateless random numbers keyed by (seed, epoch, batch),
  and the epoch's shuffle order is drawn from (seed, epoch). Together with re-seeding the dropout generators
  at every epoch this makes an epoch's randomness independent of what ran before it, so a training resumed
  from a checkpoint ends with exactly the weights of an uninterrupted one.
* Model selection uses validation_data (PublicTest) only: the weights of the epoch with the best validation
  accuracy on the single centre-crop view (the trained weights, or with ema their average when strictly
  better) are restored at the end, then the test views are chosen for them; early stopping (`patience`)
  and, with schedule="plateau", the learning rate reductions are driven by it too. Without validation_data
  the fixed number of epochs is trained (with ema, the average of the last epoch is kept).
* Checkpointing (`checkpoint_dir`): after every epoch the model with its optimizer state, the best weights
  and a JSON state (epoch, best-so-far, early-stopping counters, history) are written, the JSON last and
  atomically, so the JSON always names complete files. fit() with the same checkpoint_dir and the same
  data and parameters resumes after the last finished epoch; a finished training is loaded, not retrained.
  (Keras' BackupAndRestore keeps neither the best weights nor the early-stopping/plateau state, and cannot
  restore the random state of a resumed epoch; hence this small loop around model.fit, one call per epoch.)
* Determinism (`deterministic=True`): keras.utils.set_random_seed(seed) and
  tf.config.experimental.enable_op_determinism(). The latter is process-wide and cannot be undone; on this
  CPU it cost no measurable throughput (see below). tests/test_cnn.py trains twice and compares.

Throughput measured on the 2-core AVX-512/AVX512_BF16 machine (FER-2013 images, 30 steps after warm-up,
default net unless stated; the machine was shared, load 6-9, so images per CPU-second of the training
process are the comparable number; wall img/s depended on the share of CPU it got):

    configuration                               img/CPU-s
    float32, op determinism on                    229
    float32, op determinism off                   212   (same within noise: determinism is free)
    bfloat16 mixed precision                      269   (+17%: oneDNN uses AVX512_BF16)   <- default ("auto")
    float32 + XLA (jit_compile)                   222
    bfloat16 + XLA                                290   (+8% over bfloat16 alone, within noise; XLA off)
    batch 256 (float32)                           218   (no gain over 128)
    filters (24, 48, 96, 192) (float32)           326   (0.56x the FLOPs, only 1.4x faster)
    filters (32, 64, 128) (float32)               273

On the same machine idle (load < 1) the default net trains at 522 images/s wall clock (bfloat16; 273 per
CPU-second, i.e. both cores busy), batch 128 or 256 alike: one FER-2013 7-class epoch takes ~58 s with its
PublicTest evaluation, so the default 30 epochs take ~29 minutes (the 40-minute budget of the project brief).

All of the above used Keras' BatchNormalization. On a later 2-core machine (bf16 matmul peak ~410 GFLOP/s) it
trained at 276-288 images/s, 47-49% of that peak; a profile of train_on_batch showed BatchNorm's separate
float32 ops as the largest cost (411 ms/step at batch 128; 263 ms with the fused kernel, 244 ms without any
BatchNorm). With FusedBatchNormalization the fit benchmark (benchmarks/, 7class) measures 478 images/s steady,
82% of the peak.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from fer_bench.errors import FerBenchError
from fer_bench.models.base import ImageClassifier, check_images

IMAGE_SIZE = 48
LOGITS_LAYER = "logits"
LAST_CONV_LAYER = "last_conv_block"
KERAS_FILE = "model.keras"
PARAMS_FILE = "cnn_params.json"
STATE_FILE = "state.json"
CHECKPOINT_FORMAT = 3  # 2: BatchNorm layers are FusedBatchNormalization; 3: crops, erasing, EMA, test views
PREDICT_BATCH = 512
PREFETCH_BATCHES = 2  # input batches prepared ahead of the training step
#: test_views choices: the centre crop; + its mirror image; ten-crop (4 corners + centre, and their mirrors)
VIEW_CHOICES = (1, 2, 10)
#: random erasing: aspect ratio (height / width) range of the erased rectangle, log-uniform
ERASING_ASPECT = (0.3, 3.3)
# Keras' default 0.99 lets the moving statistics lag ~100 steps behind weights that change fast at a high
# learning rate: on FER-2013 after 3 epochs that gave 21% accuracy in inference mode vs 51% with batch
# statistics on the same images. 0.9 (PyTorch's default) follows within ~10 steps.
BN_MOMENTUM = 0.9

# quick=True: a small net and few epochs: 17 CPU-seconds for the 7-class synthetic task (2,800 images), 0.72
# PublicTest accuracy. Its receptive field is too small for global average pooling to keep where a feature
# is (mouth vs brows): with head="gap" it stays at chance (0.26), hence "flatten".
QUICK_PARAMS = dict(
    filters=(16, 32, 64),
    convs_per_block=1,
    head="flatten",
    dropout=0.2,
    epochs=6,
    batch_size=64,
    learning_rate=3e-3,
    warmup_epochs=1,
    ema=None,  # an average over ~1,000 steps means nothing for a 60-step training
)

PLATEAU_PATIENCE = 3  # schedule="plateau": epochs without PublicTest improvement before the rate is halved
PLATEAU_FACTOR = 0.5
OPTIMIZERS = ("adamw", "sgd")
HEADS = ("gap", "flatten")
SCHEDULES = ("cosine", "plateau", "constant")


def make_cnn(seed: int = 0, quick: bool = False, **params) -> CNNClassifier:
    """The registered "cnn" factory: CNNClassifier's defaults, QUICK_PARAMS on top when quick, then `params`."""
    return CNNClassifier(seed=seed, **{**(QUICK_PARAMS if quick else {}), **params})


class CNNClassifier(ImageClassifier):
    """VGG-style Keras CNN on uint8 (N, 48, 48) images; see the module docstring.

    Parameters (all stored as given; validation happens in fit):
        filters: channels of each conv block (one max-pooling between consecutive blocks).
        convs_per_block: 3x3 convolutions per block.
        head: "gap" (global average pooling of the last block) or "flatten" (keeps where features are).
        dropout: dropout rate before the logits.
        epochs: maximum number of epochs; batch_size: images per step.
        optimizer: "adamw" or "sgd" (Nesterov momentum 0.9); learning_rate: peak rate; weight_decay: decoupled.
        schedule: "cosine" (linear warmup over warmup_epochs, then cosine decay to 0 over the remaining
            epochs), "plateau" (halve the rate after 3 epochs without validation improvement) or "constant".
        patience: stop after this many epochs without validation-accuracy improvement (None: never).
        label_smoothing: for the cross-entropy.
        flip, shift (fraction of the image), rotation (degrees), zoom (fraction): training augmentation (one
            affine warp per image).
        crop_size: train on a random crop_size x crop_size crop of each (warped) 48x48 face, a new position per
            image and epoch; the network's input is then crop_size x crop_size and predictions use crops too
            (test_views). None: the full 48x48 face, as before.
        erasing: probability of random erasing per training image: a rectangle of the (cropped) image, of
            erasing_area (min, max) fraction of its area and aspect ratio in ERASING_ASPECT (log-uniform),
            centred anywhere (clipped at the border), is replaced by uniform noise in 0..255. 0: off.
        ema: decay of an exponential moving average of the weights (Keras' optimizer use_ema), or None. When on,
            both the trained weights and their average are evaluated on the validation data every epoch, and
            the better one competes for selection (selected_params_["weights"] says which was kept).
        test_views: network passes averaged per image in predict_proba: 1 (the centre crop), 2 (the centre crop
            and its mirror image), 10 (ten-crop: the 4 corner crops and the centre crop, and their mirror
            images), or "auto" (the default): of (1, 2, 10) the one with the best validation (PublicTest)
            accuracy of the selected weights, ties going to fewer views; 1 without validation data. With
            crop_size None the views are the full face (1) and it with its mirror (2); 10 needs crops.
            Recorded in selected_params_["test_views"], with "val_accuracy_by_views".
        mixed_precision: bfloat16 compute with float32 weights; jit_compile: XLA.
        deterministic: seed everything and enable TensorFlow's op determinism.
        checkpoint_dir: where to checkpoint every epoch and resume from (None: no checkpoints).
        callbacks: extra Keras callbacks passed to every model.fit call.
        verbose: Keras' fit verbosity (0 silent, 1 progress bar, 2 one line per epoch) or "auto" (the default):
            the progress bar on a terminal, one line per epoch otherwise (a log file).
    """

    _model_file = KERAS_FILE

    def __init__(self, *, seed=0, filters=(32, 64, 128, 256), convs_per_block=2, head="gap", dropout=0.4, epochs=60,
                 batch_size=128, optimizer="adamw", learning_rate=2e-3, weight_decay=0.01, schedule="cosine",
                 warmup_epochs=2, patience=None, label_smoothing=0.1, flip=True, shift=0.0, rotation=10.0,
                 zoom=0.1, crop_size=44, erasing=0.5, erasing_area=(0.02, 0.2), ema=0.999, test_views="auto",
                 mixed_precision="auto", jit_compile=False, deterministic=True, checkpoint_dir=None, callbacks=None,
                 verbose="auto"):
        self.seed = seed
        self.filters = filters
        self.convs_per_block = convs_per_block
        self.head = head
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.patience = patience
        self.label_smoothing = label_smoothing
        self.flip = flip
        self.shift = shift
        self.rotation = rotation
        self.zoom = zoom
        self.crop_size = crop_size
        self.erasing = erasing
        self.erasing_area = erasing_area
        self.ema = ema
        self.test_views = test_views
        self.mixed_precision = mixed_precision
        self.jit_compile = jit_compile
        self.deterministic = deterministic
        self.checkpoint_dir = checkpoint_dir
        self.callbacks = callbacks
        self.verbose = verbose

    # --- public interface ---------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, validation_data=None):
        import keras


        self._check_params()
        X = check_images(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} images but {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes to train, got {self.classes_.tolist()}")
        y_index = np.searchsorted(self.classes_, y)
        weights = self._check_sample_weight(sample_weight, len(X))
        validation = None
        if validation_data is not None:
            X_val, y_val = validation_data
            X_val, y_val = check_images(X_val), np.asarray(y_val)
            unknown = np.setdiff1d(y_val, self.classes_)
            if len(y_val) != len(X_val) or len(unknown):
                raise ValueError(f"validation_data: {len(X_val)} images, {len(y_val)} labels, labels not seen "
                                 f"in training: {unknown.tolist()}")
            validation = (X_val, np.searchsorted(self.classes_, y_val))

        self._seed_everything()
        n_classes = len(self.classes_)
        steps_per_epoch = int(np.ceil(len(X) / self.batch_size))
        fingerprint = self._training_fingerprint(X, y_index, weights, validation)
        checkpoint = _Checkpoint(self.checkpoint_dir, fingerprint) if self.checkpoint_dir else None
        state = checkpoint.load_state() if checkpoint else None
        if state is None:
            model = self._build_network(n_classes)
            self._compile(model, steps_per_epoch)
            state = {"epoch": 0, "best_val_accuracy": None, "best_epoch": None, "epochs_without_improvement": 0,
                     "plateau_wait": 0, "finished": False, "stopped_early": False, "history": [],
                     "resumed_from_epoch": None}
            best_weights = None
        else:
            model = checkpoint.load_model(state)
            best_weights = checkpoint.load_best_weights(state, model)
            if not state["finished"]:
                state["resumed_from_epoch"] = state["epoch"]
        _keep_trained_weights_at_fit_end(model)
        # Epochs are compared on one view, the centre crop (the full face without crops): cheap every epoch.
        validation_view = (self._centre_crop(validation[0]), validation[1]) if validation else None
        validation_ds = _validation_dataset(*validation_view, n_classes) if validation else None

        while not state["finished"] and state["epoch"] < self.epochs:
            epoch = state["epoch"]
            self._reseed_layers(model, epoch)
            train_ds = self._training_dataset(X, y_index, weights, n_classes, epoch)
            start = time.perf_counter()
            # epochs=self.epochs and a stop after this one, so Keras' progress line reads "Epoch k/epochs".
            stop_after_epoch = keras.callbacks.LambdaCallback(
                on_epoch_end=lambda *_: setattr(model, "stop_training", True))
            result = model.fit(train_ds, validation_data=validation_ds, initial_epoch=epoch, epochs=self.epochs,
                               verbose=self._keras_verbosity(), callbacks=[*(self.callbacks or []), stop_after_epoch],
                               shuffle=False)
            logs = {k: float(v[-1]) for k, v in result.history.items()}
            record = {"epoch": epoch + 1, "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
                      "val_loss": logs.get("val_loss"), "val_accuracy": logs.get("val_accuracy")}
            # Candidates for selection this epoch: the trained weights, then (when on) their moving average.
            candidates = [("trained", record["val_accuracy"], None)]
            if self.ema and validation is not None:
                with _averaged_weights(model):
                    record["ema_val_accuracy"] = _accuracy(self._network_proba(
                        _as_model_input(validation[0]), 1, model), validation[1])
                    ema_weights = model.get_weights()
                candidates.append(("ema", record["ema_val_accuracy"], ema_weights))
            seconds = time.perf_counter() - start
            record.update(lr=_current_learning_rate(model), seconds=seconds,
                          images_per_s=len(X) / seconds if seconds > 0 else None)
            state["history"].append(record)
            state["epoch"] = epoch + 1
            if validation is not None:
                kind, accuracy, candidate_weights = candidates[0]
                for other in candidates[1:]:  # the average only when strictly better
                    if other[1] > accuracy:
                        kind, accuracy, candidate_weights = other
                improved = state["best_val_accuracy"] is None or accuracy > state["best_val_accuracy"]
                if improved:
                    state.update(best_val_accuracy=accuracy, best_epoch=epoch + 1, best_weights_kind=kind,
                                 epochs_without_improvement=0, plateau_wait=0)
                    best_weights = candidate_weights if candidate_weights is not None else model.get_weights()
                else:
                    state["epochs_without_improvement"] += 1
                    state["plateau_wait"] += 1
                if self.schedule == "plateau" and state["plateau_wait"] >= PLATEAU_PATIENCE:
                    model.optimizer.learning_rate = _current_learning_rate(model) * PLATEAU_FACTOR
                    state["plateau_wait"] = 0
                if self.patience is not None and state["epochs_without_improvement"] >= self.patience:
                    state["stopped_early"] = True
            state["finished"] = state["epoch"] >= self.epochs or state["stopped_early"]
            if checkpoint:
                checkpoint.save(model, state, best_weights if improved_now(state) else None)

        if best_weights is not None:
            model.set_weights(best_weights)
        elif self.ema and validation is None and state["epoch"] > 0:
            _overwrite_with_average(model)  # without validation data the last epoch's average is kept
        self.keras_model_ = model
        self.last_conv_layer_name_ = LAST_CONV_LAYER
        views, views_evidence = self._choose_views(validation)
        self.history_ = state["history"]
        last = state["history"][-1] if state["history"] else {}
        seconds = sum(r["seconds"] for r in state["history"])
        self.selected_params_ = {
            "best_epoch": state["best_epoch"] if validation is not None else state["epoch"],
            "best_val_accuracy": state["best_val_accuracy"],
            "weights": state.get("best_weights_kind", "trained") if validation is not None
            else ("ema" if self.ema else "trained"),
            "epochs_run": state["epoch"],
            "stopped_early": state["stopped_early"],
            "final_learning_rate": last.get("lr"),
            "test_views": views,
            **views_evidence,
            "input_size": self._input_size(),
            "mixed_precision": "bfloat16" if self._uses_bfloat16() else "float32",
            "resumed_from_epoch": state["resumed_from_epoch"],
            "train_seconds": seconds,
            "train_images_per_s": len(X) * state["epoch"] / seconds if seconds > 0 else None,
            "n_parameters": int(model.count_params()),
            "selection": "best PublicTest accuracy" if validation is not None else "last epoch",
        }
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: the mean of the softmax over prediction_views() views of each image."""
        check_is_fitted(self, "keras_model_")
        proba = self._network_proba(_as_model_input(check_images(X)), self.prediction_views())
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_proba_single_view(self, X) -> np.ndarray:
        """Class probabilities from one view per image, the centre crop (the full face without crops): what
        epochs were compared on, and the cheapest prediction of these weights."""
        check_is_fitted(self, "keras_model_")
        proba = self._network_proba(_as_model_input(check_images(X)), 1)
        return proba / proba.sum(axis=1, keepdims=True)

    # --- capabilities (fer_bench.models.base.ImageClassifier) ---------------------------------------------

    def prediction_views(self) -> int:
        """Network passes per image in predict_proba: test_views, or with "auto" what fit chose on the
        validation data (1 before fit)."""
        if self.test_views == "auto":
            return int(getattr(self, "selected_params_", {}).get("test_views") or 1)
        return int(self.test_views)

    def selected_on_validation(self) -> dict:
        return dict(getattr(self, "selected_params_", None) or {})

    def validation_accuracy(self) -> float | None:
        """PublicTest accuracy of the model as it predicts (the kept weights with the chosen views); None
        without validation data."""
        by_views = self.selected_on_validation().get("val_accuracy_by_views") or {}
        return by_views.get(str(self.prediction_views()))

    def training_history(self) -> list[dict] | None:
        return getattr(self, "history_", None)

    def parameter_count(self) -> int | None:
        check_is_fitted(self, "keras_model_")
        return int(self.keras_model_.count_params())

    def keras_network(self):
        """The network as trained: input crop_size x crop_size x 1 (48 x 48 x 1 without crops), raw 0..255
        pixels; one call of it is one prediction view."""
        check_is_fitted(self, "keras_model_")
        return self.keras_model_

    def saliency_network(self):
        """(Keras model, last conv layer name) for fer_bench.saliency: the model takes raw 0..255 float32 images
        of shape (N, 48, 48, 1) and computes the network on their centre crop (a Cropping2D layer named
        "centre_crop" in front of the trained layers' copies, same weights; without crops the network itself),
        with the class scores before the softmax in the layer "logits". Saliency maps thus explain the single
        centre-crop view, and are 0 on the cropped-off border (2 pixels each side for 44x44 crops)."""
        check_is_fitted(self, "keras_model_")
        if self._input_size() == IMAGE_SIZE:
            return self.keras_model_, self.last_conv_layer_name_
        network = self._build_network(len(self.classes_), centre_crop=True)
        network.set_weights(self.keras_model_.get_weights())
        return network, self.last_conv_layer_name_

    # --- views ---------------------------------------------------------------------------------------------

    def _input_size(self) -> int:
        return IMAGE_SIZE if self.crop_size is None else int(self.crop_size)

    def _centre_crop(self, X: np.ndarray) -> np.ndarray:
        size = self._input_size()
        offset = (IMAGE_SIZE - size) // 2
        return X[:, offset:offset + size, offset:offset + size]

    def _views(self, X: np.ndarray, views: int) -> list[np.ndarray]:
        """The `views` inputs of the network for images X (N, 48, 48, 1): [centre] (1), [centre, mirrored
        centre] (2), or the centre and the 4 corner crops, then the 5 mirrored (10)."""
        size = self._input_size()
        centre, far = (IMAGE_SIZE - size) // 2, IMAGE_SIZE - size
        offsets = [(centre, centre)] + ([(0, 0), (0, far), (far, 0), (far, far)] if views == 10 else [])
        crops = [X[:, r:r + size, c:c + size] for r, c in offsets]
        return crops if views == 1 else crops + [crop[:, :, ::-1] for crop in crops]

    def _network_proba(self, X: np.ndarray, views: int = 1, network=None) -> np.ndarray:
        """The mean of the network's softmax over `views` views of (N, 48, 48, 1) float32 images, computed in
        calls of at most PREDICT_BATCH network inputs holding every view of their images (a single image then
        costs one call of `views`, not `views` calls).

        predict_on_batch, not predict: Keras' predict builds a data pipeline on every call, ~30 ms, which
        dominated single-image latency (predict_on_batch: ~2 ms on 2 cores); same batches, same numbers."""
        network = network if network is not None else self.keras_model_
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)))
        step = max(1, PREDICT_BATCH // views)
        chunks = []
        for start in range(0, len(X), step):
            batch = X[start:start + step]
            network_input = np.concatenate(self._views(batch, views)) if views > 1 else self._views(batch, 1)[0]
            proba = np.asarray(network.predict_on_batch(network_input), dtype=np.float64)
            chunks.append(proba.reshape(views, len(batch), -1).mean(axis=0))
        return np.concatenate(chunks)

    def _choose_views(self, validation) -> tuple[int, dict]:
        """The test views predict_proba uses, and the validation accuracies behind the choice: for "auto" every
        choice's, for a fixed number that one's (the validation accuracy of what predicts); none without
        validation data ("auto" then means 1).

        The views never change which weights were selected (epochs are compared on the centre crop alone)."""
        choices = [v for v in VIEW_CHOICES if v != 10 or self._input_size() < IMAGE_SIZE]
        if validation is None:
            if self.test_views == "auto":
                return 1, {"test_views_selection": "1: no validation data"}
            return int(self.test_views), {}
        X_val, y_val = _as_model_input(validation[0]), validation[1]
        evaluated = choices if self.test_views == "auto" else [int(self.test_views)]
        by_views = {str(v): _accuracy(self._network_proba(X_val, v), y_val) for v in evaluated}
        if self.test_views != "auto":
            return int(self.test_views), {"val_accuracy_by_views": by_views}
        best = choices[0]
        for v in choices[1:]:  # strictly better only: ties go to fewer views
            if by_views[str(v)] > by_views[str(best)]:
                best = v
        return best, {"val_accuracy_by_views": by_views,
                      "test_views_selection": f"{best}: best validation accuracy of {', '.join(map(str, choices))} "
                                              "views (ties: fewer)"}

    def save(self, directory) -> Path:
        """Write model.keras (the trained network, no optimizer state) and cnn_params.json."""
        import keras

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # A fresh functional wrapper around the same layers is not compiled, so no optimizer state is saved.
        inference = keras.Model(self.keras_model_.input, self.keras_model_.output, name=self.keras_model_.name)
        inference.save(directory / KERAS_FILE)
        params = {k: v for k, v in self.get_params().items() if k not in ("callbacks", "checkpoint_dir")}
        (directory / PARAMS_FILE).write_text(json.dumps({
            "params": _jsonable(params), "classes": self.classes_.tolist(),
            "selected_params": self.selected_params_, "history": self.history_,
            "last_conv_layer_name": self.last_conv_layer_name_,
        }, indent=1))
        return directory

    @classmethod
    def load(cls, directory) -> CNNClassifier:
        directory = Path(directory)
        saved = json.loads((directory / PARAMS_FILE).read_text())
        params = saved["params"]
        params["filters"] = tuple(params["filters"])
        selected = saved["selected_params"]
        if "tta" in params:  # saved before crops, erasing, EMA and test_views: the full face, flip TTA or not
            tta = params.pop("tta")
            params.update(crop_size=None, erasing=0.0, ema=None, test_views=2 if tta is True else 1)
            if tta == "auto":
                params["test_views"] = "auto"
                selected = {**selected, "test_views": 2 if selected.get("tta") else 1}
        if params.get("erasing_area") is not None:
            params["erasing_area"] = tuple(params["erasing_area"])
        model = cls(**params)
        model.keras_model_ = _load_keras_model(directory / KERAS_FILE, compile=False)
        model.classes_ = np.asarray(saved["classes"])
        model.selected_params_ = selected
        model.history_ = saved["history"]
        model.last_conv_layer_name_ = saved["last_conv_layer_name"]
        return model

    # --- internals ----------------------------------------------------------------------------------------

    def _check_params(self):
        if self.optimizer not in OPTIMIZERS:
            raise FerBenchError(f"cnn: unknown optimizer {self.optimizer!r}; available: {', '.join(OPTIMIZERS)}")
        if self.head not in HEADS:
            raise FerBenchError(f"cnn: unknown head {self.head!r}; available: {', '.join(HEADS)}")
        if self.schedule not in SCHEDULES:
            raise FerBenchError(f"cnn: unknown schedule {self.schedule!r}; available: {', '.join(SCHEDULES)}")
        if self.test_views not in (*VIEW_CHOICES, "auto") or isinstance(self.test_views, bool):
            raise FerBenchError(f"cnn: test_views must be 1, 2, 10 or \"auto\", got {self.test_views!r}")
        if self.crop_size is not None and not (isinstance(self.crop_size, int | np.integer)
                                               and 8 <= self.crop_size <= IMAGE_SIZE):
            raise FerBenchError(f"cnn: crop_size must be None or a whole number of pixels in 8..48, got "
                                f"{self.crop_size!r}")
        if self.test_views == 10 and self._input_size() == IMAGE_SIZE:
            raise FerBenchError("cnn: test_views=10 (ten-crop) needs crop_size < 48")
        if not 0 <= float(self.erasing) <= 1:
            raise FerBenchError(f"cnn: erasing is a probability in 0..1, got {self.erasing!r}")
        low, high = self.erasing_area
        if not 0 < low <= high <= 1:
            raise FerBenchError(f"cnn: erasing_area must be (min, max) fractions with 0 < min <= max <= 1, got "
                                f"{self.erasing_area!r}")
        if self.ema is not None and not 0 < float(self.ema) < 1:
            raise FerBenchError(f"cnn: ema must be None or a decay in (0, 1), got {self.ema!r}")
        if self.verbose not in (0, 1, 2, "auto"):
            raise FerBenchError(f"cnn: verbose must be 0, 1, 2 or \"auto\", got {self.verbose!r}")
        if len(self.filters) < 1 or min(self.filters) < 1 or self.convs_per_block < 1:
            raise FerBenchError(f"cnn: filters must be positive channel counts and convs_per_block >= 1, got "
                                f"{self.filters} and {self.convs_per_block}")
        if len(self.filters) > 5:
            raise FerBenchError(f"cnn: at most 5 conv blocks fit a 48x48 image, got {len(self.filters)}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise FerBenchError(f"cnn: {name} must be >= 1, got {getattr(self, name)}")

    @staticmethod
    def _check_sample_weight(sample_weight, n):
        if sample_weight is None:
            return np.ones(n, dtype=np.float32)
        weights = np.asarray(sample_weight, dtype=np.float32)
        if weights.shape != (n,) or not np.all(np.isfinite(weights)) or weights.min() < 0:
            raise ValueError(f"sample_weight must be {n} finite non-negative numbers, got shape {weights.shape}")
        return weights

    def _keras_verbosity(self) -> int:
        if self.verbose == "auto":
            # Keras' progress bar redraws itself with carriage returns: in a log file that is one endless line.
            return 1 if sys.stdout.isatty() else 2
        return int(self.verbose)

    def _seed_everything(self):
        import keras
        import tensorflow as tf

        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(int(self.seed))

    def _build_network(self, n_classes: int, centre_crop: bool = False):
        """The network on input_size x input_size images; with centre_crop on 48x48 images whose centre crop a
        Cropping2D layer takes first (the same weights in the same order: saliency_network)."""
        import keras
        from keras import layers

        from fer_bench.models.keras_layers import FusedBatchNormalization

        compute = "mixed_bfloat16" if self._uses_bfloat16() else "float32"
        size = self._input_size()
        if centre_crop:
            inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
            margin = (IMAGE_SIZE - size) // 2
            x = layers.Cropping2D(((margin, IMAGE_SIZE - size - margin),) * 2, name="centre_crop")(inputs)
        else:
            inputs = x = keras.Input((size, size, 1), name="image")
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(x)
        for block, channels in enumerate(self.filters, 1):
            if block > 1:
                x = layers.MaxPooling2D(2, name=f"block{block}_pool", dtype=compute)(x)
            for conv in range(1, self.convs_per_block + 1):
                last = block == len(self.filters) and conv == self.convs_per_block
                x = layers.Conv2D(channels, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                                  name=f"block{block}_conv{conv}", dtype=compute)(x)
                x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}", dtype=compute)(x)
                x = layers.Activation("relu", name=LAST_CONV_LAYER if last else f"block{block}_relu{conv}",
                                      dtype=compute)(x)
        if self.head == "flatten":
            x = layers.Flatten(name="flatten", dtype=compute)(x)
        else:
            x = layers.GlobalAveragePooling2D(name="pool", dtype=compute)(x)
        x = layers.Dropout(self.dropout, seed=int(self.seed), name="dropout")(x)
        logits = layers.Dense(n_classes, name=LOGITS_LAYER, dtype="float32")(x)
        outputs = layers.Activation("softmax", name="softmax", dtype="float32")(logits)
        return keras.Model(inputs, outputs, name="fer_cnn")

    def _uses_bfloat16(self) -> bool:
        if self.mixed_precision == "auto":
            return cpu_has_native_bfloat16()
        return bool(self.mixed_precision)

    def _compile(self, model, steps_per_epoch: int):
        import keras

        total = self.epochs * steps_per_epoch
        if self.schedule == "cosine":
            warmup = min(int(self.warmup_epochs * steps_per_epoch), total - 1)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=self.learning_rate / 25 if warmup else self.learning_rate,
                decay_steps=total - warmup, alpha=0.0, warmup_target=self.learning_rate if warmup else None,
                warmup_steps=warmup)
        else:
            learning_rate = float(self.learning_rate)
        average = dict(use_ema=True, ema_momentum=float(self.ema)) if self.ema else {}
        if self.optimizer == "adamw":
            optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=self.weight_decay, **average)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True,
                                             weight_decay=self.weight_decay, **average)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                      jit_compile=bool(self.jit_compile))

    def _reseed_layers(self, model, epoch: int):
        """Set every random layer's generator from (seed, epoch), so an epoch's dropout does not depend on
        earlier epochs (the generators' state is not part of a saved model)."""
        for i, variable in enumerate(v for v in model.variables if "seed_generator_state" in v.path):
            variable.assign(np.array([_derive_seed(self.seed, epoch, i), 0], dtype=variable.dtype))

    def _training_dataset(self, X, y_index, weights, n_classes: int, epoch: int):
        import tensorflow as tf

        order = np.random.default_rng([int(self.seed), epoch]).permutation(len(X))
        augment = _make_augmenter(self.flip, self.shift, self.rotation, self.zoom, crop_size=self.crop_size,
                                  erasing=self.erasing, erasing_area=self.erasing_area)
        epoch_seed = _derive_seed(self.seed, epoch, 1 << 20)

        def prepare(index, batch):
            images, labels, batch_weights = batch
            images = tf.cast(images, tf.float32)[..., None]
            if augment is not None:
                images = augment(images, tf.stack([tf.constant(epoch_seed, tf.int64), index]))
            return images, tf.one_hot(labels, n_classes), batch_weights

        return (tf.data.Dataset.from_tensor_slices((X[order], y_index[order].astype(np.int32), weights[order]))
                .batch(int(self.batch_size)).enumerate()
                .map(prepare, num_parallel_calls=_pipeline_threads(), deterministic=True)
                .prefetch(PREFETCH_BATCHES).with_options(_pipeline_options()))

    def _training_fingerprint(self, X, y_index, weights, validation) -> str:
        """What a checkpoint must match to be resumed: the data and every parameter that shapes training."""
        h = hashlib.sha256()
        for array in (X, y_index, weights, *(validation or ())):
            h.update(np.ascontiguousarray(array).tobytes())
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("checkpoint_dir", "callbacks", "verbose", "test_views")}
        h.update(json.dumps(_jsonable(params), sort_keys=True).encode())
        return h.hexdigest()[:16]


def _load_keras_model(path: Path, **kwargs):
    import keras

    import fer_bench.models.keras_layers  # noqa: F401  (registers the custom layers for deserialisation)

    return keras.models.load_model(path, **kwargs)


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX); elsewhere bfloat16 is emulated and
    slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def improved_now(state) -> bool:
    return state["best_epoch"] is not None and state["best_epoch"] == state["epoch"]


def _keep_trained_weights_at_fit_end(model):
    """With use_ema, Keras' model.fit ends by overwriting the weights with their moving average
    (optimizer.finalize_variable_values). fit() calls model.fit once per epoch, so that would train every epoch
    on from the average; the trained weights must go on, and the average is only evaluated (_averaged_weights)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "use_ema", False):
        optimizer.finalize_variable_values = lambda var_list: None


def _overwrite_with_average(model):
    model.optimizer._overwrite_model_variables_with_average_value(model.trainable_variables)


class _averaged_weights:
    """Context: the model's trainable weights are their moving average inside, the trained ones again after
    (batch-norm statistics stay those of the trained weights)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.trained = [v.numpy() for v in self.model.trainable_variables]
        _overwrite_with_average(self.model)
        return self.model

    def __exit__(self, *exc):
        for variable, value in zip(self.model.trainable_variables, self.trained, strict=True):
            variable.assign(value)
        return False


def _accuracy(proba: np.ndarray, y_index: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y_index))


def _derive_seed(seed: int, epoch: int, salt: int) -> int:
    return int(np.random.default_rng([int(seed), epoch, salt]).integers(0, 2**31 - 1))


def _as_model_input(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float32)[..., None]


def _current_learning_rate(model) -> float:
    optimizer = model.optimizer
    lr = optimizer.learning_rate
    return float(np.asarray(lr.numpy() if hasattr(lr, "numpy") else lr))


def _pipeline_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _pipeline_options():
    """tf.data options of the input pipelines: autotuning off.

    With autotuning, every iterator runs a tuning thread that sleeps up to ~30 s between rounds, and deleting
    the iterator waits for it to wake. fit() makes one model.fit call, hence one iterator, per epoch, so on
    FER-2013 each ~55 s epoch idled ~27 s more (seen with py-spy: ~IteratorResource waiting in
    UnboundedThreadPool). Fixed parallelism gives the same batches (the augmentation is stateless)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _validation_dataset(X, y_index, n_classes: int):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((X, y_index.astype(np.int32))).batch(PREDICT_BATCH)
            .map(lambda images, labels: (tf.cast(images, tf.float32)[..., None], tf.one_hot(labels, n_classes)))
            .prefetch(PREFETCH_BATCHES).with_options(_pipeline_options()))


def _make_augmenter(flip: bool, shift: float, rotation: float, zoom: float, *, crop_size: int | None = None,
                    erasing: float = 0.0, erasing_area=(0.02, 0.2)):
    """A function (images (B, 48, 48, 1) float32, seed (2,) int64) -> augmented images (B, crop, crop, 1), or
    None when there is nothing to do. One bilinear affine warp per image (reflecting at the border) does mirror,
    rotation about the centre, zoom, shift and the random crop at once (the crop is a whole-pixel translation of
    the output grid, so a crop alone copies pixels exactly); random erasing then replaces a rectangle by noise.
    Random numbers are stateless, so the same seed gives the same batch."""
    import tensorflow as tf

    size = IMAGE_SIZE if crop_size is None else int(crop_size)
    if not flip and not shift and not rotation and not zoom and size == IMAGE_SIZE and not erasing:
        return None
    max_angle = np.deg2rad(rotation)
    centre = (IMAGE_SIZE - 1) / 2
    min_area, max_area = (float(a) for a in erasing_area)
    log_aspect = np.log(ERASING_ASPECT)

    def warp(images, seeds):
        n = tf.shape(images)[0]
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
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, tf.zeros([n]), tf.zeros([n])], axis=1)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=[size, size],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    def erase(images, seeds):
        n = tf.shape(images)[0]
        on = tf.random.stateless_uniform([n], seeds[7]) < erasing
        area = tf.random.stateless_uniform([n], seeds[8], min_area, max_area) * size * size
        aspect = tf.exp(tf.random.stateless_uniform([n], seeds[9], log_aspect[0], log_aspect[1]))
        half_h, half_w = tf.sqrt(area * aspect) / 2, tf.sqrt(area / aspect) / 2
        centres = tf.random.stateless_uniform([n, 2], seeds[10], 0.0, float(size))
        grid = tf.range(size, dtype=tf.float32) + 0.5
        rows = tf.abs(grid[None, :] - centres[:, :1]) < half_h[:, None]
        cols = tf.abs(grid[None, :] - centres[:, 1:]) < half_w[:, None]
        mask = rows[:, :, None] & cols[:, None, :] & on[:, None, None]
        noise = tf.random.stateless_uniform(tf.shape(images), seeds[11], 0.0, 255.0)
        return tf.where(mask[..., None], noise, images)

    def augment(images, seed):
        seeds = tf.random.experimental.stateless_split(seed, 12)
        images = warp(images, seeds)
        return erase(images, seeds) if erasing else images

    return augment


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Checkpoint:
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
        return _load_keras_model(self.directory / state["model_file"])

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
        _atomic_write(self.directory / STATE_FILE, json.dumps(
            {"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "state": state}, indent=1))
        for name in previous - self._referenced_files():
            (self.directory / name).unlink(missing_ok=True)

    def _referenced_files(self) -> set[str]:
        path = self.directory / STATE_FILE
        if not path.exists():
            return set()
        state = json.loads(path.read_text())["state"]
        return {name for name in (state.get("model_file"), state.get("best_weights_file")) if name}


def _atomic_write(path: Path, text: str):
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = ["CNNClassifier", "QUICK_PARAMS", "make_cnn"]
