"""The one interface every model implements (scikit-learn estimator style).

Models take uint8 images of shape (N, 48, 48) and integer task labels 0..k-1:

    model.fit(X, y, sample_weight=None, validation_data=(X_public, y_public))
    model.predict_proba(X)  -> (N, k) probabilities, rows sum to 1
    model.predict(X)        -> labels from model.classes_
    model.get_params() / model.set_params(...)   (from sklearn.base.BaseEstimator)
    model.save(directory) / ModelClass.load(directory)

Before fit the harness calls `model.set_task(task)` (a fer_bench.tasks.Task: name, class_names, groups of
FER-2013 emotions). Models that learn the task from `y` ignore it (the default); a pretrained model whose outputs
are FER-2013's seven emotions uses it to map them onto the task's classes.

`validation_data` is PublicTest: models may use it to choose hyper-parameters, epochs or checkpoints and
must record what they chose in `selected_params_`. They never see PrivateTest.

`model.check_parameters()` (a hook; default: nothing to check) raises ValueError or TypeError when a variant's
parameters (`--set MODEL.PARAM=VALUE`) make no sense together, before any grid starts.
`model.check_resources(n_train)` (a hook; default: nothing to check) raises ValueError when fitting `n_train`
training images would not fit this machine (e.g. its memory), before the grid starts: a grid of the default
models leaves that (task, model) out with one line, a grid that names the model stops before any cell.

Capabilities: the harness asks a fitted model what it offers through the methods below, each named by a member
of fer_bench.models.capabilities.Capability (`offered(model, Capability.SALIENCY_NETWORK)`), instead of probing
attribute names. Each defaults to "not offered" (None), so a model declares what it offers by overriding them,
and a model from outside fer-bench implements only the ones it has; the tables then show "–" for the rest,
never 0.

    model.selected_on_validation()  -> dict of what fit chose on PublicTest (default: selected_params_)
    model.validation_accuracy()     -> PublicTest accuracy of the model as it predicts (chosen weights, views)
    model.training_history()        -> per-epoch records (dicts with epoch, accuracy, val_accuracy, seconds)
    model.parameter_count()         -> learned numbers the model predicts with
    model.saliency_network()        -> (Keras model on raw 0..255 (N, 48, 48, 1) images, last conv layer name)
    model.keras_network()           -> the Keras model whose FLOPs a prediction view costs
    model.prediction_views()        -> network passes per image in predict_proba (test-time views); 1 default
    model.training_passes()         -> passes over the training set the last fit made (epochs; 1 default, 0 for a
                                       model that trains nothing): the timing table's training images/s
    model.predict_proba_single_view(X) -> probabilities from one view per image (default: predict_proba)
    model.learned_pictures()        -> {"kind": ..., ...}: pictures of what the model learned (templates, HOG)
    model.stage_timings()           -> {name: number}: seconds or images/s of the stages of the last fit (e.g.
                                       descriptor extraction, vocabulary), stored as timings.json "stages"
    model.training_flops()          -> the training arithmetic of the fit, in FLOPs (a network's forward and
                                       backward passes over every training image of every epoch; validation and
                                       test views excluded), stored as timings.json "train_flops"
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

# the input check lives with the data; importable from here too, for models written against the interface
from fer_bench.data.dataset import check_images  # noqa: F401
from fer_bench.models.parameters import sklearn_parameter_count


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Base class: subclasses implement fit and predict_proba; predict, save and load come from here."""

    #: file the default save() writes inside the model directory
    _model_file = "model.joblib"

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def save(self, directory) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, directory / self._model_file)
        return directory

    @classmethod
    def load(cls, directory):
        return joblib.load(Path(directory) / cls._model_file)

    def set_task(self, task) -> None:
        """The task about to be fitted (see the module docstring); most models learn it from y."""

    def check_parameters(self) -> None:
        """Raise ValueError or TypeError when the parameters make no sense together (see the module docstring)."""

    def check_resources(self, n_train: int) -> None:
        """Raise ValueError when fitting `n_train` training images would not fit this machine (see the module
        docstring)."""

    # --- capabilities: "not offered" unless a model overrides them ----------------------------------------

    def selected_on_validation(self) -> dict:
        return dict(getattr(self, "selected_params_", None) or {})

    def validation_accuracy(self) -> float | None:
        return None

    def training_history(self) -> list[dict] | None:
        return None

    def parameter_count(self) -> int | None:
        return None

    def saliency_network(self):
        return None

    def keras_network(self):
        return None

    def prediction_views(self) -> int:
        return 1

    def training_passes(self) -> int:
        return 1

    def predict_proba_single_view(self, X) -> np.ndarray:
        return self.predict_proba(X)

    def learned_pictures(self) -> dict | None:
        return None

    def stage_timings(self) -> dict | None:
        return None

    def training_flops(self) -> float | None:
        return None


class SklearnImageClassifier(ImageClassifier):
    """Base class of models built from fitted scikit-learn estimators (the classic baselines): their parameter
    count is the size of the fitted arrays they hold, their PublicTest accuracy the one fit recorded in
    selected_params_["validation_accuracy"]."""

    def validation_accuracy(self) -> float | None:
        return (getattr(self, "selected_params_", None) or {}).get("validation_accuracy")

    def parameter_count(self) -> int | None:
        return sklearn_parameter_count(self)["n_parameters"] or None


def save_model(model, directory) -> Path:
    """Save any registered-interface model and note its class so load_model can find it."""
    directory = Path(directory)
    model.save(directory)
    cls = type(model)
    (directory / "estimator.json").write_text(json.dumps({"class": f"{cls.__module__}:{cls.__qualname__}"}))
    return directory


def load_model(directory):
    directory = Path(directory)
    spec = json.loads((directory / "estimator.json").read_text())["class"]
    module, _, qualname = spec.partition(":")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls.load(directory)
