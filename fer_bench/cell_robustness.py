"""robustness.npz: a cell's probabilities on its task's PrivateTest faces under every corruption of
fer_bench.corruptions at every severity, stored beside its predictions so that the report's robustness section is
computed from the results folder alone, never from a model.

The corrupted faces are the cell's own PrivateTest faces, in the order of its predictions.csv, corrupted
deterministically per (image id, corruption, severity), so every model of a task is scored on the same corrupted
faces. The model predicts them as it predicts the clean ones (its own test-time views included): the cost is
inference only, len(CORRUPTIONS) x 5 times one PrivateTest prediction. Stored: the predicted class of every face
exactly (what accuracy, recall and the predicted shares are computed from), the probabilities to 1/255 (uint8: a
7class file is 1.3 MB instead of 2.7 MB as float16), image ids, never images. The file is a zip with fixed timestamps
(fer_bench.storage.npz_bytes), so the same probabilities give the same bytes. Format 1 files (float16 probabilities,
the predicted class their argmax) are still read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from fer_bench.errors import FerBenchError
from fer_bench.refill import RefillOutcome, load_data_argument, refill_from_models, report_refill, task_split
from fer_bench.settings import HEADLINE_SPLIT
from fer_bench.storage import ROBUSTNESS_FILE, atomic_write, npz_bytes, read_npz, read_predictions
from fer_bench.validation import COMPUTED_SUM_TOLERANCE, check_probabilities

#: bumped when the arrays of robustness.npz change incompatibly (2: uint8 probabilities + exact predicted classes)
ROBUSTNESS_FORMAT = 2
#: the formats read_cell_robustness still reads
READABLE_FORMATS = (1, 2)
#: format 2 stores probability p as round(p * PROBABILITY_STEPS) in a uint8
PROBABILITY_STEPS = 255
#: how the report's robustness tables name the clean faces (from predictions.csv) beside the corrupted ones
CLEAN, CLEAN_SEVERITY = "none", 0


@dataclass
class CellRobustness:
    """The arrays of one robustness.npz: probabilities (corruption, severity, image, class) on `split`'s faces and
    the predicted classes (corruption, severity, image), the argmax of the model's unrounded probabilities."""

    split: str
    image_ids: np.ndarray  # (n,) str, the order of the cell's predictions.csv
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    proba: np.ndarray  # (len(corruptions), len(severities), n, k) float16 or float32, rounded
    predicted: np.ndarray  # (len(corruptions), len(severities), n) uint8
    seconds: float | None = None  # the predictions' wall-clock time when just computed (not stored)

    def _index(self, corruption: str, severity: int) -> tuple[int, int]:
        try:
            return self.corruptions.index(corruption), self.severities.index(severity)
        except ValueError:
            raise FerBenchError(f"robustness.npz holds no {corruption} at severity {severity}") from None

    def predictions(self, corruption: str, severity: int) -> np.ndarray:
        """(n,) int64 predicted classes under one corruption and severity (exact, not from rounded probabilities)."""
        c, s = self._index(corruption, severity)
        return self.predicted[c, s].astype(np.int64)

    def probabilities(self, corruption: str, severity: int) -> np.ndarray:
        """(n, k) float64 probabilities under one corruption and severity, rows renormalised to sum to 1 (rounded as
        stored: their argmax may differ from `predictions` where two classes are within the rounding)."""
        c, s = self._index(corruption, severity)
        proba = self.proba[c, s].astype(np.float64)
        return proba / proba.sum(axis=1, keepdims=True)


def compute_cell_robustness(model, images: np.ndarray, image_ids, n_classes: int, *, where: str,
                            split: str = HEADLINE_SPLIT, corruptions=tuple(CORRUPTIONS),
                            severities=SEVERITIES) -> CellRobustness:
    """The model's probabilities on `images` under every corruption and severity: one predict_proba call per
    corruption, on its severities' faces together; each output checked as a cell's predictions are (FerBenchError
    naming `where`, the corruption and the rule broken)."""
    image_ids = np.asarray(image_ids).astype(str)
    n = len(images)
    proba = np.empty((len(corruptions), len(severities), n, n_classes), dtype=np.float16)
    predicted = np.empty((len(corruptions), len(severities), n), dtype=np.uint8)
    start = time.perf_counter()
    for c, name in enumerate(corruptions):
        batch = np.concatenate([corrupt(images, name, severity, image_ids) for severity in severities])
        output = check_probabilities(model.predict_proba(batch), len(batch), n_classes,
                                     where=f"{where}, predict_proba on {split} under {name}",
                                     tolerance=COMPUTED_SUM_TOLERANCE)
        output = output / output.sum(axis=1, keepdims=True)
        output = output.reshape(len(severities), n, n_classes)
        proba[c], predicted[c] = output.astype(np.float16), output.argmax(axis=-1)
    return CellRobustness(split, image_ids, tuple(corruptions), tuple(int(s) for s in severities), proba, predicted,
                          seconds=time.perf_counter() - start)


def write_cell_robustness(model, tests: dict, directory: Path, n_classes: int, *, where: str,
                          split: str = HEADLINE_SPLIT) -> CellRobustness:
    """Compute a cell's robustness probabilities and write `directory`/robustness.npz atomically. `tests`: split ->
    (images, labels, ids) of the task, in the order of the cell's predictions.csv (checked)."""
    images, _, ids = tests[split]
    splits, stored_ids, _, _ = read_predictions(Path(directory) / "predictions.csv")
    if not np.array_equal(stored_ids[splits == split], np.asarray(ids).astype(str)):
        raise FerBenchError(f"{directory}: predictions.csv holds other {split} images than the data set's")
    robustness = compute_cell_robustness(model, images, ids, n_classes, where=where, split=split)
    atomic_write(Path(directory) / ROBUSTNESS_FILE, robustness_bytes(robustness))
    return robustness


# --- the file --------------------------------------------------------------------------------------------------

def robustness_bytes(robustness: CellRobustness) -> bytes:
    return npz_bytes({"format": np.asarray(ROBUSTNESS_FORMAT), "split": np.asarray(robustness.split),
                      "image_ids": np.asarray(robustness.image_ids).astype(str),
                      "corruptions": np.asarray(robustness.corruptions).astype(str),
                      "severities": np.asarray(robustness.severities, dtype=np.int64),
                      "predicted": np.asarray(robustness.predicted, dtype=np.uint8),
                      "proba": np.rint(np.asarray(robustness.proba, dtype=np.float32) * PROBABILITY_STEPS)
                      .astype(np.uint8)})


def read_cell_robustness(directory: Path, *, n_images: int | None = None,
                         n_classes: int | None = None) -> CellRobustness:
    """A cell's robustness.npz, its shapes checked (against `n_images` and `n_classes` when given) and every
    probability finite in [0, 1]; FerBenchError in one line naming the file and what is wrong."""
    path = Path(directory) / ROBUSTNESS_FILE
    arrays = read_npz(path)
    version = int(arrays.get("format", -1))
    if version not in READABLE_FORMATS:
        raise FerBenchError(f"{path} is of another robustness format; rerun `fer-bench robustness --force`")
    needed = ("split", "image_ids", "corruptions", "severities", "proba", *(("predicted",) if version >= 2 else ()))
    missing = [name for name in needed if name not in arrays]
    if missing:
        raise FerBenchError(f"{path}: no {', '.join(missing)} (damaged file)")
    proba, ids = arrays["proba"], arrays["image_ids"]
    if version >= 2:
        if proba.dtype != np.uint8:
            raise FerBenchError(f"{path}: probabilities of type {proba.dtype}, expected uint8 (damaged file)")
        proba = proba.astype(np.float32) / PROBABILITY_STEPS
    corruptions, severities = tuple(str(c) for c in arrays["corruptions"]), tuple(int(s) for s in arrays["severities"])
    expected = (len(corruptions), len(severities), len(ids), n_classes or (proba.shape[-1] if proba.ndim else 0))
    if proba.ndim != 4 or proba.shape != expected or (n_images is not None and len(ids) != n_images):
        raise FerBenchError(f"{path}: probabilities of shape {proba.shape}, expected {expected} "
                            f"({len(corruptions)} corruptions, {len(severities)} severities, images, classes)")
    if proba.size and not (np.isfinite(proba).all() and proba.min() >= 0 and proba.max() <= 1):
        raise FerBenchError(f"{path}: probabilities outside [0, 1] or not finite (damaged file)")
    predicted = arrays["predicted"] if version >= 2 else proba.argmax(axis=-1).astype(np.uint8)
    if (predicted.dtype != np.uint8 or predicted.shape != proba.shape[:3]
            or (predicted.size and predicted.max() >= proba.shape[-1])):
        raise FerBenchError(f"{path}: predicted classes of shape {predicted.shape}, expected {proba.shape[:3]}, "
                            f"each below {proba.shape[-1]} (damaged file)")
    return CellRobustness(str(arrays["split"]), ids.astype(str), corruptions, severities, proba, predicted)


def cell_robustness(cell) -> CellRobustness | None:
    """A stored cell's robustness.npz (None when it has none), checked against the cell: the same faces of the same
    split, in the order of its predictions.csv, and its classes (FerBenchError in one line otherwise)."""
    path = Path(cell.path) / ROBUSTNESS_FILE
    if not path.is_file():
        return None
    robustness = read_cell_robustness(cell.path, n_classes=len(cell.class_names))
    ids, _, _ = cell.split(robustness.split)
    if not np.array_equal(robustness.image_ids, np.asarray(ids).astype(str)):
        raise FerBenchError(f"{path}: probabilities for other {robustness.split} faces than the cell's "
                            "predictions.csv (damaged, or copied from another cell)")
    return robustness


# --- cells computed before robustness was stored ----------------------------------------------------------------

def store_robustness(out: Path, *, force: bool = False, dataset=None) -> RefillOutcome:
    """Write robustness.npz for every finished cell of `out` without one (every cell with `force`) from its local
    fitted model and the data set's faces (fer_bench.refill.refill_from_models)."""
    def write(model, dataset, cell):
        write_cell_robustness(model, {HEADLINE_SPLIT: task_split(dataset, cell.task)}, cell.path,
                              len(cell.class_names), where=f"model {cell.model} ({cell.task}/seed{cell.seed})")

    return refill_from_models(out, ROBUSTNESS_FILE, write, purpose="corruptions", force=force, dataset=dataset)


def store_robustness_command(out: Path, *, force: bool = False, data: str | None = None) -> None:
    """`fer-bench robustness`: store_robustness, then one line per outcome."""
    outcome = store_robustness(out, force=force, dataset=load_data_argument(data))
    report_refill(outcome, out, ROBUSTNESS_FILE, "robustness")
