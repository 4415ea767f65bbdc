"""The CNN's epoch loop: one network trained under a CNNClassifier's parameters, epoch by epoch.

    trainer = EpochTrainer(estimator, X, y_index, weights, validation, n_classes)
    model, state = trainer.train()     # the kept weights loaded; state["history"] has one record per epoch

CNNClassifier.fit validates the inputs and records what was chosen; what happens between is here: a new network
or the checkpoint's (resume), each epoch's input pipeline (augmentation keyed by seed, epoch and batch; the
epoch's input size with progressive resizing), the epoch's training and counted FLOPs, the moving average's
evaluation with BatchNorm statistics of its own, the selection of the kept epoch, and a checkpoint per epoch.
The estimator stays the one place that holds parameters: the trainer reads them from it and keeps nothing
after train() returns.
"""

from __future__ import annotations

import time

import numpy as np

from fer_bench.models.cnn_input import as_model_input, make_augmenter, training_dataset, validation_dataset
from fer_bench.models.cnn_network import build_network, set_whitening, whitening_filters
from fer_bench.models.cnn_selection import PLATEAU_FACTOR, improved_now, new_training_state, update_selection
from fer_bench.models.cnn_training import (
    Checkpoint,
    accuracy_of,
    averaged_weights,
    compile_network,
    current_learning_rate,
    derive_seed,
    keep_trained_weights_at_fit_end,
    overwrite_with_average,
    recompute_batchnorm_statistics,
    training_fingerprint,
)
from fer_bench.models.cnn_views import centre_crop

# The moving average of the weights gets BatchNorm statistics of its own from this many training images (the
# epoch's first augmented batches): ~2.5% of an epoch's arithmetic on FER-2013; a check on an epoch-4
# checkpoint read 39.5% PublicTest with 2,048 crops against 17.2% with the trained weights' statistics.
BN_RECOMPUTE_IMAGES = 2048


def train_flops_per_image(estimator, n_classes: int, size: int) -> int:
    """Forward and backward FLOPs of one size x size training image (3 x the forward pass), counted on the
    estimator's network built at that size."""
    from fer_bench.models.flops import TRAINING_FLOPS_PER_FORWARD, forward_flops

    return TRAINING_FLOPS_PER_FORWARD * forward_flops(
        build_network(n_classes, **estimator._network_options(), input_size=size))


class EpochTrainer:
    """Trains one network for `estimator` (a CNNClassifier) on label indices y_index with sample weights;
    validation is (images, label indices) or None."""

    def __init__(self, estimator, X, y_index, weights, validation, n_classes: int):
        self.estimator = estimator
        self.X, self.y_index, self.weights, self.validation = X, y_index, weights, validation
        self.n_classes = n_classes
        self._flops_by_size: dict[int, int] = {}  # building a network to count it takes a fraction of a second

    def train(self):
        """(model, state): the epochs not yet trained (all, or those after the checkpoint's), then the kept
        weights loaded; with progressive resizing the network at the crop size, holding the same weights."""
        est, validation = self.estimator, self.validation
        model, state, best_weights, checkpoint = self.start_or_resume()
        keep_trained_weights_at_fit_end(model)
        # Epochs are compared on one view, the centre crop (the full face without crops): cheap every epoch.
        validation_ds = None
        if validation is not None:
            validation_ds = validation_dataset(centre_crop(validation[0], est._input_size()), validation[1],
                                               self.n_classes)
        while not state["finished"] and state["epoch"] < est.epochs:
            candidates = self.train_epoch(model, state, validation_ds)
            improved = self.select(model, state, candidates) if validation is not None else False
            if improved:
                _, _, candidate_weights = improved
                best_weights = candidate_weights if candidate_weights is not None else model.get_weights()
            state["finished"] = state["epoch"] >= est.epochs or state["stopped_early"]
            if checkpoint:
                checkpoint.save(model, state, best_weights if improved_now(state) else None)

        if best_weights is not None:
            model.set_weights(best_weights)
        if est.progressive:
            model = self.fixed_size_copy(model)  # predicts, saves and counts FLOPs at crop_size
        elif est.ema and validation is None and state["epoch"] > 0:
            # without validation data the last epoch's average is kept, with statistics of its own
            overwrite_with_average(model)
            recompute_batchnorm_statistics(model, self.batchnorm_batches(state["epoch"] - 1))
        return model, state

    def start_or_resume(self):
        """(model, state, best weights so far, checkpoint or None): a new network, or the checkpoint's."""
        est = self.estimator
        fingerprint = training_fingerprint(est.get_params(),
                                           (self.X, self.y_index, self.weights, *(self.validation or ())))
        checkpoint = Checkpoint(est.checkpoint_dir, fingerprint) if est.checkpoint_dir else None
        state = checkpoint.load_state() if checkpoint else None
        if state is None:
            model = est._build_network(self.n_classes)
            if est.whitening:
                set_whitening(model, whitening_filters(self.X, est.whitening, est.seed))
            self.compile(model, int(np.ceil(len(self.X) / est.batch_size)))
            return model, new_training_state(), None, checkpoint
        model = checkpoint.load_model(state)
        best_weights = checkpoint.load_best_weights(state, model)
        if not state["finished"]:
            state["resumed_from_epoch"] = state["epoch"]
        return model, state, best_weights, checkpoint

    def train_epoch(self, model, state, validation_ds) -> list:
        """One epoch of training; its record goes into state["history"]. Returns the selection candidates:
        (kind, validation accuracy, weights or None for the model's current ones), the trained weights first,
        then (with ema) their moving average."""
        import keras

        est, validation, epoch = self.estimator, self.validation, state["epoch"]
        self.reseed_layers(model, epoch)
        train_ds = self.training_dataset(epoch)
        start = time.perf_counter()
        # epochs=est.epochs and a stop after this one, so Keras' progress line reads "Epoch k/epochs".
        stop_after_epoch = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: setattr(model, "stop_training", True))
        result = model.fit(train_ds, validation_data=validation_ds, initial_epoch=epoch, epochs=est.epochs,
                           verbose=est._keras_verbosity(), callbacks=[*(est.callbacks or []), stop_after_epoch],
                           shuffle=False)
        logs = {k: float(v[-1]) for k, v in result.history.items()}
        record = {"epoch": epoch + 1, "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
                  "val_loss": logs.get("val_loss"), "val_accuracy": logs.get("val_accuracy")}
        candidates = [("trained", record["val_accuracy"], None)]
        if est.ema and validation is not None:
            with averaged_weights(model, self.batchnorm_batches(epoch)):
                record["ema_val_accuracy"] = accuracy_of(est._network_proba(as_model_input(validation[0]), 1, model),
                                                         validation[1])
                ema_weights = model.get_weights()
            candidates.append(("ema", record["ema_val_accuracy"], ema_weights))
        seconds = time.perf_counter() - start
        size = self.epoch_input_size(epoch)
        if size not in self._flops_by_size:
            self._flops_by_size[size] = train_flops_per_image(est, self.n_classes, size)
        record.update(lr=current_learning_rate(model), seconds=seconds,
                      images_per_s=len(self.X) / seconds if seconds > 0 else None,
                      train_flops=len(self.X) * self._flops_by_size[size])
        state["history"].append(record)
        state["epoch"] = epoch + 1
        return candidates

    def select(self, model, state, candidates):
        """cnn_selection.update_selection, and the plateau schedule's rate reduction it calls for. Returns the
        candidate when it improved on the best so far."""
        est = self.estimator
        improved, reduce_rate = update_selection(state, candidates, plateau=est.schedule == "plateau",
                                                 patience=est.patience)
        if reduce_rate:
            model.optimizer.learning_rate = current_learning_rate(model) * PLATEAU_FACTOR
        return improved

    def epoch_input_size(self, epoch: int) -> int:
        """The side of the training images in `epoch`: progressive's smaller size in its first epochs."""
        est = self.estimator
        if est.progressive:
            size, fraction = est.progressive
            if epoch < round(float(fraction) * int(est.epochs)):
                return int(size)
        return est._input_size()

    def training_dataset(self, epoch: int):
        """The epoch's augmented training batches (images, one-hot labels, weights)."""
        est = self.estimator
        augment = make_augmenter(est.flip, est.shift, est.rotation, est.zoom, crop_size=est.crop_size,
                                 erasing=est.erasing, erasing_area=est.erasing_area,
                                 output_size=self.epoch_input_size(epoch))
        return training_dataset(self.X, self.y_index, self.weights, self.n_classes, epoch, seed=int(est.seed),
                                batch_size=int(est.batch_size), augment=augment,
                                alternate_flips=est.flip == "alternate")

    def batchnorm_batches(self, epoch: int):
        """The first BN_RECOMPUTE_IMAGES images of the epoch's training batches (augmented as trained): what the
        averaged weights' BatchNorm statistics are recomputed on."""
        batches = int(np.ceil(min(BN_RECOMPUTE_IMAGES, len(self.X)) / int(self.estimator.batch_size)))
        return self.training_dataset(epoch).take(batches)

    def reseed_layers(self, model, epoch: int):
        """Set every random layer's generator from (seed, epoch), so an epoch's dropout does not depend on
        earlier epochs (the generators' state is not part of a saved model)."""
        for i, variable in enumerate(v for v in model.variables if "seed_generator_state" in v.path):
            variable.assign(np.array([derive_seed(self.estimator.seed, epoch, i), 0], dtype=variable.dtype))

    def compile(self, model, steps_per_epoch: int):
        est = self.estimator
        compile_network(model, optimizer=est.optimizer, learning_rate=est.learning_rate,
                        weight_decay=est.weight_decay, schedule=est.schedule, warmup_epochs=est.warmup_epochs,
                        total_steps=int(est.epochs) * steps_per_epoch, steps_per_epoch=steps_per_epoch,
                        ema=est.ema, label_smoothing=est.label_smoothing, jit_compile=bool(est.jit_compile))

    def fixed_size_copy(self, model):
        """The network trained at several input sizes as one at crop_size (same weights), uncompiled: what
        predicts, is saved and has its FLOPs counted."""
        est = self.estimator
        fixed = build_network(self.n_classes, **est._network_options(), input_size=est._input_size())
        fixed.set_weights(model.get_weights())
        return fixed


__all__ = ["BN_RECOMPUTE_IMAGES", "EpochTrainer", "train_flops_per_image"]
