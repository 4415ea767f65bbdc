"""Executors: the grid in this process, on local worker processes (--workers) and on a Dask cluster
(--scheduler) stores the same cells; faults lose no finished cell and leave nothing half-written.

The tests that start Dask workers or a Dask client are marked slow. They synchronise on their own processes and
files only (a file the cell's process writes, the processes they started), never on a machine-wide process list:
other fer-bench runs may be computing on the same machine.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fer_bench.cli import build_parser
from fer_bench.data.reference import DatasetReference, load_reference
from fer_bench.errors import FerBenchError
from fer_bench.executors import WHOLE_WORKER, Cell, store_cell_files
from fer_bench.progress import GridProgress
from fer_bench.run import run_grid

distributed = pytest.importorskip("distributed")
import psutil  # noqa: E402 - a dependency of distributed

TASKS = ["7class", "binary"]
MODELS = ["hog_svm", "logreg"]
CELLS = [f"runs/{task}/{model}/seed0/predictions.csv" for task in TASKS for model in MODELS]


def _predictions(out: Path) -> dict[str, bytes]:
    return {cell: (out / cell).read_bytes() for cell in CELLS}


def wait_until(condition, what: str, timeout: float = 120, process: subprocess.Popen | None = None):
    """Poll `condition` until it returns something true, and return that; fail after `timeout` seconds, or as
    soon as `process` (when given) has ended."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended (code {process.returncode}) while waiting for {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def serial_grid(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    run_grid(tasks=TASKS, models=MODELS, out=out, report=False, live=False, robustness=False)
    return out


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and two plain `dask worker` processes on localhost, as a user starts them."""
    folder = tmp_path_factory.mktemp("cluster")
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = folder / "scheduler.json"
    processes = [subprocess.Popen([dask, "scheduler", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_until(lambda: scheduler_file.exists() and scheduler_file.stat().st_size, "the scheduler file",
                   process=processes[0])
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(subprocess.Popen([dask, "worker", address, "--no-dashboard"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


@pytest.mark.slow
def test_local_workers_store_the_serial_grids_predictions_byte_for_byte(serial_grid, tmp_path):
    out = run_grid(tasks=TASKS, models=MODELS, out=tmp_path / "workers", report=False, workers=2, live=False,
                   robustness=False)
    assert _predictions(out) == _predictions(serial_grid)
    manifest = json.loads((out / "runs/7class/logreg/seed0/manifest.json").read_text())
    threads = max(1, (os.cpu_count() or 1) // 2)
    # the cell's threads are set explicitly (Dask sets them to 1 in its workers) and recorded
    assert manifest["execution"]["threads"] == threads
    assert manifest["threads"]["OMP_NUM_THREADS"] == manifest["threads"]["OPENBLAS_NUM_THREADS"] == str(threads)
    assert manifest["execution"]["worker"].startswith("tcp://")
    assert not list(out.glob("runs/**/.*staging"))


@pytest.mark.slow
def test_plain_dask_workers_store_the_serial_grids_predictions_byte_for_byte(serial_grid, dask_cluster, tmp_path):
    out = run_grid(tasks=TASKS, models=MODELS, out=tmp_path / "cluster", report=False, scheduler=dask_cluster,
                   live=False, robustness=False)
    assert _predictions(out) == _predictions(serial_grid)
    workers = {json.loads((out / cell).with_name("manifest.json").read_text())["execution"]["worker"]
               for cell in CELLS}
    assert all(w.startswith("tcp://") for w in workers)


@pytest.mark.slow
def test_a_cluster_without_the_whole_worker_resource_refuses_cnn_cells_in_one_line(dask_cluster, tmp_path):
    with pytest.raises(FerBenchError, match=f"resource {WHOLE_WORKER}=1 .* cnn"):
        run_grid(tasks=["binary"], models=["cnn"], out=tmp_path / "cnn", report=False, scheduler=dask_cluster,
                 live=False)
    assert not list((tmp_path / "cnn").glob("runs/*/*/*"))


@pytest.mark.slow  # the Dask client tries to connect for its whole timeout (30 s)
def test_an_unreachable_scheduler_is_one_line(tmp_path):
    with pytest.raises(FerBenchError, match="--scheduler tcp://127.0.0.1:9: cannot connect"):
        run_grid(tasks=["binary"], models=["logreg"], out=tmp_path / "x", report=False,
                 scheduler="tcp://127.0.0.1:9", live=False)


# A plugin model that, in the child process computing its cell (never in the client), kills the worker that
# started it the first time, or dies itself until a marker file allows it: the faults a cluster meets.
FAULTY_PLUGIN = """\
import os
import signal
import sys
from pathlib import Path

from fer_bench.baselines.logreg import make_logreg
from fer_bench.models import register_model

FOLDER = Path({folder!r})


def _in_cell_process():
    return sys.argv[0].endswith("cell_process.py")


def make_kills_its_worker_once(seed=0, quick=False, **params):
    if _in_cell_process() and not (FOLDER / "killed").exists():
        (FOLDER / "killed").write_text("once")
        os.kill(os.getppid(), signal.SIGKILL)  # the worker process dies in the middle of the cell
        signal.pause()
    return make_logreg(seed=seed, quick=quick, **params)


def make_crashes_until_allowed(seed=0, quick=False, **params):
    if _in_cell_process() and not (FOLDER / "allowed").exists():
        os._exit(3)
    return make_logreg(seed=seed, quick=quick, **params)


register_model("kills_its_worker_once", make_kills_its_worker_once)
register_model("crashes_until_allowed", make_crashes_until_allowed)
"""


def _run_cli(args, cwd, timeout=600, **extra_env):
    env = {**{k: v for k, v in os.environ.items() if k != "FER2013_DIR"}, **extra_env}
    return subprocess.run([sys.executable, "-m", "fer_bench", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def faulty_plugin(tmp_path) -> Path:
    plugin = tmp_path / "faulty_models.py"
    plugin.write_text(FAULTY_PLUGIN.format(folder=str(tmp_path)))
    return plugin


@pytest.mark.slow
def test_a_worker_killed_mid_cell_is_retried_and_no_cell_is_lost(faulty_plugin, serial_grid, tmp_path):
    scratch = tmp_path / "tmp"  # the workers' temporary directory
    scratch.mkdir()
    result = _run_cli(["--plugin", str(faulty_plugin), "--tasks", "binary", "--models",
                       "logreg,kills_its_worker_once", "--workers", "2", "--out", "out", "--no-report"], tmp_path,
                      TMPDIR=str(scratch))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "killed").exists()  # the fault really happened
    runs = tmp_path / "out" / "runs" / "binary"
    # the retried cell is the same logistic regression with the same seed: the serial grid's predictions
    assert (runs / "kills_its_worker_once/seed0/predictions.csv").read_bytes() == \
        (serial_grid / "runs/binary/logreg/seed0/predictions.csv").read_bytes()
    assert (runs / "logreg/seed0/manifest.json").exists()
    assert not list((tmp_path / "out").glob("runs/**/.*staging"))
    # the killed worker's temporary cell folder was removed when the retried cell started
    assert not list(scratch.glob("fer-bench-cell-*"))


@pytest.mark.slow
def test_a_cell_that_keeps_crashing_fails_in_one_line_and_the_rerun_computes_only_it(faulty_plugin, tmp_path):
    args = ["--plugin", str(faulty_plugin), "--tasks", "binary", "--models", "logreg,crashes_until_allowed",
            "--workers", "2", "--out", "out", "--no-report"]
    failed = _run_cli(args, tmp_path)
    assert failed.returncode == 2
    error_lines = [line for line in failed.stderr.splitlines() if line.startswith("fer-bench: error:")]
    assert len(error_lines) == 1 and "binary/crashes_until_allowed/seed0" in error_lines[0]
    assert "1 of 2 cells failed" in error_lines[0] and "Traceback" not in failed.stderr
    runs = tmp_path / "out" / "runs" / "binary"
    assert (runs / "logreg/seed0/manifest.json").exists()  # the other cell went on and is stored
    assert not (runs / "crashes_until_allowed").exists() or not list((runs / "crashes_until_allowed").iterdir())
    (tmp_path / "allowed").write_text("yes")
    rerun = _run_cli(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 cells in out: 1 already finished, 1 to run" in rerun.stdout
    assert (runs / "crashes_until_allowed/seed0/manifest.json").exists()


# A plugin model whose cell, in the child process computing it, writes that process's pid to a file (atomically)
# and then waits to be stopped: a cell process that is surely running when the test interrupts the grid.
WAITING_PLUGIN = """\
import os
import signal
import sys
from pathlib import Path

from fer_bench.baselines.logreg import make_logreg
from fer_bench.models import register_model

STARTED = Path({started!r})


def make_waits_to_be_stopped(seed=0, quick=False, **params):
    if sys.argv[0].endswith("cell_process.py"):
        STARTED.with_suffix(".tmp").write_text(str(os.getpid()))
        STARTED.with_suffix(".tmp").replace(STARTED)
        signal.pause()
    return make_logreg(seed=seed, quick=quick, **params)


register_model("waits_to_be_stopped", make_waits_to_be_stopped)
"""


def _ended(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_ctrl_c_cancels_the_cluster_work_and_leaves_no_cell_process(tmp_path):
    started = tmp_path / "cell-started.pid"
    plugin = tmp_path / "waiting_models.py"
    plugin.write_text(WAITING_PLUGIN.format(started=str(started)))
    env = {k: v for k, v in os.environ.items() if k != "FER2013_DIR"}
    client = subprocess.Popen([sys.executable, "-m", "fer_bench", "run", "--plugin", str(plugin), "--tasks", "binary",
                               "--models", "waits_to_be_stopped", "--workers", "1", "--out", "out", "--no-report"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              # Ctrl-C handled as in a terminal even where the test runner ignores SIGINT
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        pid = int(wait_until(lambda: started.exists() and started.read_text(), "the cell's process to start",
                             timeout=300, process=client))
        cell_process = psutil.Process(pid)  # pinned by its start time: a reused pid is not this process
        client.send_signal(signal.SIGINT)  # Ctrl-C in the client, while its cell computes on the worker
        _, err = client.communicate(timeout=300)  # closing the local cluster is slow on a loaded machine
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 130, err
    assert "fer-bench: error: interrupted; cells finished in this run: none" in err and "Traceback" not in err
    # the cell's process goes with the cancelled work (killed by its worker, or with its worker)
    wait_until(lambda: _ended(cell_process), "the cell's process to end", timeout=60)
    assert not list((tmp_path / "out").glob("runs/*/*/*/manifest.json"))


def test_a_worker_with_another_data_set_is_refused_naming_it(make_fer_folder, tmp_path):
    folder = make_fer_folder(tmp_path / "fer")
    with pytest.raises(FerBenchError, match="worker tcp://10.0.0.7:1234: its data set .* has fingerprint"):
        load_reference(DatasetReference("fer2013", "0" * 16, str(folder)), worker="tcp://10.0.0.7:1234")


def test_a_worker_file_outside_the_cell_folder_is_refused(tmp_path):
    from fer_bench.executors import CellFailed

    with pytest.raises(CellFailed, match="outside the cell folder"):
        store_cell_files(tmp_path, Cell("binary", "logreg", 0), {"../../escape.txt": b"x"})
    assert not (tmp_path / "runs" / "escape.txt").exists()


def test_workers_without_dask_say_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(FerBenchError, match=r"need Dask distributed: pip install 'fer-bench\[distributed\]'"):
        run_grid(tasks=["binary"], models=["logreg"], out=tmp_path / "x", report=False, workers=2, live=False)


@pytest.mark.parametrize(("text", "seeds"), [("0-2", [0, 1, 2]), ("0,1,2", [0, 1, 2]), ("0-2,5", [0, 1, 2, 5]),
                                             ("7", [7])])
def test_seeds_take_lists_and_ranges(text, seeds):
    assert build_parser().parse_args(["run", "--seeds", text]).seeds == seeds


@pytest.mark.parametrize("text", ["2-0", "a", "0-"])
def test_bad_seeds_are_one_line_exit_2(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--seeds", text])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_progress_counts_cells_and_names_workers_in_plain_lines_and_the_live_panel():
    cells = [Cell("7class", "cnn", 0), Cell("7class", "logreg", 0), Cell("binary", "logreg", 0)]
    plain = io.StringIO()
    progress = GridProgress(cells, {"cnn": [600.0]}, slots=2, live=False, stream=plain)
    progress.started(cells[0], "tcp://10.0.0.1:1")
    progress.started(cells[1], "tcp://10.0.0.2:1")
    progress.finished(cells[1], 30.0)
    assert progress.eta_seconds() == pytest.approx((600 + 30) / 2)  # cnn and one logreg left, two at a time
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("[1/3] 7class / cnn / seed0 on tcp://10.0.0.1:1")
    assert "done in 0m30s: 7class/logreg/seed0" in lines[2]

    panel = io.StringIO()
    live = GridProgress(cells, {}, slots=2, live=True, stream=panel)
    live.started(cells[0], "tcp://10.0.0.1:1")
    live.finished(cells[0], 10.0)
    live.started(cells[1], "tcp://10.0.0.2:1")
    live.close()
    shown = panel.getvalue()
    assert "1 finished · 1 running · 1 waiting · 0 failed" in shown
    assert "7class/logreg/seed0" in shown and "tcp://10.0.0.2:1" in shown


def test_run_help_documents_workers_and_scheduler():
    text = textwrap.dedent(build_parser()._subparsers._group_actions[0].choices["run"].format_help())
    assert "--workers N" in text and "--scheduler tcp://HOST:PORT" in text
