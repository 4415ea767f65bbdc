"""The one interface every model implements (scikit-learn estimator style).

Models take uint8 images of shape (N, 48, 48) and integer task labels 0..k-1:

    model.fit(X, y, sample_weight=None, validation_data=(X_public, y_public))
    model.predict_proba(X)  -> (N, k) probabilities, rows sum to 1
    model.predict(X)        -> labels from model.classes_
    model.get_params() / model.set_params(...)   (from sklearn.base.BaseEstimator)
    model.save(directory) / ModelClass.load(directory)

`validation_data` is PublicTest: models may use it to choose hyper-parameters, epochs or checkpoints and
must record what they chose in `selected_params_`. They never see PrivateTest.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def check_images(X) -> np.ndarray:
    """Validate model input: uint8-compatible array of shape (N, 48, 48)."""
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1:] != (48, 48):
        raise ValueError(f"expected images of shape (N, 48, 48), got {X.shape}")
    return X


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
