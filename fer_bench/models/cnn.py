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
  with cosine decay over 60 epochs; optionally (ema) an exponential moving average of the weights, with
  BatchNorm statistics recomputed for it, competes with the trained weights for selection (off by default:
  see docs/cnn-recipe.md). At test time each face is
  the mean over 1, 2 or 10 views (centre crop; + its mirror; ten-crop), the number chosen on PublicTest once
  after training (test_views="auto").
* Model selection uses validation_data (PublicTest) only: the weights of the epoch with the best validation
  accuracy on the single centre-crop view (the trained weights, or with ema their average when strictly
  better) are restored at the end, then the test views are chosen for them; early stopping (`patience`)
  and, with schedule="plateau", the learning rate reductions are driven by it too. Without validation_data
  the fixed number of epochs is trained (with ema, the average of the last epoch is kept).
* Where the parts live: the architecture in cnn_network.py; augmentation and the input pipelines in
  cnn_input.py; the epoch loop (start or resume, train an epoch, select, checkpoint) in cnn_epochs.py; the
  optimiser and its schedule, weight averaging, checkpointing and determinism in cnn_training.py; the
  parameters' rules in cnn_params.py; the test-time views and their choice in cnn_views.py; the
  epoch-selection state in cnn_selection.py; saving and loading in cnn_persistence.py; cnn_fast's recipe in
  cnn_fast.py; this module is the estimator (its parameters, fit, predict, capabilities).

Throughput measurements of earlier versions (dtype, determinism, XLA, batch size, widths, BatchNorm): see
docs/cnn-recipe.md.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from fer_bench.data.dataset import check_images
from fer_bench.models.base import ImageClassifier
from fer_bench.models.cnn_epochs import BN_RECOMPUTE_IMAGES, EpochTrainer  # noqa: F401
from fer_bench.models.cnn_input import ERASING_ASPECT, as_model_input  # noqa: F401  (part of cnn's API)
from fer_bench.models.cnn_network import HEADS, LAST_CONV_LAYER, LOGITS_LAYER, build_network  # noqa: F401
from fer_bench.models.cnn_params import (  # noqa: F401
    OPTIMIZERS,
    SCHEDULES,
    check_cnn_parameters,
    checked_sample_weight,
)
from fer_bench.models.cnn_persistence import KERAS_FILE, load_cnn, save_cnn
from fer_bench.models.cnn_selection import selection_summary
from fer_bench.models.cnn_training import (  # noqa: F401  (IMAGE_SIZE etc. are part of cnn's API)
    CHECKPOINT_FORMAT,
    IMAGE_SIZE,
    PREDICT_BATCH,
    STATE_FILE,
    cpu_has_native_bfloat16,
    jsonable,
)
from fer_bench.models.cnn_views import choose_test_views, mean_softmax

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
            both the trained weights and their average are evaluated on the validation data every epoch (the
            average with BatchNorm statistics of its own, from the epoch's first BN_RECOMPUTE_IMAGES training
            images), and the better one competes for selection (selected_params_["weights"] says which).
        test_views: network passes averaged per image in predict_proba: 1 (the centre crop), 2 (the centre crop
            and its mirror image), 10 (ten-crop: the 4 corner crops and the centre crop, and their mirror
            images), or "auto" (the default): of (1, 2, 10) the one with the best validation (PublicTest)
            accuracy of the selected weights, ties going to fewer views; 1 without validation data. With
            crop_size None the views are the full face (1) and it with its mirror (2); 10 needs crops.
            Recorded in selected_params_["test_views"], with "val_accuracy_by_views".
        batchnorm_scale: BatchNorm layers learn a scale (False: a shift only, as in airbench).
        dirac_init: convolutions start as the identity on their first channels plus he_normal noise.
        whitening: k > 0 puts a frozen convolution of the k x k training patches' whitening filters (and their
            negatives) before the first block; 0: none.
        progressive: (size, fraction): the first `fraction` of the epochs train on the crops resampled to
            size x size pixels (fewer FLOPs per image), the rest at crop_size; None: crop_size throughout.
        flip may also be "alternate": each image mirrored in every other epoch (a random half in the first).
        schedule may also be "onecycle": linear warmup to learning_rate over warmup_epochs, linear decay to 0.
        mixed_precision: bfloat16 compute with float32 weights; jit_compile: XLA.
        deterministic: seed everything and enable TensorFlow's op determinism.
        checkpoint_dir: where to checkpoint every epoch and resume from (None: no checkpoints).
        callbacks: extra Keras callbacks passed to every model.fit call.
        verbose: Keras' fit verbosity (0 silent, 1 progress bar, 2 one line per epoch) or "auto" (the default):
            one line per epoch, on a terminal too: a per-step bar would redraw itself inside the grid's live
            progress panel (and in a log file it is one endless line).
    """

    _model_file = KERAS_FILE

    def __init__(self, *, seed=0, filters=(32, 64, 128, 256), convs_per_block=2, head="gap", dropout=0.4, epochs=60,
                 batch_size=128, optimizer="adamw", learning_rate=2e-3, weight_decay=0.01, schedule="cosine",
                 warmup_epochs=2, patience=None, label_smoothing=0.1, flip=True, shift=0.0, rotation=10.0,
                 zoom=0.1, crop_size=44, erasing=0.5, erasing_area=(0.02, 0.2), ema=None, test_views="auto",
                 batchnorm_scale=True, dirac_init=False, whitening=0, progressive=None,
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
        self.batchnorm_scale = batchnorm_scale
        self.dirac_init = dirac_init
        self.whitening = whitening
        self.progressive = progressive
        self.mixed_precision = mixed_precision
        self.jit_compile = jit_compile
        self.deterministic = deterministic
        self.checkpoint_dir = checkpoint_dir
        self.callbacks = callbacks
        self.verbose = verbose

    # --- public interface ---------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Train for `epochs` (resuming a checkpoint in checkpoint_dir), keep the epoch (and weights, trained or
        averaged) with the best single-view validation accuracy, then choose the test-time views on it
        (the epoch loop: cnn_epochs.EpochTrainer)."""
        X, y_index, weights, validation = self._validated_inputs(X, y, sample_weight, validation_data)
        self._seed_everything()
        model, state = EpochTrainer(self, X, y_index, weights, validation, len(self.classes_)).train()
        self.keras_model_ = model
        self.last_conv_layer_name_ = LAST_CONV_LAYER
        self.history_ = state["history"]
        self._record_selection(model, state, validation, len(X))
        return self

    def check_parameters(self) -> None:
        """Raise ValueError naming the first parameter with an invalid value (fit does the same first)."""
        self._check_params()

    def _validated_inputs(self, X, y, sample_weight, validation_data):
        """(images, label indices, sample weights, validation (images, label indices) or None); sets classes_."""
        self._check_params()
        X = check_images(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} images but {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes to train, got {self.classes_.tolist()}")
        weights = checked_sample_weight(sample_weight, len(X))
        validation = None
        if validation_data is not None:
            X_val, y_val = validation_data
            X_val, y_val = check_images(X_val), np.asarray(y_val)
            unknown = np.setdiff1d(y_val, self.classes_)
            if len(y_val) != len(X_val) or len(unknown):
                raise ValueError(f"validation_data: {len(X_val)} images, {len(y_val)} labels, labels not seen "
                                 f"in training: {unknown.tolist()}")
            validation = (X_val, np.searchsorted(self.classes_, y_val))
        return X, np.searchsorted(self.classes_, y), weights, validation

    def _record_selection(self, model, state, validation, n_train: int) -> None:
        """selected_params_: the kept epoch and weights, the test-time views chosen on the validation data, and
        how the training went."""
        views, views_evidence = self._choose_views(validation)
        self.selected_params_ = {
            **selection_summary(state, validated=validation is not None, ema=bool(self.ema), n_train=n_train),
            "test_views": views,
            **views_evidence,
            "input_size": self._input_size(),
            "mixed_precision": "bfloat16" if self._uses_bfloat16() else "float32",
            "n_parameters": int(model.count_params()),
        }

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: the mean of the softmax over prediction_views() views of each image."""
        check_is_fitted(self, "keras_model_")
        proba = self._network_proba(as_model_input(check_images(X)), self.prediction_views())
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_proba_single_view(self, X) -> np.ndarray:
        """Class probabilities from one view per image, the centre crop (the full face without crops): what
        epochs were compared on, and the cheapest prediction of these weights."""
        check_is_fitted(self, "keras_model_")
        proba = self._network_proba(as_model_input(check_images(X)), 1)
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

    def training_passes(self) -> int:
        """Epochs this fit() call trained: a fit resumed from a checkpoint trained only those after it, and its
        fit time covers those alone."""
        selected = self.selected_on_validation()
        return max(int(selected.get("epochs_run") or 1) - int(selected.get("resumed_from_epoch") or 0), 1)

    def training_flops(self) -> float | None:
        """FLOPs of the whole training (every epoch, a resumed one's earlier epochs too): per epoch the training
        images x 3 x the network's forward Conv/Dense FLOPs per image (fer_bench.models.flops.forward_flops);
        validation passes, BatchNorm re-estimation and test views excluded. None for a model saved before
        epochs recorded it."""
        history = self.training_history() or []
        if not history or any(record.get("train_flops") is None for record in history):
            return None
        return float(sum(record["train_flops"] for record in history))

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

    # --- views (fer_bench/models/cnn_views.py) ---------------------------------------------------------------

    def _input_size(self) -> int:
        return IMAGE_SIZE if self.crop_size is None else int(self.crop_size)

    def _choose_views(self, validation) -> tuple[int, dict]:
        """The test views predict_proba uses, chosen on the validation data (cnn_views.choose_test_views)."""
        if validation is None:
            return choose_test_views(self.test_views, self._input_size(), None, None)
        X_val = as_model_input(validation[0])
        return choose_test_views(self.test_views, self._input_size(),
                                 lambda views: self._network_proba(X_val, views), validation[1])

    def _network_proba(self, X: np.ndarray, views: int = 1, network=None) -> np.ndarray:
        """The mean softmax over `views` views of (N, 48, 48, 1) float32 images (cnn_views.mean_softmax)."""
        network = network if network is not None else self.keras_model_
        return mean_softmax(network, X, self._input_size(), views, len(self.classes_))

    def save(self, directory):
        """Write model.keras (the trained network, no optimizer state) and cnn_params.json (cnn_persistence)."""
        return save_cnn(self, directory)

    @classmethod
    def load(cls, directory) -> CNNClassifier:
        return load_cnn(cls, directory)

    # --- internals ----------------------------------------------------------------------------------------

    def _check_params(self):
        check_cnn_parameters(self.get_params(), input_size=self._input_size())

    def _keras_verbosity(self) -> int:
        return 2 if self.verbose == "auto" else int(self.verbose)

    def _seed_everything(self):
        import keras
        import tensorflow as tf

        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(int(self.seed))

    def _build_network(self, n_classes: int, centre_crop: bool = False):
        """The network of these parameters (cnn_network.build_network); with progressive resizing and without
        centre_crop, one that takes any input size."""
        size = None if self.progressive and not centre_crop else self._input_size()
        return build_network(n_classes, **self._network_options(), input_size=size, centre_crop=centre_crop)

    def _network_options(self) -> dict:
        return dict(filters=self.filters, convs_per_block=self.convs_per_block, head=self.head, dropout=self.dropout,
                    seed=self.seed, bfloat16=self._uses_bfloat16(), batchnorm_scale=bool(self.batchnorm_scale),
                    dirac_init=bool(self.dirac_init), whitening=int(self.whitening))

    def _uses_bfloat16(self) -> bool:
        if self.mixed_precision == "auto":
            return cpu_has_native_bfloat16()
        return bool(self.mixed_precision)


__all__ = ["CNNClassifier", "QUICK_PARAMS", "make_cnn"]
