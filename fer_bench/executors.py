"""Where the grid's cells run: in this process one after another (the default), on local worker processes
(`--workers N`, a Dask LocalCluster) or on a running Dask distributed cluster (`--scheduler tcp://HOST:PORT`).

Executors are handed the function that computes a cell's files into a folder (`CellFunction`, fer-bench's is
fer_bench.cell.compute_cell) and know nothing else of what a cell is. Every mode stores a cell the same way: the
cell is computed whole (in this process, or in a worker by a child process, see fer_bench.cell_process), and its
folder is written as a staging folder renamed into place (storage.staged_dir); a worker's files travel back to
this process first. So no shared filesystem is needed, a killed worker loses only the cell it was computing,
and the same command run again computes only what is missing.

A cell of a model that needs TensorFlow takes a whole worker: it asks for the Dask worker resource
`whole_worker=1`, which `--workers` gives every local worker and which a remote worker offers when started with
`dask worker tcp://HOST:PORT --nthreads 1 --resources whole_worker=1`. Other cells run on any worker, several at
once on a worker with several threads.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fer_bench.data.reference import DatasetReference
from fer_bench.errors import FerBenchError, Interrupted
from fer_bench.storage import MANIFEST_FILE, atomic_write, cell_dir, fresh_staging_dir, staged_dir

#: computes one cell's files into a folder that does not exist yet:
#: compute(dataset, task, model, seed, directory, *, quick, command, reference, peaks, checkpoints, execution,
#: robustness);
#: a worker's child process imports it by its module and name, so it must be a module-level function
CellFunction = Callable[..., Path]

#: the Dask worker resource a TensorFlow cell asks for (one per worker that may run one)
WHOLE_WORKER = "whole_worker"
#: environment variables that set a cell's thread count for OpenMP, the BLAS libraries and TensorFlow
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
#: the Dask event topic on which workers say which cell they start
START_TOPIC = "fer-bench-cell-started"
DASK_MISSING = "--workers and --scheduler need Dask distributed: pip install 'fer-bench[distributed]'"


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.task}/{self.model}/seed{self.seed}"


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to compute a cell: picklable, no paths of the client's machine except the data
    set's, which a worker may replace with its own $FER2013_DIR."""

    cell: Cell
    quick: bool
    command: str
    data: DatasetReference  # the client's data set, which the worker loads (fer_bench.data.reference)
    plugins: tuple[dict, ...] = ()  # {"spec": ..., "source": file text or None for a module}
    threads: int | None = None  # per cell; None: the worker's cores divided by its thread count
    robustness: bool = True  # compute robustness.npz with the cell (False: `fer-bench robustness` fills it later)


@dataclass
class CellOutcome:
    files: dict[str, bytes]  # path relative to the cell folder -> content
    worker: str
    seconds: float


class CellFailed(Exception):
    """A cell that could not be computed, with a one-line reason."""


@dataclass
class GridReport:
    finished: list[Cell] = field(default_factory=list)
    failed: dict[Cell, str] = field(default_factory=dict)


def needs_whole_worker(model_name: str) -> bool:
    """TensorFlow uses every core it is given, so two TensorFlow cells on one worker would slow each other."""
    from fer_bench.models import requirements

    return "tensorflow" in requirements(model_name)


def job_plugins(specs) -> tuple[dict, ...]:
    """Plugin files travel as their text, so workers need not see the client's files."""
    from fer_bench.plugins import plugin_reference

    plugins = []
    for spec in specs:
        path = Path(spec)
        is_file = spec.endswith(".py") or path.is_file()
        plugins.append({"spec": plugin_reference(spec),
                        "source": path.read_text(encoding="utf-8") if is_file else None})
    return tuple(plugins)


# --- on the worker ---------------------------------------------------------------------------------------


def _current_worker():
    """The Dask worker running this task, or None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _task_cancelled(worker, key) -> bool:
    state = worker.state.tasks.get(key) if worker is not None and key is not None else None
    return worker is not None and key is not None and (state is None or state.state in ("cancelled", "released"))


def function_reference(function: Callable) -> str:
    """"module:qualname" of a module-level function, for a child process to import it by."""
    return f"{function.__module__}:{function.__qualname__}"


#: a worker's temporary folder for one cell: fer-bench-cell-<worker pid>-<random>, removed in a finally
SCRATCH_PREFIX = "fer-bench-cell-"
_SCRATCH_NAME = re.compile(rf"^{re.escape(SCRATCH_PREFIX)}(?P<pid>\d+)-[^/]+$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (PermissionError): alive
    return True


def remove_dead_scratch(root: Path | None = None) -> list[Path]:
    """Remove the temporary cell folders of workers that were killed (SIGKILL, OOM: their finally never ran):
    those under the temporary directory whose worker pid no longer runs. Called when a worker starts a cell.
    A folder of a live process, or named otherwise, is left alone."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed = []
    if os.name != "posix":
        return removed
    try:
        entries = list(root.glob(f"{SCRATCH_PREFIX}*"))
    except OSError:
        return removed
    for path in entries:
        match = _SCRATCH_NAME.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and not _process_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run_cell_in_child(job: CellJob, compute: str) -> CellOutcome:
    """Compute one cell in a child process with explicit thread settings and return its files. `compute`: the
    CellFunction's function_reference."""
    worker = _current_worker()
    key = worker.get_current_task() if worker is not None else None
    name = f"{worker.address} ({platform.node()})" if worker is not None else platform.node()
    nthreads = worker.state.nthreads if worker is not None else 1
    threads = job.threads or (os.cpu_count() if needs_whole_worker(job.cell.model)
                              else max(1, (os.cpu_count() or 1) // nthreads))
    if worker is not None:
        worker.log_event(START_TOPIC, {"cell": job.cell.label, "worker": name})
    remove_dead_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    # kept across attempts on this machine so a retried CNN cell resumes from its last epoch
    checkpoints = (Path(tempfile.gettempdir()) / "fer-bench-checkpoints" / job.data.fingerprint / job.cell.task
                   / job.cell.model / f"seed{job.cell.seed}")
    started = time.perf_counter()
    try:
        job_file = scratch / "job.json"
        job_file.write_text(json.dumps({
            "task": job.cell.task, "model": job.cell.model, "seed": job.cell.seed, "quick": job.quick,
            "robustness": job.robustness,
            "command": job.command, "data": job.data.to_json(), "plugins": list(job.plugins), "compute": compute,
            "directory": str(scratch / "cell"), "checkpoints": str(checkpoints), "parent_pid": os.getpid(),
            "execution": {"executor": "dask" if worker is not None else "child process", "worker": name,
                          "threads": threads},
        }), encoding="utf-8")
        _run_child(job_file, threads, worker, key)
        files = {str(p.relative_to(scratch / "cell")): p.read_bytes()
                 for p in sorted((scratch / "cell").rglob("*")) if p.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return CellOutcome(files=files, worker=name, seconds=time.perf_counter() - started)


def _run_child(job_file: Path, threads: int, worker, key) -> None:
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    log_path = job_file.with_name("cell.log")
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "fer_bench.cell_process", str(job_file)], env=env,
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while True:
            try:
                child.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if _task_cancelled(worker, key):  # the client cancelled the grid (Ctrl-C)
                    child.kill()
                    child.wait()
                    raise CellFailed("cancelled") from None
    if child.returncode != 0:
        error_file = job_file.with_name("error.json")
        if error_file.exists():
            raise CellFailed(json.loads(error_file.read_text(encoding="utf-8"))["message"])
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise CellFailed(f"the cell's process ended with code {child.returncode} {tail[0][:200]}".rstrip())


# --- on the client ---------------------------------------------------------------------------------------


def store_cell_files(out: Path, cell: Cell, files: dict[str, bytes]) -> Path:
    """Write a cell's files into a staging folder and rename it into place (manifest.json last: a cell with a
    manifest is complete)."""
    final = cell_dir(out, cell.task, cell.model, cell.seed)
    with staged_dir(final) as staging:
        for relative in sorted(files, key=lambda name: name == MANIFEST_FILE):
            target = staging / relative
            if target.resolve().parent != staging.resolve() and staging.resolve() not in target.resolve().parents:
                raise CellFailed(f"{cell.label}: a worker sent a file outside the cell folder: {relative}")
            atomic_write(target, files[relative])
    return final


def cell_failure_message(exc: BaseException) -> str:
    """One line for a cell that raised `exc`: a FerBenchError's message, else the exception's type and first
    line (as fer_bench.cell_process reports a worker's cell)."""
    if isinstance(exc, FerBenchError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def _remove_failed_cell(final: Path) -> None:
    """What a failed cell computed in this process left: its staging folder, and <task>/<model>/ when it held
    only that."""
    shutil.rmtree(fresh_staging_dir(final), ignore_errors=True)
    for folder in (final.parent, final.parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break


class SerialExecutor:
    """Cells in this process, one after another (the default). Like the Dask executors, a cell that fails is
    reported in one line and the other cells go on; run_jobs then names the failed ones (exit code 2)."""

    slots = 1
    threads_per_cell = None  # the libraries' defaults, recorded in each manifest
    where = "in-process"

    def run(self, jobs: list[CellJob], compute: CellFunction, dataset, out: Path, progress) -> GridReport:
        from fer_bench.measure import MatmulPeaks

        report = GridReport()
        peaks = MatmulPeaks()  # measured once for the grid, by the first cell of a Keras model
        for job in jobs:
            progress.started(job.cell, self.where)
            started = time.perf_counter()
            cell = job.cell
            # beside the results, so that a killed CNN training resumes from its last epoch
            checkpoints = Path(out) / "checkpoints" / cell.task / cell.model / f"seed{cell.seed}"
            final = cell_dir(out, cell.task, cell.model, cell.seed)
            try:
                with staged_dir(final) as staging:
                    compute(dataset, cell.task, cell.model, cell.seed, staging, quick=job.quick,
                            command=job.command, reference=job.data, peaks=peaks, checkpoints=checkpoints,
                            execution={"executor": self.where}, robustness=job.robustness)
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - like a worker's cell: one line, the other cells go on
                # the staging folder of the failed cell goes (the checkpoints stay: a CNN resumes from them)
                _remove_failed_cell(final)
                if isinstance(exc, OSError):
                    raise  # the results folder cannot be written (disk full...): the next cells could not either
                message = cell_failure_message(exc)
                report.failed[cell] = message
                progress.failed(cell, message)
                continue
            shutil.rmtree(checkpoints, ignore_errors=True)
            report.finished.append(job.cell)
            progress.finished(job.cell, time.perf_counter() - started)
        return report

    def close(self) -> None:
        pass


class DaskExecutor:
    """Cells as Dask tasks, each computed by run_cell_in_child on a worker; results stored here as they come."""

    def __init__(self, client, *, cluster=None, slots: int, threads_per_cell: int | None = None):
        self.client, self.cluster, self.slots = client, cluster, slots
        # None: each worker gives a cell its cores divided by its thread count (see run_cell_in_child)
        self.threads_per_cell = threads_per_cell

    @classmethod
    def local(cls, n_workers: int) -> DaskExecutor:
        """N local worker processes, one cell at a time each, every one able to run a TensorFlow cell."""
        distributed = _import_distributed()
        # No dashboard; the scheduler's HTTP endpoints (health, metrics) still start, on a free port rather than
        # 8787, which another cluster may hold (distributed then warns and moves anyway).
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                           resources={WHOLE_WORKER: 1}, dashboard_address=None,
                                           scheduler_kwargs={"dashboard_address": ":0"},
                                           silence_logs=logging.CRITICAL)  # a failed cell is said once, by run_jobs
        # the machine's cores shared among the workers, one cell each
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        return cls(distributed.Client(cluster), cluster=cluster, slots=n_workers, threads_per_cell=threads)

    @classmethod
    def remote(cls, address: str, *, timeout_s: float = 30) -> DaskExecutor:
        distributed = _import_distributed()
        try:
            client = distributed.Client(address, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise FerBenchError(f"--scheduler {address}: cannot connect ({exc})") from None
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except TimeoutError:
            client.close()
            raise FerBenchError(f"--scheduler {address}: no worker joined within {timeout_s:.0f} s "
                                f"(start one with `dask worker {address}`)") from None
        slots = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        return cls(client, slots=max(slots, 1))

    def check_cluster(self, jobs: list[CellJob]) -> None:
        """Refuse, in one line, a grid the cluster cannot run: TensorFlow cells and no worker offering the
        resource they need (they would wait forever), or a worker whose data set is not the client's."""
        workers = self.client.scheduler_info()["workers"]
        heavy = sorted({job.cell.model for job in jobs if needs_whole_worker(job.cell.model)})
        if heavy and not any(w.get("resources", {}).get(WHOLE_WORKER, 0) >= 1 for w in workers.values()):
            raise FerBenchError(f"no worker of the cluster offers the resource {WHOLE_WORKER}=1 that cells of "
                                f"{', '.join(heavy)} need; start one with `dask worker ADDRESS --nthreads 1 "
                                f"--resources {WHOLE_WORKER}=1` or leave those models out")
        if jobs:
            answers = self.client.run(_worker_fingerprint, jobs[0].data, on_error="return")
            for address, answer in sorted(answers.items()):
                if isinstance(answer, FerBenchError):
                    raise FerBenchError(str(answer))
                if isinstance(answer, BaseException):
                    raise FerBenchError(f"worker {address} cannot load the data set: "
                                        f"{type(answer).__name__}: {answer}")

    def run(self, jobs: list[CellJob], compute: CellFunction, dataset, out: Path, progress) -> GridReport:
        distributed = _import_distributed()
        self.check_cluster(jobs)
        started_events: queue.Queue = queue.Queue()
        self.client.subscribe_topic(START_TOPIC, lambda event: started_events.put(event[1]))
        cells_by_label = {job.cell.label: job.cell for job in jobs}
        futures = {}
        for job in jobs:
            resources = {WHOLE_WORKER: 1} if needs_whole_worker(job.cell.model) else None
            future = self.client.submit(run_cell_in_child, job, function_reference(compute),
                                        key=f"fer-bench-{job.cell.label}-{uuid.uuid4().hex}",
                                        resources=resources, retries=1, pure=False)
            futures[future] = job.cell
        report, pending = GridReport(), set(futures)
        try:
            while pending:
                try:
                    done, pending = distributed.wait(pending, timeout=1, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                while not started_events.empty():
                    event = started_events.get()
                    progress.started(cells_by_label[event["cell"]], event["worker"])
                for future in done:
                    self._collect(future, futures[future], out, progress, report)
        except KeyboardInterrupt:
            self.client.cancel(list(pending), force=True)
            raise
        finally:
            self.client.unsubscribe_topic(START_TOPIC)
        return report

    @staticmethod
    def _collect(future, cell: Cell, out: Path, progress, report: GridReport) -> None:
        if future.status == "finished":
            outcome = future.result()
            try:
                store_cell_files(out, cell, outcome.files)
            except CellFailed as exc:
                report.failed[cell] = str(exc)
                progress.failed(cell, str(exc))
                return
            report.finished.append(cell)
            progress.finished(cell, outcome.seconds, outcome.worker)
            return
        exc = future.exception() if future.status == "error" else None
        message = str(exc) if isinstance(exc, CellFailed) else (
            f"{type(exc).__name__}: {exc}".splitlines()[0] if exc is not None else future.status)
        report.failed[cell] = message
        progress.failed(cell, message)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _worker_fingerprint(data: DatasetReference, dask_worker=None) -> str:
    """Run on every worker by check_cluster (Client.run passes the worker as dask_worker)."""
    from fer_bench.data.reference import load_reference

    name = f"{dask_worker.address} ({platform.node()})" if dask_worker is not None else platform.node()
    return load_reference(data, worker=name).fingerprint


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise FerBenchError(DASK_MISSING) from None
    return distributed


def make_executor(*, workers: int | None = None, scheduler: str | None = None):
    if workers is not None and scheduler is not None:
        raise FerBenchError("--workers and --scheduler exclude each other: --workers starts local workers, "
                            "--scheduler uses a running cluster's")
    if workers is not None:
        if workers < 1:
            raise FerBenchError(f"--workers must be 1 or more, got {workers}")
        return DaskExecutor.local(workers)
    if scheduler is not None:
        return DaskExecutor.remote(scheduler)
    return SerialExecutor()


def interrupted(finished_labels) -> Interrupted:
    """The error of a grid stopped by Ctrl-C: the cells it finished (none before any cell ran) and how to resume."""
    done = ", ".join(finished_labels) if finished_labels else "none"
    return Interrupted(f"interrupted; cells finished in this run: {done}; run the same command again to resume")


def run_jobs(executor, jobs: list[CellJob], compute: CellFunction, dataset, out: Path, progress) -> GridReport:
    """Run the jobs, each computed by `compute`; Ctrl-C cancels them and names the cells that finished."""
    try:
        report = executor.run(jobs, compute, dataset, out, progress)
    except KeyboardInterrupt:
        raise interrupted(progress.finished_labels) from None
    except OSError as exc:
        raise FerBenchError(f"cannot write results under {out}: {exc.strerror or exc}") from None
    finally:
        progress.close()
        executor.close()
    if report.failed:
        lines = "; ".join(f"{cell.label}: {why}" for cell, why in report.failed.items())
        raise FerBenchError(f"{len(report.failed)} of {len(jobs)} cells failed ({lines}); the other cells are "
                            "stored; run the same command again to retry the failed ones")
    return report
