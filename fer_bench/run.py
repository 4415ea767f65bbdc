"""`fer-bench run`: train and evaluate every (task, model, seed) cell, storing predictions atomically.

The grid: which cells, which are finished, where they run (fer_bench.executors, handed fer_bench.cell's
compute_cell). Each cell is computed in a hidden staging folder and renamed into place when complete, so a run
killed at any moment leaves only finished cells behind; running the same command again skips them and resumes
the rest.
"""

from __future__ import annotations

import glob
import itertools
import re
import shlex
import socket
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from fer_bench.cell import compute_cell
from fer_bench.data.dataset import Dataset
from fer_bench.data.reference import DatasetReference
from fer_bench.errors import FerBenchError
from fer_bench.executors import (
    DASK_MISSING,
    Cell,
    CellJob,
    interrupted,
    job_plugins,
    make_executor,
    run_jobs,
)
from fer_bench.models import (
    available_models,
    get_factory_spec,
    make_model,
    missing_requirements,
    parse_variant,
)
from fer_bench.models.capabilities import Hook, interface_method
from fer_bench.plugins import record_plugins
from fer_bench.progress import GridProgress
from fer_bench.staging import folder_lock
from fer_bench.storage import (
    MANIFEST_FILE,
    cell_dir,
    check_results_folder,
    default_results_folder,
    read_manifest,
)
from fer_bench.tasks import available_tasks, get_task, prepare_task_data


def _command_line() -> str:
    """The command that started this process when it is the CLI (the fer-bench script or python -m fer_bench)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or not ("fer-bench" in program.name or program.parts[-2:] == ("fer_bench", "__main__.py")):
        return ""
    return shlex.join(["fer-bench", *sys.argv[1:]])


def _stored_cell_seconds(out: Path, model_name: str, quick: bool) -> list[float]:
    """Wall seconds of the cells of `model_name` already finished in `out` (from their manifests)."""
    seconds = []
    for manifest_path in sorted(out.glob(f"runs/*/{glob.escape(model_name)}/seed*/{MANIFEST_FILE}")):
        try:
            manifest = read_manifest(manifest_path)
            if manifest.quick == quick:
                seconds.append((datetime.fromisoformat(manifest.finished)
                                - datetime.fromisoformat(manifest.started)).total_seconds())
        except (FerBenchError, TypeError, ValueError):
            continue  # an ETA is a hint; a manifest it cannot read is reported by `report`, not here
    return seconds


def resolve_names(requested, available, kind: str, getter) -> list[str]:
    """The names asked for (None: every available one), each known and listed once; an empty list is refused
    (`--tasks ""` is a mistake, not "all")."""
    names = list(requested) if requested is not None else list(available)
    if not names:
        raise FerBenchError(f"no {kind} selected (an empty --{kind}s); name one or more of: "
                            f"{', '.join(available)}, or leave --{kind}s out for all")
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


#: a Dask scheduler's address as --scheduler takes it
SCHEDULER_ADDRESS = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def check_executor_arguments(workers: int | None, scheduler: str | None, *, timeout_s: float = 5) -> None:
    """Refuse, before anything is written, --workers below 1, both options at once, a --scheduler that is not
    tcp://HOST:PORT or that nothing answers on, and either option without Dask distributed installed."""
    if workers is not None and scheduler is not None:
        raise FerBenchError("--workers and --scheduler exclude each other: --workers starts local workers, "
                            "--scheduler uses a running cluster's")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise FerBenchError(f"--workers must be 1 or more, got {workers}")
    if scheduler is not None:
        match = SCHEDULER_ADDRESS.fullmatch(scheduler)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise FerBenchError(f"--scheduler {scheduler}: expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786 "
                                "(what `dask scheduler` prints)")
        host, port = match["host"].strip("[]"), int(match["port"])
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            raise FerBenchError(f"--scheduler {scheduler}: cannot connect "
                                f"({exc.strerror or type(exc).__name__}); is `dask scheduler` running there?") from None
    if workers is not None or scheduler is not None:
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise FerBenchError(DASK_MISSING)


def check_model_parameters(model_names: list[str], *, quick: bool) -> None:
    """Build every variant of the grid ("hog_svm[n_components=-3]", from --set or --models) with its parameters
    once and run the model's own check (check_parameters(), scikit-learn's parameter validation for the
    baselines): a bad value is one line before any cell starts, not a traceback from inside a cell."""
    for name in model_names:
        if not parse_variant(name)[1]:
            continue  # a registered model with its own defaults
        try:
            model = make_model(name, seed=0, quick=quick)
            check = interface_method(model, Hook.CHECK_PARAMETERS)
            if check is not None:
                check()
        except FerBenchError:
            raise
        except (TypeError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FerBenchError(f"model {name}: {text}") from None


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


def _resource_problems(todo, dataset: Dataset, *, quick: bool) -> dict[tuple[str, str], str]:
    """(task, model) -> why fitting it on the task's training images would not fit this machine, from the
    models' check_resources(n_train) hook (first line of its ValueError), for the cells about to run here."""
    problems, models, n_train = {}, {}, {}
    for task_name, model_name in dict.fromkeys((task, model) for task, model, _ in todo):
        if model_name not in models:  # asked about its resources only: no TensorFlow start-up for that
            models[model_name] = make_model(model_name, seed=0, quick=quick, load_tensorflow=False)
        check = interface_method(models[model_name], Hook.CHECK_RESOURCES)
        if check is None:
            continue
        if task_name not in n_train:  # the task's training set once, whichever models ask
            n_train[task_name] = len(prepare_task_data(dataset, get_task(task_name), seed=0).y_train)
        try:
            check(n_train[task_name])
        except ValueError as exc:
            problems[(task_name, model_name)] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return problems


def _leave_out_what_does_not_fit(todo, dataset: Dataset, *, quick: bool, named: bool) -> list:
    """The cells to run once the models have checked this machine's resources: a grid that names its models stops
    in one line before any cell when one would not fit; the default grid leaves such (task, model) out, saying so
    in one line each (its other cells still run)."""
    problems = _resource_problems(todo, dataset, quick=quick)
    if problems and named:
        (task_name, model_name), why = next(iter(problems.items()))
        raise FerBenchError(f"model {model_name} on {task_name}: {why}")
    for (task_name, model_name), why in problems.items():
        print(f"skipping model {model_name} on {task_name}: {why}", file=sys.stderr)
    return [cell for cell in todo if (cell[0], cell[1]) not in problems]


def _cells_to_run(out: Path, cells, *, force: bool, quick: bool) -> list[tuple[str, str, int]]:
    """The cells without a finished result under `out` (all of them with force)."""
    todo = []
    for task_name, model_name, seed in cells:
        manifest_path = cell_dir(out, task_name, model_name, seed) / MANIFEST_FILE
        if manifest_path.exists() and not force:
            if read_manifest(manifest_path).quick != quick:
                raise FerBenchError(f"{manifest_path.parent} was computed with{'out' if quick else ''} --quick; "
                                    "use --force to replace it or another --out")
            continue
        todo.append((task_name, model_name, seed))
    return todo


def run_grid(*, data=None, tasks=None, models=None, seeds=(0,), out=None, force=False, quick=False,
             rgb_to_gray=False, report=True, dataset: Dataset | None = None, reference: str | None = None,
             plugins: tuple[str, ...] = (), workers: int | None = None, scheduler: str | None = None,
             live: bool | None = None, robustness: bool = True) -> Path:
    """Run every (task, model, seed) cell not already finished under `out`, then write the report (comparing
    against `reference`, see fer_bench.settings). `plugins`: the --plugin files or modules the grid's models
    come from, recorded in the results folder so that later reports import them again. Cells run in this
    process, or on `workers` local worker processes, or on the Dask cluster at `scheduler` (see
    fer_bench.executors); `live`: the progress panel (default: when stdout is a terminal); `robustness`: compute
    each cell's robustness.npz (60 more PrivateTest predictions; False leaves it to `fer-bench robustness`)."""
    task_names = resolve_names(tasks, available_tasks(), "task", get_task)
    model_names = resolve_names(models, available_models(), "model", get_factory_spec)
    seeds = _check_seeds(seeds)
    model_names, skipped_models = _runnable_models(models, model_names)
    check_executor_arguments(workers, scheduler)
    if dataset is None:
        from fer_bench.data import load_dataset

        dataset = load_dataset(data, rgb_to_gray=rgb_to_gray)
    # chosen before the synthetic data forces quick below, so the demo grid's folder is results/synthetic
    out = Path(out) if out else default_results_folder(dataset.name, quick=quick)
    if dataset.name == "synthetic":
        print("using the built-in synthetic data: results are labelled 'synthetic', not FER-2013", file=sys.stderr)
        if not quick:
            # The full configurations are sized for FER-2013's 28,709 images (the CNN: an hour per task on two
            # cores); the synthetic demo grid must finish in a few minutes on a laptop.
            print("synthetic data: the models run in their quick configurations", file=sys.stderr)
            quick = True
    if reference is not None and reference not in model_names and not list(
            out.glob(f"runs/*/{glob.escape(reference)}/seed*/{MANIFEST_FILE}")):
        raise FerBenchError(f"--reference {reference}: not a model of this grid ({', '.join(model_names)}) "
                            f"and no cells of it in {out}")
    check_model_parameters(model_names, quick=quick)
    data_reference = DatasetReference.of(dataset, rgb_to_gray=rgb_to_gray)
    check_results_folder(out, dataset=dataset.name, fingerprint=dataset.fingerprint,
                         reference=data_reference.to_json(), create=True)
    # what an interrupted run or report left (staging folders, .tmp files) goes first, unless another run is on
    with folder_lock(out):
        record_plugins(out, list(plugins))
        for name, requirements in skipped_models.items():  # said once the data and results folder are known fine
            print(f"skipping model {name}: needs {', '.join(requirements)}", file=sys.stderr)

        cells = list(itertools.product(task_names, model_names, seeds))
        todo = _cells_to_run(out, cells, force=force, quick=quick)
        if scheduler is None:  # cells run on this machine (a cluster's workers are other machines)
            try:
                fitting = _leave_out_what_does_not_fit(todo, dataset, quick=quick, named=models is not None)
            except KeyboardInterrupt:
                raise interrupted([]) from None
            cells = [cell for cell in cells if cell in fitting or cell not in todo]
            todo = fitting
        print(f"{len(cells)} cells in {out}: {len(cells) - len(todo)} already finished, {len(todo)} to run")
        if todo:
            executor = make_executor(workers=workers, scheduler=scheduler)
            command = _command_line()
            shipped_plugins = job_plugins(plugins) if workers or scheduler else ()
            jobs = [CellJob(Cell(*cell), quick=quick, command=command, data=data_reference, plugins=shipped_plugins,
                            threads=executor.threads_per_cell, robustness=robustness) for cell in todo]
            progress = GridProgress([job.cell for job in jobs],
                                    {name: _stored_cell_seconds(out, name, quick) for name in model_names},
                                    slots=executor.slots, live=live)
            run_jobs(executor, jobs, compute_cell, dataset, out, progress)
        if report:
            from fer_bench.report import headline_text, write_report
            from fer_bench.settings import Settings

            # the image figures use the loaded data instead of loading it again
            written = write_report(out, dataset=dataset, settings=Settings(reference_model=reference))
            print(headline_text(written))
    return out
