"""Issue 25, integrity: a damaged results folder or a bad model output is refused in one line (exit 2, no
traceback), never scored, never stored, and the folder is left exactly as it was.

- a stored predictions.csv that breaks a rule of fer_bench.validation, read by `report` and `compare` (in a cell
  stored without integrity records: the records, which catch any change first, are tested in
  tests/test_integrity_records.py);
- a cell computed on other data than its folder's (fer-bench.json's fingerprint);
- a model whose output breaks a rule, when its cell is computed: the cell fails in one line naming the model and
  the rule, nothing of it is stored, the other cells go on and are stored (serial mode, like Dask), and the same
  command computes only what is missing.

The argument checks (empty selections, --workers, --scheduler, --set) are in tests/test_bad_input.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_grid, one_line_error, run_cli, snapshot, without_records

from fer_bench.errors import FerBenchError
from fer_bench.models import registry_snapshot
from fer_bench.validation import (
    COMPUTED_SUM_TOLERANCE,
    check_predictions,
    check_probabilities,
    stored_sum_tolerance,
)

#: two cells of tiny_grid, enough for a report and a comparison
CELLS = ["binary/logreg/seed0", "binary/hog_svm/seed0"]
DAMAGED = "runs/binary/logreg/seed0"








# --- the validator itself --------------------------------------------------------------------------------------

def test_the_validator_names_each_rule():
    good = np.full((4, 2), 0.5)
    assert check_probabilities(good, 4, 2, where="m", tolerance=COMPUTED_SUM_TOLERANCE).shape == (4, 2)
    cases = {
        "shape": np.full(4, 0.5), "finite": np.where(good == 0.5, np.nan, good),
        "range": np.array([[1.5, -0.5]] * 4), "sum": good * 0.9,
    }
    for rule, proba in cases.items():
        with pytest.raises(FerBenchError, match=f"m: breaks the rule '{rule}'"):
            check_probabilities(proba, 4, 2, where="m", tolerance=COMPUTED_SUM_TOLERANCE)
    splits = np.array(["PublicTest", "PublicTest", "PrivateTest", "PrivateTest"])
    with pytest.raises(FerBenchError, match="'labels'"):
        check_predictions(splits, np.array([0, 1, 2, 0]), good, 2, ("PublicTest", "PrivateTest"), where="m",
                          tolerance=COMPUTED_SUM_TOLERANCE)
    with pytest.raises(FerBenchError, match="'splits': no PrivateTest rows"):
        check_predictions(splits[:2].repeat(2), np.zeros(4, int), good, 2, ("PublicTest", "PrivateTest"),
                          where="m", tolerance=COMPUTED_SUM_TOLERANCE)
    # stored at 6 decimals: a 7-class row off by the rounding is within the stored tolerance
    assert stored_sum_tolerance(7) == pytest.approx(7e-4)
    check_probabilities(np.array([[0.142857] * 7]), 1, 7, where="f", tolerance=stored_sum_tolerance(7))


# --- damaged stored predictions: refused by report and compare ----------------------------------------------------

def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _edit_row(path: Path, index: int, edit) -> None:
    rows = _rows(path)
    fields = rows[index].rstrip("\n").split(",")
    rows[index] = ",".join(edit(fields)) + "\n"
    path.write_text("".join(rows))


def missing_probability_column(path):
    _edit_row(path, 3, lambda f: f[:-1])
    return "line 4 has 4 fields, expected 5"


def nan_probability(path):
    _edit_row(path, 3, lambda f: [*f[:3], "nan", f[4]])
    return "breaks the rule 'finite'"


def negative_probability(path):
    _edit_row(path, 3, lambda f: [*f[:3], "-0.250000", "1.250000"])
    return "breaks the rule 'range'"


def row_not_summing_to_one(path):
    _edit_row(path, 3, lambda f: [*f[:3], "0.300000", "0.300000"])
    return "breaks the rule 'sum'"


def label_out_of_range(path):
    _edit_row(path, 3, lambda f: [f[0], f[1], "7", *f[3:]])
    return "breaks the rule 'labels'"


def unknown_split(path):
    _edit_row(path, 3, lambda f: ["Training", *f[1:]])
    return "breaks the rule 'splits'"


def zero_byte_file(path):
    path.write_bytes(b"")
    return "empty file"


def no_private_test_rows(path):
    path.write_text("".join(r for r in _rows(path) if not r.startswith("PrivateTest,")))
    return "no PrivateTest rows"


def cut_in_the_middle_of_a_number(path):
    text = path.read_text()
    path.write_text(text[: len(text) - 5])  # the last row still parses, its last probability cut short
    return "breaks the rule 'sum'"


def manifest_without_class_names(path):
    manifest = path.with_name("manifest.json")
    info = json.loads(manifest.read_text())
    del info["class_names"]
    manifest.write_text(json.dumps(info))
    return "not a cell manifest"


DAMAGES = [missing_probability_column, nan_probability, negative_probability, row_not_summing_to_one,
           label_out_of_range, unknown_split, zero_byte_file, no_private_test_rows, cut_in_the_middle_of_a_number,
           manifest_without_class_names]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_damaged_predictions_are_refused_by_report_and_compare(damage, tiny_grid, tmp_path, capsys):
    good = copy_grid(tiny_grid, tmp_path / "good", cells=CELLS)
    bad = copy_grid(tiny_grid, tmp_path / "bad", cells=CELLS)
    without_records(bad / DAMAGED)  # a cell stored before records: the rules alone catch the damage
    predictions = bad / DAMAGED / "predictions.csv"
    what = damage(predictions)
    before_bad, before_good = snapshot(bad), snapshot(good)
    where = str(bad / DAMAGED)
    code, out, err = run_cli(["report", "--out", bad], capsys)
    one_line_error(code, err, where, what)
    assert out == ""
    code, out, err = run_cli(["compare", good, bad, "--out", tmp_path / "comparison.md"], capsys)
    one_line_error(code, err, where, what)
    assert snapshot(bad) == before_bad and snapshot(good) == before_good
    assert not (tmp_path / "comparison.md").exists()


# --- a cell of other data in a folder ----------------------------------------------------------------------------

def test_a_foreign_cell_is_refused_by_report_and_compare(tiny_grid, baseline_grid, tmp_path, capsys):
    """baseline_grid's cell (small_synthetic) copied into a folder of tiny_synthetic's cells: it would be scored
    and retitle the report; it is refused, naming the cell."""
    good = copy_grid(tiny_grid, tmp_path / "good", cells=CELLS)
    mixed = copy_grid(tiny_grid, tmp_path / "mixed", cells=CELLS)
    shutil.copytree(baseline_grid.out / "runs/7class/logreg/seed0", mixed / "runs/7class/logreg/seed0")
    before = snapshot(mixed)
    foreign = str(mixed / "runs/7class/logreg/seed0")
    code, _, err = run_cli(["report", "--out", mixed], capsys)
    one_line_error(code, err, foreign, "a cell of other data", baseline_grid.dataset.fingerprint)
    code, _, err = run_cli(["compare", good, mixed], capsys)
    one_line_error(code, err, foreign, "a cell of other data")
    assert snapshot(mixed) == before


# --- a model whose output breaks a rule, when its cell is computed -----------------------------------------------

BAD_MODELS = textwrap.dedent("""\
    import numpy as np

    from fer_bench.models import register_model
    from fer_bench.models.base import ImageClassifier


    class BadOutput(ImageClassifier):
        def __init__(self, output="nan", random_state=0):
            self.output = output
            self.random_state = random_state

        def fit(self, X, y, sample_weight=None, validation_data=None):
            if self.output == "raise":
                raise RuntimeError("the solver diverged")
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            n, k = len(X), len(self.classes_)
            proba = np.full((n, k), 1.0 / k)
            if self.output == "nan":
                proba[0, 0] = np.nan
            elif self.output == "zeros":
                proba[:] = 0.0
            elif self.output == "1d":
                proba = proba[:, 0]
            elif self.output == "wide":
                proba = np.full((n, k + 1), 1.0 / (k + 1))
            elif self.output == "negative":
                proba[0, 0], proba[0, 1] = -0.5, 1.5
            elif self.output == "half":
                proba = proba / 2
            return proba


    def factory(output):
        def make(seed=0, quick=False, **params):
            return BadOutput(output=output, random_state=seed, **params)
        return make


    for output in ("nan", "zeros", "1d", "wide", "negative", "half", "raise"):
        register_model(f"bad_{output}", factory(output))
""")


@pytest.fixture
def bad_models(tmp_path) -> Iterator[Path]:
    """The plugin file registering the bad_* models; what it registers is unregistered when the test ends."""
    path = tmp_path / "bad_models.py"
    path.write_text(BAD_MODELS)
    with registry_snapshot():
        yield path


@pytest.mark.parametrize(("output", "rule"), [
    ("nan", "finite"), ("zeros", "sum"), ("1d", "shape"), ("wide", "shape"), ("negative", "range"),
    ("half", "sum"),
])
def test_a_model_breaking_a_rule_fails_its_cell_and_nothing_is_stored(output, rule, bad_models, tiny_fer_folder,
                                                                     tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--plugin", bad_models, "--models", f"bad_{output}", "--tasks", "binary",
                            "--data", tiny_fer_folder, "--out", out, "--no-report"], capsys)
    one_line_error(code, err, "1 of 1 cells failed", f"model bad_{output} (binary/seed0)",
                   f"breaks the rule '{rule}'")
    assert not (out / "runs/binary" / f"bad_{output}").exists()  # no cell, no staging folder left behind


def test_serial_mode_goes_on_after_a_failed_cell_and_the_rerun_computes_only_what_is_missing(
        bad_models, tiny_fer_folder, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["run", "--plugin", bad_models, "--models", "bad_raise,logreg,bad_nan", "--tasks", "binary",
            "--data", tiny_fer_folder, "--out", out, "--no-report"]
    with registry_snapshot():  # the second run registers the plugin's models again, as a new process would
        code, stdout, err = run_cli(argv, capsys)
    line = one_line_error(code, err, "2 of 3 cells failed", "binary/bad_raise/seed0: RuntimeError: the solver "
                          "diverged", "binary/bad_nan/seed0: model bad_nan", "the other cells are stored")
    assert "FAILED binary/bad_raise/seed0" in stdout and "Traceback" not in line
    # the cell after the failed one ran and is stored; the failed ones left nothing
    assert (out / "runs/binary/logreg/seed0/manifest.json").is_file()
    assert sorted(p.name for p in (out / "runs/binary").iterdir()) == ["logreg"]
    before = snapshot(out / "runs")
    code, stdout, err = run_cli(argv, capsys)
    one_line_error(code, err, "2 of 2 cells failed")
    assert "3 cells in" in stdout and "1 already finished, 2 to run" in stdout
    assert snapshot(out / "runs") == before  # the finished cell was not recomputed


# --- through a real process: nothing but the one line reaches the user ---------------------------------------------

def test_no_traceback_reaches_the_user_of_a_real_process(tiny_grid, bad_models, tiny_fer_folder, tmp_path):
    bad = copy_grid(tiny_grid, tmp_path / "bad", cells=CELLS)
    without_records(bad / DAMAGED)
    nan_probability(bad / DAMAGED / "predictions.csv")
    before = snapshot(bad)
    env = {k: v for k, v in os.environ.items() if k not in ("FER2013_DIR", "KAGGLEHUB_CACHE")}
    env["FER_BENCH_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         *filter(None, [env.get("PYTHONPATH")])])
    cases = [
        (["report", "--out", bad], [str(bad / DAMAGED), "breaks the rule 'finite'"]),
        (["run", "--plugin", bad_models, "--models", "bad_zeros", "--tasks", "binary", "--data", tiny_fer_folder,
          "--out", tmp_path / "results", "--no-report"], ["model bad_zeros", "breaks the rule 'sum'"]),
    ]
    for argv, needles in cases:
        proc = subprocess.run([sys.executable, "-m", "fer_bench", *map(str, argv)], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=300)
        one_line_error(proc.returncode, proc.stderr, *needles)
    assert snapshot(bad) == before
