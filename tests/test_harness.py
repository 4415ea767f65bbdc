"""The run -> stored predictions -> report pipeline on small synthetic data."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_grid
from scipy.stats import binomtest
from sklearn import metrics as skm

from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError
from fer_bench.metrics import holm_adjusted
from fer_bench.progress import estimate_remaining_seconds
from fer_bench.provenance import machine_label
from fer_bench.report import latex_escape, write_report
from fer_bench.run import run_grid
from fer_bench.storage import read_cell

HAS_TF = importlib.util.find_spec("tensorflow") is not None
TASKS = ["7class", "5class", "binary"]
TABLES = ["metrics.csv", "per_class.csv", "confusions.csv", "significance.csv", "floors.csv", "summary.md",
          "summary.tex"]


@pytest.fixture
def finished_run(quick_grid) -> Path:
    """The shared quick run of every model on small synthetic data, report included (conftest: the baselines,
    and, marked slow, the CNN too); read only: the tests that change it work on a copy."""
    return quick_grid.out


@pytest.fixture
def models(quick_grid) -> tuple[str, ...]:
    return quick_grid.models


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of finished_run for a test that changes it."""
    return copy_grid(finished_run, tmp_path / "results")


def _cells(out: Path):
    return sorted(p.parent for p in (out / "runs").glob("*/*/seed*/manifest.json"))


def test_every_cell_is_stored_with_predictions_params_timings_manifest(finished_run, models, small_synthetic):
    cells = _cells(finished_run)
    assert len(cells) == len(TASKS) * len(models)
    for path in cells:
        for name in ("predictions.csv", "params.json", "timings.json", "manifest.json"):
            assert (path / name).is_file(), path / name
        assert (path / "model" / "estimator.json").is_file()
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["dataset"]["fingerprint"] == small_synthetic.fingerprint
        assert manifest["seed"] == 0 and manifest["quick"] is True
        for key in ("code", "packages", "machine", "threads", "started", "finished", "command"):
            assert key in manifest
        cell = read_cell(path)
        # one probability row per PublicTest and PrivateTest image of the task, each summing to 1
        assert set(cell.splits) == {"PublicTest", "PrivateTest"}
        assert np.allclose(cell.proba.sum(axis=1), 1)
        timings = json.loads((path / "timings.json").read_text())
        assert timings["fit_seconds"] > 0
        # counted training arithmetic: the networks' (every epoch's images x 3 x forward FLOPs), nobody else's
        assert (timings.get("train_flops", 0) > 0) == (manifest["model"] == "cnn")
    # no staging folders or temporary files left behind
    assert not list(finished_run.rglob(".*.staging")) and not list(finished_run.rglob("*.tmp"))
    assert not (finished_run / "checkpoints").exists() or not any((finished_run / "checkpoints").rglob("*.keras"))


def test_binary_training_set_was_undersampled(finished_run):
    manifest = json.loads((finished_run / "runs/binary/logreg/seed0/manifest.json").read_text())
    counts = manifest["train_class_counts"]
    assert manifest["n_train"] == 2 * min(counts) < manifest["n_train_before_balancing"]


def test_report_is_byte_identical_when_regenerated(run_copy, small_synthetic):
    before = {name: (run_copy / name).read_bytes() for name in TABLES}
    for name in TABLES:
        (run_copy / name).unlink()
    write_report(run_copy, dataset=small_synthetic)  # the data set run_grid handed its report
    after = {name: (run_copy / name).read_bytes() for name in TABLES}
    assert before == after


def test_metrics_csv_equals_sklearn_on_stored_predictions(finished_run, models):
    with open(finished_run / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["subset"] == "all"]
    assert len(rows) == len(TASKS) * len(models) * 2
    for row in rows:
        with open(finished_run / "runs" / row["task"] / row["model"] / f"seed{row['seed']}" / "predictions.csv") as fh:
            preds = [p for p in csv.DictReader(fh) if p["split"] == row["split"]]
        y = np.array([int(p["label"]) for p in preds])
        proba = np.array([[float(v) for k, v in p.items() if k.startswith("prob_")] for p in preds])
        pred = proba.argmax(1)
        assert float(row["accuracy"]) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
        assert float(row["f1_macro"]) == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
        if proba.shape[1] == 2:
            auc = skm.roc_auc_score(y, proba[:, 1])
        else:
            auc = skm.roc_auc_score(y, proba / proba.sum(1, keepdims=True), multi_class="ovr", average="macro")
        assert float(row["roc_auc_macro"]) == pytest.approx(auc, abs=1e-6)


def test_summary_says_synthetic_and_names_commit_and_machine(finished_run, models):
    summary = (finished_run / "summary.md").read_text()
    assert "Synthetic data" in summary
    assert "commit" in summary and "cores" in summary
    manifest = json.loads(next(finished_run.glob("runs/7class/*/seed0/manifest.json")).read_text())
    assert machine_label(manifest["machine"]) in summary  # the CPU with its widest instruction set
    for model in models:
        assert f"| 7class | {model} |" in summary


def test_latex_table_has_one_escaped_row_per_cell(finished_run, models):
    metrics = {(r["task"], r["model"]): r for r in csv.DictReader(open(finished_run / "metrics.csv"))
               if r["split"] == "PrivateTest" and r["subset"] == "all"}
    tex = (finished_run / "summary.tex").read_text()
    rows = [line for line in tex.splitlines() if line.endswith(r"\\") and not line.startswith("Task")]
    assert len(rows) == len(TASKS) * len(models)
    for (task, model), row in metrics.items():
        expected = f"{task} & {model.replace('_', chr(92) + '_')} & {100 * float(row['accuracy']):.1f} ["
        assert any(line.startswith(expected) for line in rows), expected
    assert latex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i"
                                                     r"\textasciicircum{}j\textbackslash{}k")


def test_models_beat_chance_on_synthetic(finished_run):
    with open(finished_run / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "PrivateTest" and row["task"] == "7class":
                assert float(row["accuracy"]) > 2 / 7, row["model"]


def test_rerun_skips_finished_cells_and_force_recomputes(run_copy, models, small_synthetic, capsys):
    manifest = run_copy / "runs/binary/logreg/seed0/manifest.json"
    before = manifest.read_bytes(), manifest.stat().st_mtime_ns
    proba_before = read_cell(manifest.parent).proba
    run_grid(dataset=small_synthetic, models=list(models), quick=True, out=run_copy, report=False)
    assert "0 to run" in capsys.readouterr().out
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    run_grid(dataset=small_synthetic, tasks=["binary"], models=["logreg"], quick=True, out=run_copy,
             force=True, report=False)
    assert "1 to run" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns != before[1]
    # the baselines are deterministic: the recomputed predictions are identical
    assert np.array_equal(read_cell(manifest.parent).proba, proba_before)


def test_unknown_names_fail_before_anything_is_written(tmp_path, small_synthetic):
    out = tmp_path / "results"
    with pytest.raises(FerBenchError, match="unknown task 'eightclass'"):
        run_grid(dataset=small_synthetic, tasks=["eightclass"], out=out)
    with pytest.raises(FerBenchError, match="unknown model 'resnet'"):
        run_grid(dataset=small_synthetic, models=["resnet"], out=out)
    assert not out.exists()


def test_incompatible_or_foreign_results_folder_is_refused(tmp_path, run_copy, small_synthetic):
    old = tmp_path / "old"
    old.mkdir()
    (old / "fer-bench.json").write_text(json.dumps({"format": 0, "dataset": "synthetic"}))
    with pytest.raises(FerBenchError, match="incompatible fer-bench"):
        run_grid(dataset=small_synthetic, models=["logreg"], tasks=["binary"], out=old)
    with pytest.raises(FerBenchError, match="incompatible fer-bench"):
        write_report(old)
    other = make_synthetic(n_train=700, n_public=210, n_private=210, seed=1)
    with pytest.raises(FerBenchError, match="other data"):
        run_grid(dataset=other, models=["logreg"], tasks=["binary"], out=run_copy)


def test_report_without_runs_fails_cleanly(tmp_path):
    with pytest.raises(FerBenchError, match="not a fer-bench results folder"):
        write_report(tmp_path)


def test_cli_run_falls_back_to_synthetic_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FER2013_DIR",)}
    env.update(KAGGLEHUB_CACHE=str(tmp_path / "kaggle"), FER_BENCH_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "fer_bench", "run", "--quick", "--tasks", "binary", "--models", "logreg"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stderr
    assert (tmp_path / "results" / "synthetic-quick" / "runs/binary/logreg/seed0/manifest.json").is_file()
    assert "Traceback" not in result.stderr


def test_synthetic_data_always_uses_the_quick_configurations(tmp_path, small_synthetic, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_grid(dataset=small_synthetic, tasks=["binary"], models=["logreg"], report=False)
    manifest = json.loads((tmp_path / "results" / "synthetic" / "runs/binary/logreg/seed0/manifest.json").read_text())
    assert manifest["quick"] is True and manifest["dataset"]["name"] == "synthetic"


@pytest.mark.slow
def test_summary_opens_with_the_headline_then_findings_that_match_the_tables(cnn_grid):
    """The findings compare the CNN with the baselines: on cnn_grid (skips without TensorFlow)."""
    finished_run = cnn_grid.out
    summary = (finished_run / "summary.md").read_text()
    titles = [line for line in summary.splitlines() if line.startswith("## ")]
    assert titles[0].startswith("## Headline") and titles[1] == "## Findings"
    findings = summary.split("## Findings", 1)[1].split("\n## ", 1)[0]
    with open(finished_run / "metrics.csv", newline="") as fh:
        accuracy = {(r["task"], r["model"]): 100 * float(r["accuracy"]) for r in csv.DictReader(fh)
                    if r["split"] == "PrivateTest" and r["subset"] == "all"}
    with open(finished_run / "significance.csv", newline="") as fh:
        tests = [r for r in csv.DictReader(fh) if r["split"] == "PrivateTest"]
    families = defaultdict(list)
    for r in tests:  # written to 6 significant digits, however small
        b, c = int(r["a_right_b_wrong"]), int(r["a_wrong_b_right"])
        expected = binomtest(b, b + c).pvalue if b + c else 1.0
        assert float(r["p_value"]) == pytest.approx(expected, rel=1e-5)
        families[(r["task"], r["seed"])].append(r)
    for family in families.values():  # Holm over the reference's comparisons of one task and seed
        adjusted = holm_adjusted([float(r["p_value"]) for r in family])
        assert [float(r["p_holm"]) for r in family] == pytest.approx(adjusted, rel=1e-5)
    answer = findings.strip().splitlines()[0]
    assert answer.startswith("- **Accuracy** (PrivateTest), the cnn minus the best classic model")
    for task in TASKS:
        best = max(("hog_svm", "logreg"), key=lambda b: accuracy[(task, b)])  # the registry's classic models
        gain = accuracy[(task, "cnn")] - accuracy[(task, best)]
        assert (f"{task} {gain:+.1f} vs {best} ({accuracy[(task, 'cnn')]:.1f}% vs "
                f"{accuracy[(task, best)]:.1f}%)") in answer
    assert "**Per class, 7class**" in findings and "**Confusions** (7class" in findings
    assert "**Saliency** (7class" in findings and "**Cost** (7class" in findings


@pytest.mark.skipif(not HAS_TF, reason="the CNN counts its epochs")
def test_training_rate_counts_only_the_passes_this_fit_made():
    from fer_bench.baselines.logreg import make_logreg

    from fer_bench.models.cnn import CNNClassifier

    assert make_logreg().training_passes() == 1  # a single-pass model
    cnn = CNNClassifier()
    cnn.selected_params_ = {"epochs_run": 30, "resumed_from_epoch": None}
    assert cnn.training_passes() == 30
    # resumed after epoch 12: this fit() call (and its fit_seconds) made epochs 13..30
    cnn.selected_params_ = {"epochs_run": 30, "resumed_from_epoch": 12}
    assert cnn.training_passes() == 18


def test_eta_uses_each_models_own_cell_time():
    seconds = {"cnn": [2400.0, 2000.0], "logreg": [30.0]}
    assert estimate_remaining_seconds(["cnn", "logreg", "logreg"], seconds) == pytest.approx(2200 + 60)
    assert estimate_remaining_seconds([], seconds) == 0
    assert estimate_remaining_seconds(["cnn", "hog_svm"], seconds) is None  # no hog_svm cell finished yet


def test_summary_lists_what_each_cell_chose_on_publictest(finished_run, models):
    summary = (finished_run / "summary.md").read_text()
    section = summary.split("## What each model chose on PublicTest", 1)[1].split("\n## ", 1)[0]
    table = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    header, rows = table[0], {cells[0]: cells for cells in table[1:]}
    assert header == ["model", "seeds", *TASKS] and set(rows) == set(models)  # a row per model, a column per task
    for path in _cells(finished_run):
        cell = read_cell(path)
        selected = cell.params["selected"]
        assert rows[cell.model][1] == str(cell.seed)
        chosen, accuracy = rows[cell.model][header.index(cell.task)].split(" · ")
        if cell.model == "logreg":
            assert chosen == f"C {selected['C']:g}"
            assert accuracy == f"{100 * selected['validation_accuracy']:.1f}"
        if cell.model == "hog_svm":
            assert chosen.startswith(f"C {selected['C']:g}, gamma scale {selected['gamma_scale']:g}")
        if cell.model == "cnn":
            views = selected["test_views"]
            assert chosen == f"epoch {selected['best_epoch']}/{selected['epochs_run']}, test views {views}"
            # the PublicTest accuracy of what predicts: the kept epoch with the chosen views
            assert cell.params["validation_accuracy"] == selected["val_accuracy_by_views"][str(views)]
            assert accuracy == f"{100 * cell.params['validation_accuracy']:.1f}"


def test_run_ends_by_printing_the_headline_table(tiny_grid, tiny_synthetic, tmp_path, capsys):
    """A run's last lines are the headline table (task, model, accuracy as metrics.csv has it), not just a path."""
    from fer_bench.run import run_grid

    out = copy_grid(tiny_grid, tmp_path / "out", cells=["binary/logreg/seed0"])
    run_grid(dataset=tiny_synthetic, tasks=["binary"], models=["logreg"], seeds=(0,), quick=True, out=out,
             report=True, live=False)
    lines = capsys.readouterr().out.strip().splitlines()
    with open(out / "metrics.csv", newline="", encoding="utf-8") as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["split"] == "PrivateTest" and r["subset"] == "all"]
    header, only = lines[-2].split(), lines[-1].split()
    assert header[:2] == ["task", "model"] and "accuracy" in header
    assert only[:2] == ["binary", "logreg"] and only[2] == f"{100 * float(row['accuracy']):.1f}"
    assert "summary.md" in lines[-3]
