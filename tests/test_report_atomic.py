"""The report is swapped in as a set (fer_bench.staging): a report that fails or is killed at any moment leaves
the old files, or, killed after its commit point, a swap the next command completes; leftovers of interrupted
reports, cells and workers are cleared; and the guard that PrivateTest never chooses the reference model, on
data where the two splits prefer different models."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_grid, rerecord, snapshot

from fer_bench.executors import SCRATCH_PREFIX, remove_dead_scratch
from fer_bench.report import write_report
from fer_bench.report.inputs import choose_references, load_cells
from fer_bench.settings import Settings
from fer_bench.staging import REPORT_STAGING, clear_leftovers, folder_lock
from fer_bench.storage import predictions_csv, read_cell

ROOT = Path(__file__).resolve().parents[1]
FIRST, SECOND = "binary/logreg/seed0", "binary/hog_svm/seed0"




def contents(root: Path) -> dict[str, bytes]:
    return {k: v for k, (v, _) in snapshot(root).items()}


def hidden(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(".*")]


@pytest.fixture
def reported(tiny_grid, tmp_path) -> tuple[Path, Path]:
    """A folder whose report (of one cell) is older than its cells (two), and a copy with the new report written
    without interruption: what every interrupted report must end in."""
    out = copy_grid(tiny_grid, tmp_path / "out", cells=[FIRST])
    write_report(out)
    copy_grid(tiny_grid, tmp_path / "second", cells=[SECOND])
    (out / "runs/binary/hog_svm").mkdir(parents=True)
    os.replace(tmp_path / "second/runs" / SECOND, out / "runs" / SECOND)
    clean = tmp_path / "clean"
    shutil.copytree(out, clean)
    write_report(clean)
    assert contents(clean) != contents(out)  # the new report differs from the old one
    return out, clean


def test_a_report_failing_in_a_figure_leaves_the_folder_byte_identical(reported, monkeypatch, capsys):
    out, clean = reported
    from fer_bench.figures import confusion

    before = snapshot(out)

    def broken(*args, **kwargs):
        raise RuntimeError("killed while drawing")

    monkeypatch.setattr(confusion, "confusion_figure", broken)
    with pytest.raises(RuntimeError, match="killed while drawing"):
        write_report(out)
    assert snapshot(out) == before
    monkeypatch.undo()
    write_report(out)
    assert contents(out) == contents(clean) and hidden(out) == []


def failing_after(real, calls: int, error: Exception):
    """`real`, raising `error` instead from its call number `calls` + 1 on (a disk that fills or fails)."""
    done = []

    def wrapper(*args):
        if len(done) == calls:
            raise error
        done.append(args)
        return real(*args)

    return wrapper


def test_a_report_failing_while_staging_or_swapping_rolls_back_or_is_completed(reported, monkeypatch):
    out, clean = reported
    from fer_bench import staging

    before = snapshot(out)
    monkeypatch.setattr(staging, "_write_synced",
                        failing_after(staging._write_synced, 5, OSError(28, "No space left on device")))
    with pytest.raises(Exception, match="No space left"):
        write_report(out)
    assert snapshot(out) == before  # staged files removed, nothing of <out> touched
    monkeypatch.undo()

    monkeypatch.setattr(staging.os, "replace", failing_after(os.replace, 3, OSError(5, "Input/output error")))
    with pytest.raises(Exception, match="Input/output error"):
        write_report(out)
    monkeypatch.undo()
    assert (out / REPORT_STAGING / ".complete").is_file()  # past the commit point: kept to be completed
    clear_leftovers(out)  # what the next report or run does first
    assert contents(out) == contents(clean) and hidden(out) == []


KILL = """
import os, sys
from pathlib import Path
from fer_bench import staging
from fer_bench.report import write_report

where, after = sys.argv[2], int(sys.argv[3])
target = staging if where == "write" else staging.os
name = "_write_synced" if where == "write" else "replace"
real, calls = getattr(target, name), []

def killed(*args):
    if where == "replace" and staging.REPORT_STAGING not in str(args[0]):
        return real(*args)  # a data cache's atomic write, not the swap
    if len(calls) == after:
        os._exit(9)  # a kill: no except, no finally
    calls.append(args)
    return real(*args)

setattr(target, name, killed)
write_report(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("where, after", [("write", 4), ("replace", 3)], ids=["while-staging", "while-swapping"])
def test_a_killed_report_is_rolled_back_or_completed_by_the_next(reported, where, after):
    out, clean = reported
    before = snapshot(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL), str(out), where, str(after)], env=env,
                          capture_output=True, text=True, timeout=300).returncode
    assert code == 9
    assert (out / REPORT_STAGING).is_dir()  # what a kill leaves
    if where == "write":  # before the commit point: every report file as it was
        assert {k: v for k, v in snapshot(out).items() if not k.startswith(REPORT_STAGING)} == before
    else:  # after it: old and new mixed until the next command
        assert contents(out) != contents(clean)
    write_report(out)
    assert contents(out) == contents(clean) and hidden(out) == []


def test_leftovers_of_interrupted_cells_and_reports_are_cleared_by_the_next_report(reported):
    out, clean = reported
    cells = {k: v for k, v in contents(out).items() if k.startswith("runs/") and not Path(k).name.startswith(".")}
    leftovers = [out / ".summary.md.k2j3h4.tmp", out / "figures/.roc_binary.png.a1b2c3.tmp",
                 out / "runs/binary/logreg/seed0/.predictions.csv.zz9.tmp",
                 out / "runs/binary/logreg/.seed7.staging/predictions.csv",
                 out / "runs/binary/hog_svm/.seed0.old-4242/manifest.json",
                 out / REPORT_STAGING / "summary.md"]  # no marker: rolled back
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by a killed process\n")
    write_report(out)
    assert hidden(out) == []
    assert contents(out) == contents(clean)
    assert {k: v for k, v in contents(out).items() if k.startswith("runs/")} == cells


def test_a_report_during_a_run_leaves_the_runs_files_alone(reported):
    out, _ = reported
    in_progress = out / "runs/binary/logreg/.seed3.staging/predictions.csv"
    with folder_lock(out) as alone:  # the run
        assert alone
        in_progress.parent.mkdir(parents=True)
        in_progress.write_text("a cell being computed\n")
        write_report(out)  # another process's report, meanwhile
        assert in_progress.read_text() == "a cell being computed\n"
        assert not (out / REPORT_STAGING).exists()
    write_report(out)  # the run is over: a leftover now
    assert not in_progress.parent.exists()


def test_a_killed_workers_temporary_folders_are_removed_by_the_next_cell(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-x1y2"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-a1b2"
    other = tmp_path / f"{SCRATCH_PREFIX}notapid"
    for folder in (killed, live, other):
        (folder / "cell").mkdir(parents=True)
    assert remove_dead_scratch(tmp_path) == [killed]
    assert not killed.exists() and live.exists() and other.exists()


# --- the reference model is chosen on PublicTest, never PrivateTest --------------------------------------------

def _rewrite_predictions(cell: Path, right_on: str) -> None:
    """Predictions of the stored cell rewritten (numpy, no training): 90% on the true label in the `right_on`
    split, on a wrong label in the other one."""
    stored = read_cell(cell)
    n = len(stored.class_names)
    labels = stored.labels
    chosen = np.where(stored.splits == right_on, labels, (labels + 1) % n)
    proba = np.full((len(labels), n), 0.1 / (n - 1))
    proba[np.arange(len(labels)), chosen] = 0.9
    (cell / "predictions.csv").write_text(
        predictions_csv(stored.splits, stored.image_ids, labels, proba, stored.class_names), encoding="utf-8")
    rerecord(cell)


def test_the_reference_model_follows_publictest_where_privatetest_prefers_another(tiny_grid, tmp_path):
    """logreg is right on PublicTest and wrong on PrivateTest, hog_svm (registered first, so it also wins a tie)
    the opposite: the reference must be logreg. Read PrivateTest instead and it would be hog_svm."""
    out = copy_grid(tiny_grid, tmp_path / "out", cells=[FIRST, SECOND])
    _rewrite_predictions(out / "runs" / FIRST, right_on="PublicTest")
    _rewrite_predictions(out / "runs" / SECOND, right_on="PrivateTest")
    cells = load_cells(out)
    settings = Settings()
    assert settings.selection_split == "PublicTest"
    assert choose_references(cells, settings) == {"binary": "logreg"}
    write_report(out)
    assert "the most accurate model on PublicTest): binary logreg." in (out / "summary.md").read_text()
