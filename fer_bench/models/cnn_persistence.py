"""Saving a fitted CNNClassifier to a folder and loading it back: model.keras (the trained network without its
optimizer state) and cnn_params.json (parameters, classes, what fit selected, the training history); models
saved by earlier versions (the "tta" parameter) load with their old meaning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_bench.models.cnn_training import jsonable, load_keras_model
from fer_bench.tensorflow_import import import_tensorflow

KERAS_FILE = "model.keras"
PARAMS_FILE = "cnn_params.json"


def save_cnn(model, directory) -> Path:
    """Write a fitted CNNClassifier's model.keras and cnn_params.json into `directory`."""
    import keras

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network = model.keras_model_
    # A fresh functional wrapper around the same layers is not compiled, so no optimizer state is saved.
    keras.Model(network.input, network.output, name=network.name).save(directory / KERAS_FILE)
    params = {k: v for k, v in model.get_params().items() if k not in ("callbacks", "checkpoint_dir")}
    (directory / PARAMS_FILE).write_text(json.dumps({
        "params": jsonable(params), "classes": model.classes_.tolist(),
        "selected_params": model.selected_params_, "history": model.history_,
        "last_conv_layer_name": model.last_conv_layer_name_,
    }, indent=1))
    return directory


def load_cnn(cls, directory):
    """The `cls` (CNNClassifier or a subclass) saved in `directory` by save_cnn."""
    import_tensorflow()  # quietly, before keras imports it
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
    model.keras_model_ = load_keras_model(directory / KERAS_FILE, compile=False)
    model.classes_ = np.asarray(saved["classes"])
    model.selected_params_ = selected
    model.history_ = saved["history"]
    model.last_conv_layer_name_ = saved["last_conv_layer_name"]
    return model
