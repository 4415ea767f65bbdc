"""maps.npz: what the report's saliency figures need from a cell's fitted model, stored beside its predictions so
that the report draws them from the results folder and the data set's faces alone, never from a model.

Which faces a cell maps is decided from what the cell knows, so every cell of a task maps the same faces:

* the *saliency faces*: up to SALIENCY_FACES_PER_CLASS headline-split faces per class, evenly spaced in data-set
  order (labels alone), with every model's occlusion map for the true class; the report averages them per class;
* the *example candidates*: a few of those per class, again evenly spaced (example_candidates), with the gradient
  maps of a model that offers a network; the report picks its example faces among them;
* the cell's own *error faces*: its ERROR_FACES most confident headline-split mistakes (classes in turn, from the
  probabilities it stored in predictions.csv), with occlusion maps for the true and for the predicted class and,
  with a network, Grad-CAM for both.

Image ids are stored, never the images. Gradient maps are stored scaled to 0..1 and quantised to uint8 (the
figures draw them with 256-colour maps); occlusion maps and templates as float32. The file is a zip with fixed
timestamps, so the same maps give the same bytes (np.load reads it like np.savez_compressed's files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from fer_bench import saliency
from fer_bench.errors import FerBenchError
from fer_bench.models.capabilities import Capability, offered
from fer_bench.refill import RefillOutcome, load_data_argument, refill_from_models, report_refill, task_split
from fer_bench.settings import HEADLINE_SPLIT
from fer_bench.storage import MAPS_FILE, atomic_write, npz_bytes, read_npz, read_predictions

#: bumped when the arrays of maps.npz change incompatibly
MAPS_FORMAT = 1
SALIENCY_FACES_PER_CLASS = 12
#: example faces the report shows: one per class, at least this many in all; the cells map twice as many
#: candidates per class, at least MIN_EXAMPLE_CANDIDATES (gradient maps are the bulk of a file: ~5 KB a face)
EXAMPLE_FACES = 6
MIN_EXAMPLE_CANDIDATES = 4
ERROR_FACES = 6


@dataclass
class CellMaps:
    """The arrays of one maps.npz. Faces are image ids of `split`; None: the model does not offer it."""

    split: str
    saliency_ids: np.ndarray  # (n,) str
    occlusion: np.ndarray  # (n, 48, 48) float32, true class
    example_ids: np.ndarray  # (c,) str, some of saliency_ids
    error_ids: np.ndarray  # (e,) str
    error_predicted: np.ndarray  # (e,) int64, the class the cell predicted
    error_occlusion_true: np.ndarray  # (e, 48, 48) float32
    error_occlusion_predicted: np.ndarray  # (e, 48, 48) float32
    gradient: np.ndarray | None = None  # (c, 48, 48) uint8: |gradient| scaled to its 99th percentile, x255
    smoothgrad: np.ndarray | None = None  # (c, 48, 48) uint8, scaled the same way
    gradcam: np.ndarray | None = None  # (c, 48, 48) uint8: Grad-CAM (0..1) x255, true class
    error_gradcam_true: np.ndarray | None = None  # (e, 48, 48) uint8
    error_gradcam_predicted: np.ndarray | None = None  # (e, 48, 48) uint8
    templates: np.ndarray | None = None  # (k, 48, 48) float32, learned_pictures()["templates"]
    hog_settings: dict | None = None  # learned_pictures()["hog_settings"]

    @property
    def has_network_maps(self) -> bool:
        return self.gradient is not None


# --- which faces ---------------------------------------------------------------------------------------------

def class_faces(labels: np.ndarray, n_classes: int, per_class: int) -> np.ndarray:
    """Evenly spaced (deterministic) indices of each class's faces, up to `per_class` each."""
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen.append(members[np.unique(np.linspace(0, len(members) - 1, min(per_class, len(members)))
                                            .round().astype(int))])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def example_candidates(labels: np.ndarray, n_classes: int, saliency_faces: np.ndarray) -> np.ndarray:
    """The saliency faces the report may show as examples: evenly spaced among each class's saliency faces."""
    per_class = max(MIN_EXAMPLE_CANDIDATES, 2 * int(np.ceil(EXAMPLE_FACES / n_classes)))
    return saliency_faces[class_faces(labels[saliency_faces], n_classes, per_class)]


def pick(candidates: np.ndarray, labels: np.ndarray, score: np.ndarray, limit: int) -> np.ndarray:
    """Up to `limit` of the candidate indices, classes taken in turn, highest score first within a class."""
    by_class = []
    for c in np.unique(labels[candidates]):
        members = candidates[labels[candidates] == c]
        by_class.append(list(members[np.lexsort((members, -score[members]))]))
    picked = []
    while len(picked) < limit and any(by_class):
        for members in by_class:
            if members and len(picked) < limit:
                picked.append(members.pop(0))
    return np.array(picked, dtype=np.int64)


def most_confident_mistakes(labels: np.ndarray, proba: np.ndarray, limit: int = ERROR_FACES) -> np.ndarray:
    """Indices of up to `limit` mistakes, classes in turn, most confident first."""
    return pick(np.flatnonzero(proba.argmax(axis=1) != labels), labels, proba.max(axis=1), limit)


# --- computing -------------------------------------------------------------------------------------------------

def _quantised(maps: np.ndarray) -> np.ndarray:
    """0..1 maps as uint8 0..255."""
    return np.round(np.clip(maps, 0.0, 1.0) * 255).astype(np.uint8)


def compute_cell_maps(model, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, proba: np.ndarray,
                      split: str = HEADLINE_SPLIT) -> CellMaps:
    """Every map of one cell on its task's `split` (images, labels, ids in data-set order) from the fitted
    model and the probabilities the cell stored for those images."""
    labels = np.asarray(labels, dtype=np.int64)
    chosen = class_faces(labels, proba.shape[1], SALIENCY_FACES_PER_CLASS)
    candidates = example_candidates(labels, proba.shape[1], chosen)
    errors = most_confident_mistakes(labels, proba)
    predicted = proba.argmax(axis=1)[errors]
    error_faces = images[errors]
    # one occlusion pass: the saliency faces (true class), the error faces for the true, then the predicted class
    occlusion = saliency.occlusion_map(model.predict_proba, np.concatenate([images[chosen], error_faces, error_faces]),
                                       np.concatenate([labels[chosen], labels[errors], predicted])).astype(np.float32)
    n, e = len(chosen), len(errors)
    ids = np.asarray(ids).astype(str)
    maps = CellMaps(split, ids[chosen], occlusion[:n], ids[candidates], ids[errors], predicted.astype(np.int64),
                    occlusion[n:n + e], occlusion[n + e:])
    network = offered(model, Capability.SALIENCY_NETWORK)
    if network is not None:
        _add_network_maps(maps, network, images[candidates], labels[candidates], error_faces, labels[errors],
                          predicted)
    pictures = offered(model, Capability.LEARNED_PICTURES) or {}
    if "templates" in pictures:
        maps.templates = np.asarray(pictures["templates"], dtype=np.float32)
    if "hog_settings" in pictures:
        maps.hog_settings = json.loads(json.dumps(pictures["hog_settings"]))  # plain JSON values, as stored
    return maps


def _add_network_maps(maps: CellMaps, network, faces, targets, error_faces, error_true, error_predicted) -> None:
    """The gradient maps of a model offering a Keras network: raw gradient and SmoothGrad (each scaled to its
    99th percentile), Grad-CAM for the true class; Grad-CAM of the error faces for the true and predicted class."""
    keras_model, conv = network

    def cam(images, classes):
        return _quantised(saliency.grad_cam(keras_model, images, classes, conv_layer_name=conv))

    maps.gradient = _quantised(saliency.normalise_map(saliency.input_gradients(keras_model, faces, targets)))
    maps.smoothgrad = _quantised(saliency.normalise_map(saliency.smoothgrad(keras_model, faces, targets, seed=0)))
    maps.gradcam = cam(faces, targets)
    maps.error_gradcam_true = cam(error_faces, error_true)
    maps.error_gradcam_predicted = cam(error_faces, error_predicted)


def write_cell_maps(model, tests: dict, directory: Path, split: str = HEADLINE_SPLIT) -> Path:
    """Compute a cell's maps and write `directory`/maps.npz atomically. `tests`: split -> (images, labels, ids)
    of the task, in the order of the cell's predictions.csv, whose probabilities choose the error faces."""
    images, labels, ids = tests[split]
    splits, stored_ids, _, proba = read_predictions(Path(directory) / "predictions.csv")
    proba = proba[splits == split]
    if not np.array_equal(stored_ids[splits == split], np.asarray(ids).astype(str)):
        raise FerBenchError(f"{directory}: predictions.csv holds other {split} images than the data set's")
    path = Path(directory) / MAPS_FILE
    atomic_write(path, maps_bytes(compute_cell_maps(model, images, labels, ids, proba, split)))
    return path


# --- the file --------------------------------------------------------------------------------------------------

def maps_bytes(maps: CellMaps) -> bytes:
    """maps.npz's bytes: one .npy member per array (absent maps left out), sorted, with fixed timestamps."""
    arrays = {"format": np.asarray(MAPS_FORMAT), "split": np.asarray(maps.split)}
    for f in fields(CellMaps):
        value = getattr(maps, f.name)
        if value is None or f.name == "split":
            continue
        arrays[f.name] = np.asarray(json.dumps(value, sort_keys=True)) if f.name == "hog_settings" else value
    return npz_bytes(arrays)


def read_cell_maps(directory: Path) -> CellMaps:
    """A cell's maps.npz (FerBenchError when it cannot be read or is of another format)."""
    path = Path(directory) / MAPS_FILE
    arrays = read_npz(path)
    if int(arrays.pop("format", -1)) != MAPS_FORMAT:
        raise FerBenchError(f"{path} is of another maps format; rerun `fer-bench maps --force`")
    known = {f.name for f in fields(CellMaps)}
    values = {name: value for name, value in arrays.items() if name in known}
    values["split"] = str(values["split"])
    if "hog_settings" in values:
        values["hog_settings"] = json.loads(str(values["hog_settings"]))
    return CellMaps(**values)


# --- cells computed before maps were stored --------------------------------------------------------------------

def store_maps(out: Path, *, force: bool = False, dataset=None) -> RefillOutcome:
    """Write maps.npz for every finished cell of `out` without one (every cell with `force`) from its local
    fitted model and the data set's faces (fer_bench.refill.refill_from_models)."""
    def write(model, dataset, cell):
        write_cell_maps(model, {HEADLINE_SPLIT: task_split(dataset, cell.task)}, cell.path)

    return refill_from_models(out, MAPS_FILE, write, purpose="maps", force=force, dataset=dataset)


def store_maps_command(out: Path, *, force: bool = False, data: str | None = None) -> None:
    """`fer-bench maps`: store_maps, then one line per outcome."""
    outcome = store_maps(out, force=force, dataset=load_data_argument(data))
    report_refill(outcome, out, MAPS_FILE, "maps")
