"""One cell of the grid: fit a model on a task's Training images with one seed, predict PublicTest and PrivateTest
(and PrivateTest under every corruption), time it, compute its saliency maps and write its files (predictions.csv,
params.json, robustness.npz, timings.json, model/, maps.npz, manifest.json last, recording the others' size, sha256
and rows) into a folder.

This module knows nothing of where a cell runs: the executors (fer_bench.executors) are handed `compute_cell`
and run it in this process or in a worker's child process (fer_bench.cell_process), and store the folder it
wrote atomically.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fer_bench.cell_maps import write_cell_maps
from fer_bench.cell_robustness import write_cell_robustness
from fer_bench.data.dataset import Dataset
from fer_bench.data.reference import DatasetReference
from fer_bench.manifest import MANIFEST_VERSION, Manifest
from fer_bench.measure import MatmulPeaks, timing_measurements
from fer_bench.models import make_model
from fer_bench.models.base import save_model
from fer_bench.models.capabilities import Capability, Hook, interface_method, offered
from fer_bench.provenance import environment_info
from fer_bench.storage import (
    MANIFEST_FILE,
    PREDICTION_SPLITS,
    atomic_write,
    dumps_json,
    file_records,
    manifest_json,
    predictions_csv,
)
from fer_bench.tasks import get_task, prepare_task_data
from fer_bench.validation import COMPUTED_SUM_TOLERANCE, check_predictions, check_probabilities


def _load_average() -> float | None:
    """The 1-minute load average (runnable processes), None where the system does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _predict_timed(predict_proba, X):
    """(the model's output as it returned it, seconds)."""
    start = time.perf_counter()
    proba = predict_proba(X)
    seconds = time.perf_counter() - start
    return proba, seconds


def _checked_probabilities(proba, n_images: int, n_classes: int, where: str) -> np.ndarray:
    """A model's output checked by fer_bench.validation (FerBenchError naming `where` and the rule broken), its
    rows renormalised to sum to 1 exactly."""
    proba = check_probabilities(proba, n_images, n_classes, where=where, tolerance=COMPUTED_SUM_TOLERANCE)
    return proba / proba.sum(axis=1, keepdims=True)


def compute_cell(dataset: Dataset, task_name: str, model_name: str, seed: int, directory: Path, *,
                 quick: bool = False, command: str = "", reference: DatasetReference | None = None,
                 peaks: MatmulPeaks | None = None, checkpoints: Path | None = None,
                 execution: dict | None = None, robustness: bool = True) -> Path:
    """Fit and evaluate one cell, writing its files (predictions.csv, params.json, model/, robustness.npz,
    timings.json, maps.npz, manifest.json last) into `directory`, which must not exist yet. `reference`: the data
    set as the manifest records it (default: `dataset` as loaded, without rgb_to_gray); `checkpoints`: where a
    CNN keeps its per-epoch checkpoints, so an interrupted training resumes; `execution`: how and where the cell
    ran (executor, worker), for the manifest; `robustness`: False stores the cell without robustness.npz (`fer-bench
    robustness` fills it later from model/)."""
    task = get_task(task_name)
    data = prepare_task_data(dataset, task, seed=seed)
    directory = Path(directory)
    directory.mkdir(parents=True)

    model = make_model(model_name, seed=seed, quick=quick)
    tell_task(model, task)
    if checkpoints is not None and "checkpoint_dir" in model.get_params():
        # a parameter, so it is part of the interface, not a probe
        model.set_params(checkpoint_dir=str(checkpoints))
    started = datetime.now(timezone.utc)
    load_at_start = _load_average()
    fit_start = time.perf_counter()
    model.fit(data.X_train, data.y_train, sample_weight=data.sample_weight,
              validation_data=data.tests["PublicTest"][:2])
    fit_seconds = time.perf_counter() - fit_start

    # the machine's load around the fit: above its cores, the fit time was shared with other work
    splits, ids, labels, probas, timings = [], [], [], [], {
        "fit_seconds": fit_seconds, "load_average_fit": [load_at_start, _load_average()]}
    for split in PREDICTION_SPLITS:
        X, y, image_ids = data.tests[split]
        proba, seconds = _predict_timed(model.predict_proba, X)
        proba = _checked_probabilities(proba, len(X), task.n_classes,
                                       f"model {model_name} ({task_name}/seed{seed}), {split} predict_proba")
        splits += [split] * len(X)
        ids.append(image_ids)
        labels.append(y)
        probas.append(proba)
        timings[f"predict_seconds_{split}"] = seconds
        timings[f"predict_images_per_s_{split}"] = len(X) / seconds if seconds > 0 else None
    timings.update(_single_view_timing(model, data.tests["PrivateTest"][0]))
    stages = offered(model, Capability.STAGE_TIMINGS)
    if stages:  # the model's own stages of fit (descriptors, vocabulary, SVM ...), as it measured them
        timings["stages"] = dict(stages)
    flops = offered(model, Capability.TRAINING_FLOPS)
    if flops is not None:  # counted training arithmetic: the report's accuracy-vs-compute comparison
        timings["train_flops"] = float(flops)
    timings["n_train"] = len(data.X_train)
    passes = offered(model, Capability.TRAINING_PASSES)
    passes = 1 if passes is None else int(passes)  # a model from outside the interface: one pass
    timings["train_images_per_s"] = len(data.X_train) * passes / fit_seconds if fit_seconds > 0 and passes else None

    ids, labels, probas = np.concatenate(ids), np.concatenate(labels), np.concatenate(probas)
    # the rules a stored cell is read back with (labels, every split's rows), before anything is written
    check_predictions(np.asarray(splits), labels, probas, task.n_classes, PREDICTION_SPLITS,
                      where=f"model {model_name} ({task_name}/seed{seed})", tolerance=COMPUTED_SUM_TOLERANCE)
    atomic_write(directory / "predictions.csv", predictions_csv(splits, ids, labels, probas, task.class_names))
    atomic_write(directory / "params.json", dumps_json(stored_params(model)))
    save_model(model, directory / "model")
    # Serving cost (single-image latency, size on disk, memory) and, for Keras, FLOP/s against the matmul peak.
    counted = timings["train_flops"] / fit_seconds / 1e9 if flops is not None and fit_seconds > 0 else None
    timings.update(timing_measurements(model, data.tests["PrivateTest"][0], directory / "model",
                                       train_images_per_s=timings["train_images_per_s"],
                                       counted_train_gflops=counted, peaks=peaks))
    # the report's robustness section: the same faces corrupted every way, predicted as the clean ones are
    if robustness:
        stored = write_cell_robustness(model, data.tests, directory, task.n_classes,
                                       where=f"model {model_name} ({task_name}/seed{seed})")
        timings["robustness_seconds"] = stored.seconds
    atomic_write(directory / "timings.json", dumps_json(timings))
    write_cell_maps(model, data.tests, directory)  # the report's saliency figures, drawn without the model
    manifest = Manifest(
        task=task_name, model=model_name, seed=seed, quick=quick, class_names=tuple(task.class_names),
        balancing=task.balancing, n_train_before_balancing=data.n_train_before_balancing,
        n_train=len(data.X_train), train_class_counts=tuple(data.train_class_counts),
        dataset=reference or DatasetReference.of(dataset), command=command,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment_info(), execution=execution or None, version=MANIFEST_VERSION,
        files=file_records(directory))  # every file above is written: its size, sha256 and rows, for read_cell
    atomic_write(directory / MANIFEST_FILE, manifest_json(manifest))  # last: a cell with a manifest is complete
    return directory


def tell_task(model, task) -> None:
    """model.set_task(task) before fit (fer_bench.models.base); a model written without fer-bench's base class
    may not have the hook and learns the task from y."""
    set_task = interface_method(model, Hook.SET_TASK)
    if set_task is not None:
        set_task(task)


def _single_view_timing(model, X) -> dict:
    """Test-time views per image of the model as it predicts and, when more than one, the throughput of one view
    on the same images: the timing table shows the chosen configuration's cost beside the single view's."""
    views = offered(model, Capability.PREDICTION_VIEWS) or 1
    timing = {"prediction_views": int(views)}
    single_view = interface_method(model, Capability.PREDICT_PROBA_SINGLE_VIEW)
    if views > 1 and single_view is not None:
        _, seconds = _predict_timed(single_view, X)
        timing["predict_images_per_s_single_view"] = len(X) / seconds if seconds > 0 else None
    return timing


def stored_params(model) -> dict:
    """params.json: the model's parameters, what it chose on PublicTest, its PublicTest accuracy as it predicts
    and its per-epoch history, each as the model offers them (absent when it does not)."""
    selected = offered(model, Capability.SELECTED_ON_VALIDATION) or getattr(model, "selected_params_", {})
    stored = {"params": {k: v for k, v in model.get_params().items() if k != "checkpoint_dir"}, "selected": selected}
    accuracy = offered(model, Capability.VALIDATION_ACCURACY)
    if accuracy is not None:
        stored["validation_accuracy"] = float(accuracy)
    history = offered(model, Capability.TRAINING_HISTORY)  # the report's training-curve figure
    if history:
        stored["history"] = history
    return stored
