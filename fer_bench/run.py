"""`fer-bench run`: train and evaluate every (task, model, seed) cell, storing predictions atomically.

Each cell is computed in a hidden staging folder and renamed into place when complete, so a run killed at any
moment leaves only finished cells behind; running the same command again skips them and resumes the rest.
"""

from __future__ import annotations

import glob
import itertools
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fer_bench.cell_maps import write_cell_maps
from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.executors import Cell, CellJob, job_data, job_plugins, make_executor, run_jobs
from fer_bench.measure import MatmulPeaks, timing_measurements
from fer_bench.models import available_models, get_factory_spec, make_model, missing_requirements
from fer_bench.models.base import save_model
from fer_bench.models.capabilities import offered
from fer_bench.plugins import record_plugins
from fer_bench.progress import GridProgress
from fer_bench.provenance import environment_info
from fer_bench.storage import (
    PREDICTION_SPLITS,
    atomic_write,
    cell_dir,
    check_results_folder,
    dumps_json,
    fresh_staging_dir,
    predictions_csv,
    read_json,
    replace_dir,
)
from fer_bench.tasks import Task, available_tasks, balance, get_task


@dataclass
class TaskData:
    """A task's view of the data set: balanced training set and the untouched test splits."""

    task: Task
    X_train: np.ndarray
    y_train: np.ndarray
    sample_weight: np.ndarray | None
    n_train_before_balancing: int
    train_class_counts: list[int]  # before balancing; the report's majority-class floor uses it
    tests: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # split -> (images, labels, ids)


def prepare_task_data(dataset: Dataset, task: Task, *, seed: int, balancing: str | None = None) -> TaskData:
    train = dataset.split("Training")
    X, y, _ = task.select(train.images, train.labels, train.ids)
    if len(X) == 0:
        raise FerBenchError(f"task {task.name}: no Training images with its labels in {dataset.source}")
    X_bal, y_bal, weights = balance(X, y, balancing or task.balancing, n_classes=task.n_classes, seed=seed)
    tests = {}
    for split in PREDICTION_SPLITS:
        part = dataset.split(split)
        tests[split] = task.select(part.images, part.labels, part.ids)
        if len(tests[split][0]) == 0:
            raise FerBenchError(f"task {task.name}: no {split} images with its labels in {dataset.source}")
    counts = np.bincount(y, minlength=task.n_classes).tolist()
    return TaskData(task, X_bal, y_bal, weights, len(X), counts, tests)


def _predict_timed(model, X, method: str = "predict_proba"):
    start = time.perf_counter()
    proba = np.asarray(getattr(model, method)(X), dtype=np.float64)
    seconds = time.perf_counter() - start
    proba = np.clip(proba, 0, None)
    return proba / proba.sum(axis=1, keepdims=True), seconds


def run_cell(dataset: Dataset, task_name: str, model_name: str, seed: int, out: Path, *, quick: bool = False,
             command: str = "", peaks: MatmulPeaks | None = None, execution: dict | None = None) -> Path:
    """Fit one model on one task with one seed, predict PublicTest and PrivateTest, store everything: computed
    in a hidden staging folder renamed into place when complete, so the cell is whole or absent."""
    final = cell_dir(out, task_name, model_name, seed)
    staging = fresh_staging_dir(final)
    checkpoints = Path(out) / "checkpoints" / task_name / model_name / f"seed{seed}"
    compute_cell(dataset, task_name, model_name, seed, staging, quick=quick, command=command, peaks=peaks,
                 checkpoints=checkpoints, execution=execution)
    replace_dir(staging, final)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return final


def compute_cell(dataset: Dataset, task_name: str, model_name: str, seed: int, directory: Path, *,
                 quick: bool = False, command: str = "", peaks: MatmulPeaks | None = None,
                 checkpoints: Path | None = None, execution: dict | None = None) -> Path:
    """Fit and evaluate one cell, writing its files (predictions.csv, params.json, timings.json, model/, maps.npz,
    manifest.json last) into `directory`. `checkpoints`: where a CNN keeps its per-epoch checkpoints, so an
    interrupted training resumes; `execution`: how and where the cell ran (executor, worker), for the manifest."""
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
    fit_start = time.perf_counter()
    model.fit(data.X_train, data.y_train, sample_weight=data.sample_weight,
              validation_data=data.tests["PublicTest"][:2])
    fit_seconds = time.perf_counter() - fit_start

    splits, ids, labels, probas, timings = [], [], [], [], {"fit_seconds": fit_seconds}
    for split in PREDICTION_SPLITS:
        X, y, image_ids = data.tests[split]
        proba, seconds = _predict_timed(model, X)
        if proba.shape != (len(X), task.n_classes):
            raise RuntimeError(f"{model_name}.predict_proba returned shape {proba.shape}, "
                               f"expected {(len(X), task.n_classes)}")
        splits += [split] * len(X)
        ids.append(image_ids)
        labels.append(y)
        probas.append(proba)
        timings[f"predict_seconds_{split}"] = seconds
        timings[f"predict_images_per_s_{split}"] = len(X) / seconds if seconds > 0 else None
    timings.update(_single_view_timing(model, data.tests["PrivateTest"][0]))
    timings["n_train"] = len(data.X_train)
    passes = offered(model, "training_passes")
    passes = 1 if passes is None else int(passes)  # a model from outside the interface: one pass
    timings["train_images_per_s"] = len(data.X_train) * passes / fit_seconds if fit_seconds > 0 and passes else None

    atomic_write(directory / "predictions.csv", predictions_csv(
        splits, np.concatenate(ids), np.concatenate(labels), np.concatenate(probas), task.class_names))
    atomic_write(directory / "params.json", dumps_json(stored_params(model)))
    save_model(model, directory / "model")
    # Serving cost (single-image latency, size on disk, memory) and, for Keras, FLOP/s against the matmul peak.
    timings.update(timing_measurements(model, data.tests["PrivateTest"][0], directory / "model",
                                       train_images_per_s=timings["train_images_per_s"], peaks=peaks))
    atomic_write(directory / "timings.json", dumps_json(timings))
    write_cell_maps(model, data.tests, directory)  # the report's saliency figures, drawn without the model
    atomic_write(directory / "manifest.json", dumps_json({
        "task": task_name, "model": model_name, "seed": seed, "quick": quick,
        "class_names": list(task.class_names), "balancing": task.balancing,
        "n_train_before_balancing": data.n_train_before_balancing, "n_train": len(data.X_train),
        "train_class_counts": data.train_class_counts,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "source": dataset.source},
        "command": command, "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment_info(),
        **({"execution": execution} if execution else {}),
    }))
    return directory


def tell_task(model, task) -> None:
    """model.set_task(task) before fit (fer_bench.models.base); a model written without fer-bench's base class
    may not have the hook and learns the task from y."""
    set_task = getattr(model, "set_task", None)
    if callable(set_task):
        set_task(task)


def _single_view_timing(model, X) -> dict:
    """Test-time views per image of the model as it predicts and, when more than one, the throughput of one view
    on the same images: the timing table shows the chosen configuration's cost beside the single view's."""
    views = offered(model, "prediction_views") or 1
    timing = {"prediction_views": int(views)}
    if views > 1 and callable(getattr(model, "predict_proba_single_view", None)):
        _, seconds = _predict_timed(model, X, "predict_proba_single_view")
        timing["predict_images_per_s_single_view"] = len(X) / seconds if seconds > 0 else None
    return timing


def stored_params(model) -> dict:
    """params.json: the model's parameters, what it chose on PublicTest, its PublicTest accuracy as it predicts
    and its per-epoch history, each as the model offers them (absent when it does not)."""
    stored = {"params": {k: v for k, v in model.get_params().items() if k != "checkpoint_dir"},
              "selected": offered(model, "selected_on_validation") or getattr(model, "selected_params_", {})}
    accuracy = offered(model, "validation_accuracy")
    if accuracy is not None:
        stored["validation_accuracy"] = float(accuracy)
    history = offered(model, "training_history")  # the report's training-curve figure
    if history:
        stored["history"] = history
    return stored


def _command_line() -> str:
    """The command that started this process when it is the CLI (the fer-bench script or python -m fer_bench)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or not ("fer-bench" in program.name or program.parts[-2:] == ("fer_bench", "__main__.py")):
        return ""
    return shlex.join(["fer-bench", *sys.argv[1:]])


def _stored_cell_seconds(out: Path, model_name: str, quick: bool) -> list[float]:
    """Wall seconds of the cells of `model_name` already finished in `out` (from their manifests)."""
    seconds = []
    for manifest_path in sorted(out.glob(f"runs/*/{glob.escape(model_name)}/seed*/manifest.json")):
        try:
            manifest = read_json(manifest_path)
            if manifest.get("quick", False) == quick:
                seconds.append((datetime.fromisoformat(manifest["finished"])
                                - datetime.fromisoformat(manifest["started"])).total_seconds())
        except (FerBenchError, KeyError, TypeError, ValueError):
            continue  # an ETA is a hint; a manifest it cannot read is reported by `report`, not here
    return seconds


def resolve_names(requested, available, kind: str, getter) -> list[str]:
    names = list(requested) if requested else list(available)
    for name in names:
        getter(name)  # raises FerBenchError naming the unknown task/model
    if len(set(names)) != len(names):
        raise FerBenchError(f"{kind} listed twice: {','.join(names)}")
    return names


def _check_seeds(seeds) -> list[int]:
    seeds = list(seeds)
    # numpy and scikit-learn take seeds 0..2**32-1; a repeated seed would compute (and overwrite) a cell twice.
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s < 2**32
                        for s in seeds):
        raise FerBenchError(f"seeds must be one or more integers 0..{2**32 - 1}, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise FerBenchError(f"seed listed twice: {','.join(map(str, seeds))}")
    return seeds


def _runnable_models(models, model_names: list[str]) -> tuple[list[str], dict]:
    """The models to run and those skipped (name -> packages it needs). The default grid skips a model whose
    dependency is not installed (e.g. the CNN without TensorFlow); a model asked for by name must run."""
    if models is None:
        skipped = {m: needs for m in model_names if (needs := missing_requirements(m))}
        return [m for m in model_names if m not in skipped], skipped
    for name in model_names:
        if needs := missing_requirements(name):
            raise FerBenchError(f"model {name!r} needs {', '.join(needs)}, "
                                "which is not installed (pip install 'fer-bench[cnn]')")
    return model_names, {}


def _cells_to_run(out: Path, cells, *, force: bool, quick: bool) -> list[tuple[str, str, int]]:
    """The cells without a finished result under `out` (all of them with force)."""
    todo = []
    for task_name, model_name, seed in cells:
        manifest_path = cell_dir(out, task_name, model_name, seed) / "manifest.json"
        if manifest_path.exists() and not force:
            if read_json(manifest_path).get("quick", False) != quick:
                raise FerBenchError(f"{manifest_path.parent} was computed with{'out' if quick else ''} --quick; "
                                    "use --force to replace it or another --out")
            continue
        todo.append((task_name, model_name, seed))
    return todo


def run_grid(*, data=None, tasks=None, models=None, seeds=(0,), out=None, force=False, quick=False,
             rgb_to_gray=False, report=True, dataset: Dataset | None = None, reference: str | None = None,
             plugins: tuple[str, ...] = (), workers: int | None = None, scheduler: str | None = None,
             live: bool | None = None) -> Path:
    """Run every (task, model, seed) cell not already finished under `out`, then write the report (comparing
    against `reference`, see fer_bench.settings). `plugins`: the --plugin files or modules the grid's models
    come from, recorded in the results folder so that later reports import them again. Cells run in this
    process, or on `workers` local worker processes, or on the Dask cluster at `scheduler` (see
    fer_bench.executors); `live`: the progress panel (default: when stdout is a terminal)."""
    task_names = resolve_names(tasks, available_tasks(), "task", get_task)
    model_names = resolve_names(models, available_models(), "model", get_factory_spec)
    seeds = _check_seeds(seeds)
    model_names, skipped_models = _runnable_models(models, model_names)
    if dataset is None:
        from fer_bench.data import load_dataset

        dataset = load_dataset(data, rgb_to_gray=rgb_to_gray)
    default_out = Path("results") / (f"{dataset.name}-quick" if quick else dataset.name)
    if dataset.name == "synthetic":
        print("using the built-in synthetic data: results are labelled 'synthetic', not FER-2013", file=sys.stderr)
        if not quick:
            # The full configurations are sized for FER-2013's 28,709 images (the CNN: an hour per task on two
            # cores); the synthetic demo grid must finish in a few minutes on a laptop.
            print("synthetic data: the models run in their quick configurations", file=sys.stderr)
            quick, default_out = True, Path("results") / dataset.name
    out = Path(out) if out else default_out
    if reference is not None and reference not in model_names and not list(
            out.glob(f"runs/*/{glob.escape(reference)}/seed*/manifest.json")):
        raise FerBenchError(f"--reference {reference}: not a model of this grid ({', '.join(model_names)}) "
                            f"and no cells of it in {out}")
    check_results_folder(out, dataset=dataset.name, fingerprint=dataset.fingerprint, create=True)
    record_plugins(out, list(plugins))
    for name, requirements in skipped_models.items():  # said once the data and results folder are known fine
        print(f"skipping model {name}: needs {', '.join(requirements)}", file=sys.stderr)

    cells = list(itertools.product(task_names, model_names, seeds))
    todo = _cells_to_run(out, cells, force=force, quick=quick)
    print(f"{len(cells)} cells in {out}: {len(cells) - len(todo)} already finished, {len(todo)} to run")
    if todo:
        executor = make_executor(workers=workers, scheduler=scheduler)
        command, data_request = _command_line(), job_data(dataset, rgb_to_gray=rgb_to_gray)
        shipped_plugins = job_plugins(plugins) if workers or scheduler else ()
        jobs = [CellJob(Cell(*cell), quick=quick, command=command, data=data_request, plugins=shipped_plugins,
                        threads=executor.threads_per_cell) for cell in todo]
        progress = GridProgress([job.cell for job in jobs],
                                {name: _stored_cell_seconds(out, name, quick) for name in model_names},
                                slots=executor.slots, live=live)
        run_jobs(executor, jobs, dataset, out, progress)
    if report:
        from fer_bench.report import write_report
        from fer_bench.settings import Settings

        # the image figures use the loaded data instead of loading it again
        write_report(out, dataset=dataset, settings=Settings(reference_model=reference))
    return out
