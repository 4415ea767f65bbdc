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

import io
import json
import sys
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from fer_bench import saliency
from fer_bench.errors import FerBenchError
from fer_bench.models.capabilities import Capability, offered
from fer_bench.settings import HEADLINE_SPLIT
from fer_bench.storage import MAPS_FILE, atomic_write, read_predictions

#: bumped when the arrays of maps.npz change incompatibly
MAPS_FORMAT = 1
SALIENCY_FACES_PER_CLASS = 12
#: example faces the report shows: one per class, at least this many in all; the cells map twice as many
#: candidates per class, at least MIN_EXAMPLE_CANDIDATES (gradient maps are the bulk of a file: ~5 KB a face)
EXAMPLE_FACES = 6
MIN_EXAMPLE_CANDIDATES = 4
ERROR_FACES = 6
#: zip member timestamp: fixed, so rewriting the same maps gives the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


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
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_cell_maps(directory: Path) -> CellMaps:
    """A cell's maps.npz (FerBenchError when it cannot be read or is of another format)."""
    path = Path(directory) / MAPS_FILE
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FerBenchError(f"cannot read {path}: {exc}") from None
    if int(arrays.pop("format", -1)) != MAPS_FORMAT:
        raise FerBenchError(f"{path} is of another maps format; rerun `fer-bench maps --force`")
    known = {f.name for f in fields(CellMaps)}
    values = {name: value for name, value in arrays.items() if name in known}
    values["split"] = str(values["split"])
    if "hog_settings" in values:
        values["hog_settings"] = json.loads(str(values["hog_settings"]))
    return CellMaps(**values)


# --- cells computed before maps were stored --------------------------------------------------------------------

@dataclass
class MapsOutcome:
    """What `store_maps` did: the cells it wrote maps.npz for, those without a local model to compute them from,
    and every cell it verified (the caller names those without integrity records)."""

    written: list[Path]
    without_model: list[Path]
    cells: list


def store_maps(out: Path, *, force: bool = False, dataset=None) -> MapsOutcome:
    """Write maps.npz for every finished cell of `out` without one (every cell with `force`) from its local
    fitted model (`<cell>/model/`) and the data set (`dataset`, else the one the manifests name, re-loaded and
    checked), and update its record in the cell's manifest. Every cell is verified first (its records, its
    structure, its data set against fer-bench.json; a maps.npz about to be rewritten is not checked), so a damaged
    or foreign cell stops the command before anything is written."""
    from fer_bench.data.reference import loaded_or_reloaded
    from fer_bench.models.base import load_model
    from fer_bench.plugins import load_recorded_plugins
    from fer_bench.staging import folder_lock
    from fer_bench.storage import check_cell_data, check_results_folder, list_cells, read_cell, record_files

    info = check_results_folder(out)
    load_recorded_plugins(out)  # a plugin model's saved class needs its module
    outcome = MapsOutcome([], [], [])
    with folder_lock(out):  # a run starting meanwhile must not take this command's .tmp files for leftovers
        to_write = []
        for path in list_cells(out):
            has_model = (path / "model" / "estimator.json").is_file()
            rewrite = has_model and (force or not (path / MAPS_FILE).is_file())
            cell = read_cell(path, unchecked=(MAPS_FILE,) if rewrite else ())
            check_cell_data(cell, info, out)
            outcome.cells.append(cell)
            if rewrite:
                to_write.append(cell)
            elif not (path / MAPS_FILE).is_file():
                outcome.without_model.append(path)
        for cell in to_write:
            try:
                dataset = loaded_or_reloaded(dataset, cell.manifest.dataset)
            except FerBenchError as exc:
                raise FerBenchError(f"maps need the data set's faces: {exc}") from None
            write_cell_maps(load_model(cell.path / "model"), {HEADLINE_SPLIT: task_split(dataset, cell.task)},
                            cell.path)
            if cell.manifest.files is not None:
                # after maps.npz: killed in between, the record differs and `maps --force` (which does not check
                # the maps.npz it rewrites) mends it
                record_files(cell.path, [MAPS_FILE])
            outcome.written.append(cell.path)
    return outcome


def task_split(dataset, task_name: str, split: str = HEADLINE_SPLIT) -> tuple:
    """(images, labels, ids) of a task's `split`, in the order the cell's predictions.csv stores them."""
    from fer_bench.tasks import get_task

    part = dataset.split(split)
    return get_task(task_name).select(part.images, part.labels, part.ids)


def store_maps_command(out: Path, *, force: bool = False, data: str | None = None) -> None:
    """`fer-bench maps`: store_maps, then one line per outcome."""
    dataset = None
    if data is not None:
        from fer_bench.data import load_dataset

        dataset = load_dataset(data)
    from fer_bench.storage import unrecorded_note

    outcome = store_maps(out, force=force, dataset=dataset)
    print(f"maps: {len(outcome.written)} maps.npz written under {Path(out) / 'runs'}")
    if outcome.without_model:
        names = ", ".join(str(cell.relative_to(Path(out) / "runs")) for cell in outcome.without_model)
        print(f"maps: {len(outcome.without_model)} cells without maps.npz have no local model/ (run them here with "
              f"`fer-bench run --force`, or `fer-bench maps` where they were computed): {names}", file=sys.stderr)
    note = unrecorded_note(outcome.cells)
    if note:
        print(note, file=sys.stderr)
