"""A run killed, interrupted or starved of disk at any moment leaves only complete files and cells behind."""

from __future__ import annotations

import csv
import errno
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_grid, snapshot

from fer_bench import cell as cell_module
from fer_bench.cli import main
from fer_bench.storage import read_cell

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and file semantics")

HAS_TF = importlib.util.find_spec("tensorflow") is not None
# The report (tens of figures) is left out to keep the test fast; the cells are what a crash can damage.
RUN = ["run", "--quick", "--models", "logreg,hog_svm", "--no-report"]
FIRST_CELL = Path("runs", "7class", "logreg", "seed0")
ALL_CELLS = [Path("runs", task, model, "seed0") for task in ("7class", "5class", "binary")
             for model in ("logreg", "hog_svm")]
SYNTHETIC_NOTICES = ("FER-2013 not found", "using the built-in synthetic data")


# --- helpers ----------------------------------------------------------------------------------------------------

def subprocess_env(tmp_path: Path) -> dict:
    """No FER-2013 to discover (so the built-in synthetic data is used); caches inside tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in ("FER2013_DIR", "KAGGLEHUB_CACHE", "FER_BENCH_CACHE")}
    env.update(FER_BENCH_CACHE=str(tmp_path / "cache"), KAGGLEHUB_CACHE=str(tmp_path / "kagglehub"),
               PYTHONUNBUFFERED="1")
    return env


def start_cli(args: list, tmp_path: Path) -> subprocess.Popen:
    """`python -m fer_bench ...` in its own process group (a terminal's Ctrl-C reaches the whole group), with
    SIGINT at its default even when the test runner was started with SIGINT ignored."""
    return subprocess.Popen([sys.executable, "-m", "fer_bench", *map(str, args)], cwd=tmp_path,
                            env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (code {proc.returncode}) before the awaited moment:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.02)




def visible_snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(visible_files(root))}


def visible_files(root: Path) -> list[Path]:
    """Files outside hidden (staging, temporary) entries: what users and `fer-bench report` read."""
    return [p for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]


def assert_only_complete_files(out: Path) -> list[Path]:
    """Every visible JSON and CSV parses, every visible cell folder is a whole cell; returns the cells."""
    for path in visible_files(out):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
    cells = sorted(p for p in (out / "runs").glob("*/*/seed*") if p.is_dir())
    for cell in cells:
        assert (cell / "manifest.json").is_file(), f"half-written cell without manifest: {cell}"
        read_cell(cell)  # predictions, params and timings all parse and agree with the manifest
    return cells


# TensorFlow's C++ start-up log (absl), printed by TensorFlow itself whenever it is imported.
TENSORFLOW_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:|To enable the following "
                            r"instructions)")


def error_lines(stderr: str) -> list[str]:
    """stderr without the synthetic-data notices and TensorFlow's own start-up log."""
    return [line for line in stderr.strip().splitlines()
            if not any(n in line for n in SYNTHETIC_NOTICES) and not TENSORFLOW_LOG.match(line)]


# --- SIGKILL ----------------------------------------------------------------------------------------------------

def test_sigkill_leaves_only_complete_cells_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "results"
    proc = start_cli([*RUN, "--out", out], tmp_path)
    wait_for(lambda: (out / FIRST_CELL / "manifest.json").exists(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    cells = assert_only_complete_files(out)
    assert out / FIRST_CELL in cells and len(cells) < len(ALL_CELLS)
    first_cell = snapshot(out / FIRST_CELL, folders=False)

    rerun = subprocess.run([sys.executable, "-m", "fer_bench", *RUN, "--out", str(out)], cwd=tmp_path,
                           env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(cells)} already finished, {len(ALL_CELLS) - len(cells)} to run" in rerun.stdout
    assert assert_only_complete_files(out) == sorted(out / c for c in ALL_CELLS)
    assert snapshot(out / FIRST_CELL, folders=False) == first_cell  # untouched: same bytes, same modification times
    assert not list(out.rglob(".*.staging")) and not list(out.rglob("*.tmp"))
    manifest = json.loads((out / ALL_CELLS[-1] / "manifest.json").read_text())
    assert manifest["command"] == f"fer-bench {' '.join(RUN)} --out {out}"


# --- Ctrl-C -----------------------------------------------------------------------------------------------------

def test_ctrl_c_exits_130_with_one_line_naming_the_finished_cells(tmp_path):
    out = tmp_path / "results"
    proc = start_cli([*RUN, "--out", out], tmp_path)
    wait_for(lambda: (out / FIRST_CELL / "manifest.json").exists(), proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    finished = assert_only_complete_files(out)
    assert "interrupted" in lines[0] and "run the same command again" in lines[0]
    for cell in finished:  # every finished cell is named (they all finished in this run)
        assert "/".join(cell.relative_to(out / "runs").parts) in lines[0]


class _InterruptedFit:
    """Stands in for a model whose fit is hit by Ctrl-C."""

    def get_params(self):
        return {}

    def fit(self, *args, **kwargs):
        raise KeyboardInterrupt


@pytest.fixture
def use_small_synthetic(monkeypatch, small_synthetic):
    """The CLI, in-process, gets the small synthetic data set whatever it is asked to load."""
    monkeypatch.setattr("fer_bench.data.load_dataset", lambda *args, **kwargs: small_synthetic)
    return small_synthetic


def test_ctrl_c_inside_a_models_fit_names_the_finished_cells(tmp_path, capsys, monkeypatch, use_small_synthetic):
    real_make_model = cell_module.make_model
    monkeypatch.setattr(cell_module, "make_model", lambda name, **kw: (
        _InterruptedFit() if name == "hog_svm" else real_make_model(name, **kw)))
    out = tmp_path / "results"
    code = main(["run", "--quick", "--tasks", "binary", "--models", "logreg,hog_svm", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    assert error_lines(err) == ["fer-bench: error: interrupted; cells finished in this run: binary/logreg/seed0; "
                                "run the same command again to resume"]
    assert assert_only_complete_files(out) == [out / "runs/binary/logreg/seed0"]


def test_ctrl_c_while_loading_data_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted_load(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fer_bench.data.load_dataset", interrupted_load)
    out = tmp_path / "results"
    assert main(["run", "--quick", "--models", "logreg", "--out", str(out)]) == 130
    assert error_lines(capsys.readouterr().err) == ["fer-bench: interrupted"]
    assert not out.exists()


def _tensorflow_is_loading(proc: subprocess.Popen, out: Path) -> bool:
    try:
        # TensorFlow's shared libraries are mapped early in `import tensorflow`, seconds before it returns
        return "tensorflow" in Path(f"/proc/{proc.pid}/maps").read_text()
    except OSError:
        return False


def _cnn_finished_an_epoch(proc: subprocess.Popen, out: Path) -> bool:
    return any((out / "checkpoints").rglob("state.json"))


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed")
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see TensorFlow being loaded")
@pytest.mark.parametrize("moment", [pytest.param(_tensorflow_is_loading, id="during-tensorflow-import"),
                                    pytest.param(_cnn_finished_an_epoch, id="during-cnn-training",
                                                 marks=pytest.mark.slow)])
def test_ctrl_c_in_the_cnn_exits_130_without_traceback(moment, tmp_path):
    if importlib.util.find_spec("fer_bench.models.cnn") is None:
        pytest.skip("fer_bench.models.cnn is not there yet")
    out = tmp_path / "results"
    proc = start_cli(["run", "--quick", "--models", "cnn", "--tasks", "binary", "--out", out], tmp_path)
    wait_for(lambda: moment(proc, out), proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert error_lines(err) == ["fer-bench: error: interrupted; cells finished in this run: none; "
                                "run the same command again to resume"]
    assert assert_only_complete_files(out) == []


# --- read-only folder, full disk (simulated: chmod does not stop root, and a real full disk is impractical) --------

def fail_writes_under(monkeypatch, root: Path, error: int) -> None:
    """Creating, opening for writing or renaming anything below `root` fails with OSError(error)."""
    root = os.path.abspath(root)

    def below(path) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and \
            os.path.abspath(os.fsdecode(path)).startswith(root)

    def refuse(path):
        raise OSError(error, os.strerror(error), os.fsdecode(path))

    real_mkdir, real_open, real_replace, real_rename = os.mkdir, os.open, os.replace, os.rename

    def mkdir(path, *args, **kwargs):
        return refuse(path) if below(path) else real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        return refuse(path) if writing and below(path) else real_open(path, flags, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        return refuse(dst) if below(dst) or below(src) else real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        return refuse(dst) if below(dst) or below(src) else real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    # Python 3.10's pathlib calls os functions it bound at import time (through pathlib._NormalAccessor)
    accessor = getattr(pathlib, "_NormalAccessor", None)
    for name, fake in (("mkdir", mkdir), ("replace", replace), ("rename", rename)):
        if accessor is not None and hasattr(accessor, name):
            monkeypatch.setattr(accessor, name, staticmethod(fake))


def assert_one_line_exit_2(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_read_only_location_for_a_new_results_folder(tmp_path, capsys, monkeypatch, use_small_synthetic):
    out = tmp_path / "readonly" / "results"
    fail_writes_under(monkeypatch, tmp_path / "readonly", errno.EROFS)
    code = main(["run", "--quick", "--tasks", "binary", "--models", "logreg", "--out", str(out)])
    assert_one_line_exit_2(code, capsys.readouterr().err, str(out), "Read-only file system")
    assert not (tmp_path / "readonly").exists()


@pytest.fixture
def finished_results(tmp_path, baseline_grid) -> Path:
    """A results folder holding one finished cell (binary/logreg on small_synthetic), no report: a copy of that
    cell of the shared baseline_grid (conftest)."""
    return copy_grid(baseline_grid, tmp_path / "results", cells=["binary/logreg/seed0"])


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC], ids=["read-only", "disk-full"])
def test_unwritable_results_folder_keeps_what_it_holds(error, finished_results, capsys, monkeypatch,
                                                       use_small_synthetic):
    out = finished_results
    before = snapshot(out, folders=False)
    capsys.readouterr()
    fail_writes_under(monkeypatch, out, error)
    code = main(["run", "--quick", "--tasks", "binary,7class", "--models", "logreg", "--out", str(out)])
    assert_one_line_exit_2(code, capsys.readouterr().err, str(out), os.strerror(error))
    assert snapshot(out, folders=False) == before


def test_disk_full_in_the_middle_of_a_cell_leaves_no_partial_cell(finished_results, capsys, monkeypatch,
                                                                 use_small_synthetic):
    """ENOSPC from the second file of the next cell (predictions.csv written, params.json fails)."""
    out = finished_results
    before = snapshot(out, folders=False)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    argv = ["run", "--quick", "--tasks", "binary,7class", "--models", "logreg", "--out", str(out)]
    code = main(argv)
    assert_one_line_exit_2(code, capsys.readouterr().err, str(out), "No space left on device")
    assert len(calls) == 2
    assert assert_only_complete_files(out) == [out / "runs/binary/logreg/seed0"]
    assert not list(out.rglob("*.tmp"))
    assert visible_snapshot(out) == before  # at most a hidden staging folder was added

    monkeypatch.setattr(os, "fsync", real_fsync)  # space again: the same command finishes the grid
    assert main([*argv, "--no-report"]) == 0
    assert assert_only_complete_files(out) == [out / "runs/7class/logreg/seed0", out / "runs/binary/logreg/seed0"]
    assert not list(out.rglob(".*.staging"))


@pytest.mark.parametrize("kind", ["data audit", "report"])
def test_disk_full_while_writing_the_audit_or_report_keeps_the_previous_files(kind, finished_results, capsys,
                                                                              monkeypatch, small_synthetic):
    from fer_bench.audit import run_audit
    from fer_bench.report import write_report

    out = finished_results
    if kind == "data audit":
        run_audit(dataset=small_synthetic, out=out)
    else:
        write_report(out)
    before = snapshot(out, folders=False)
    capsys.readouterr()
    monkeypatch.setattr("fer_bench.data.load_dataset", lambda *args, **kwargs: small_synthetic)
    fail_writes_under(monkeypatch, out, errno.ENOSPC)
    argv = ["data", "audit", "--out", str(out)] if kind == "data audit" else ["report", "--out", str(out)]
    assert_one_line_exit_2(main(argv), capsys.readouterr().err, str(out), "No space left on device")
    assert snapshot(out, folders=False) == before
