"""Statistics across seeds in the report: mean ± std over seeds in the tables, seed ensembles (the average of
the seeds' stored probabilities) with their own bootstrap interval, the seed-level summary of the McNemar tests,
per-class gains over seeds, and a one-seed folder with none of these.

One small grid of the two baselines on synthetic data, three seeds, built once for the module; its one-seed
counterpart is a copy with seeds 1 and 2 removed.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data.synthetic import make_synthetic
from fer_bench.metrics import paired_recall_gain
from fer_bench.report import build_report
from fer_bench.report.seeds import ENSEMBLE_FIELD, SeedEnsemble, ensemble_of, is_ensemble, with_ensembles
from fer_bench.run import run_grid

SEEDS = (0, 1, 2)
MODELS = ("hog_svm", "logreg")
HEADLINE = "PrivateTest"


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "results"
    run_grid(dataset=make_synthetic(n_train=300, n_public=90, n_private=90, seed=0), tasks=["binary", "5class"],
             models=list(MODELS), seeds=SEEDS, quick=True, out=out, report=False)
    return out


@pytest.fixture(scope="module")
def report(grid):
    return build_report(grid)


@pytest.fixture(scope="module")
def one_seed_report(grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_seed") / "results"
    shutil.copytree(grid, out)
    for cell in out.glob("runs/*/*/seed[12]"):
        shutil.rmtree(cell)
    return build_report(out)


def csv_rows(report, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(report.files[name])))


def stored_predictions(cell: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities with rows summing to 1) of one split, read straight from predictions.csv."""
    with open(cell / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    labels = np.array([int(r["label"]) for r in rows])
    proba = np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])
    return labels, proba / proba.sum(axis=1, keepdims=True)


def table_line(markdown: str, *cells: str) -> list[str]:
    """The cells of the one table line starting with `cells`."""
    prefix = "| " + " | ".join(cells) + " |"
    lines = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return [c.strip() for c in lines[0].strip("|").split("|")]


def per_seed(report, task: str, model: str, split: str = HEADLINE) -> list[dict]:
    rows = [r for r in csv_rows(report, "metrics.csv") if r["task"] == task and r["model"] == model
            and r["split"] == split and r["subset"] == "all"]
    assert [int(r["seed"]) for r in rows] == list(SEEDS)
    return rows


def spread_text(values, scale: float = 100, decimals: int = 1) -> str:
    values = scale * np.array(values, dtype=float)
    return f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f}"


# --- tables: mean ± std over seeds ----------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["binary", "5class"])
@pytest.mark.parametrize("model", MODELS)
def test_headline_shows_mean_std_of_the_per_seed_rows(report, task, model):
    rows = per_seed(report, task, model)
    public = per_seed(report, task, model, "PublicTest")
    line = table_line(report.sections[0].markdown, task, model, "3")
    assert line[3] == spread_text([r["accuracy"] for r in rows])
    assert line[4] == spread_text([r["f1_macro"] for r in rows])
    assert line[5] == spread_text([r["roc_auc_macro"] for r in rows], scale=1, decimals=3)
    assert line[8] == spread_text([r["accuracy"] for r in public])
    assert line[9] == spread_text([r["fit_seconds"] for r in rows], scale=1) + " s"


def test_headline_says_how_many_seeds(report):
    headline = report.sections[0].markdown
    assert headline.startswith("**3 seeds** per task and model (seeds 0, 1, 2)")
    assert "| task | model | seeds | accuracy % |" in headline


def test_per_class_table_shows_recall_mean_std(report):
    rows = [r for r in csv_rows(report, "per_class.csv")
            if r["task"] == "5class" and r["model"] == "logreg" and r["split"] == HEADLINE and r["class"] == "happy"]
    assert len(rows) == 3
    section = next(s.markdown for s in report.sections if s.title.startswith("Per-class recall and F1"))
    assert "mean ± std over 3 seeds" in section
    line = table_line(section, "happy")
    assert f"{spread_text([r['recall'] for r in rows])} | {spread_text([r['f1'] for r in rows])}" in " | ".join(line)


def test_timing_table_shows_mean_std_and_seeds(report):
    rows = [r for r in csv_rows(report, "timing.csv") if r["task"] == "binary" and r["model"] == "hog_svm"]
    assert [int(r["seed"]) for r in rows] == list(SEEDS)  # per seed in the CSV
    section = next(s.markdown for s in report.sections if s.title.startswith("Timing"))
    line = table_line(section, "binary", "hog_svm", "3")
    assert line[3] == spread_text([r["accuracy"] for r in rows])
    values = np.array([float(r["fit_seconds"]) for r in rows])
    assert line[4] == f"{values.mean():,.1f} ± {values.std(ddof=1):,.1f}"


# --- seed ensembles -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", [HEADLINE, "PublicTest"])
@pytest.mark.parametrize("task", ["binary", "5class"])
@pytest.mark.parametrize("model", MODELS)
def test_ensemble_row_scores_the_averaged_stored_probabilities(report, grid, task, model, split):
    predictions = [stored_predictions(grid / "runs" / task / model / f"seed{s}", split) for s in SEEDS]
    labels = predictions[0][0]
    averaged = np.mean([proba for _, proba in predictions], axis=0)
    expected = float(np.mean(averaged.argmax(axis=1) == labels))
    rows = [r for r in csv_rows(report, "metrics.csv")
            if r["model"] == f"{model} (seed ensemble, 3)" and r["task"] == task and r["split"] == split]
    assert len(rows) == 1
    row = rows[0]
    assert row["seed"] == "ensemble"
    assert float(row["accuracy"]) == pytest.approx(expected, abs=1e-6)
    assert float(row["accuracy_ci_low"]) <= float(row["accuracy"]) <= float(row["accuracy_ci_high"])
    assert float(row["accuracy_ci_low"]) < float(row["accuracy_ci_high"])  # its own bootstrap interval
    fits = [float(r["fit_seconds"]) for r in per_seed(report, task, model)]
    assert float(row["fit_seconds"]) == pytest.approx(sum(fits), abs=1e-5)
    assert row["predict_images_per_s"] == ""


def test_an_ensemble_row_is_marked_by_its_field_not_its_text(report):
    ensembles = [r for r in report.metric_rows if is_ensemble(r)]
    assert {(r["task"], ensemble_of(r).model) for r in ensembles} == {
        (task, model) for task in ("binary", "5class") for model in MODELS}
    assert all(ensemble_of(r).seeds == SEEDS for r in ensembles)
    assert all(ensemble_of(r) is None for r in report.metric_rows if r["seed"] != "ensemble")
    assert ENSEMBLE_FIELD not in report.files["metrics.csv"].splitlines()[0]
    # the CSV's texts alone do not make a row an ensemble's
    assert not is_ensemble({"task": "binary", "model": "logreg (seed ensemble, 3)", "seed": "ensemble"})


def test_ensemble_rows_are_placed_after_the_seeds_their_field_names():
    seed_rows = [{"task": "t", "model": "m", "seed": 0}, {"task": "t", "model": "m", "seed": 1},
                 {"task": "t", "model": "n", "seed": 0}]
    ensemble = {"task": "t", "model": "any label", "seed": "ensemble", ENSEMBLE_FIELD: SeedEnsemble("m", (0, 1))}
    assert with_ensembles(seed_rows, [ensemble]) == [*seed_rows[:2], ensemble, seed_rows[2]]


def test_ensemble_rows_follow_their_seeds_and_stay_out_of_other_tables(report):
    metric_rows = csv_rows(report, "metrics.csv")
    keys = list(dict.fromkeys((r["task"], r["model"]) for r in metric_rows))
    assert keys == [(task, name) for task in ("5class", "binary")  # registered task order
                    for model in MODELS for name in (model, f"{model} (seed ensemble, 3)")]
    for name in ("per_class.csv", "confusions.csv", "timing.csv"):
        assert "ensemble" not in report.files[name], name
    assert "ensemble" not in report.files["significance.csv"]
    line = table_line(report.sections[0].markdown, "binary", "logreg (seed ensemble, 3)")
    assert line[2] == "3 averaged"
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", line[3])
    assert line[9].endswith("s (3 fits)")
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    assert "Seed ensembles (the average of a model's seeds' stored probabilities, no training" in findings


# --- significance and per-class gains over seeds --------------------------------------------------------------

def test_significance_summary_counts_the_per_seed_tests(report):
    per_seed_tests = defaultdict(list)
    for r in csv_rows(report, "significance.csv"):
        per_seed_tests[(r["task"], r["split"], r["model_a"], r["model_b"])].append(r)
    summary = report.tables.significance_summary_rows
    assert {(r["task"], r["split"], r["model_a"], r["model_b"]) for r in summary} == set(per_seed_tests)
    section = next(s.markdown for s in report.sections if s.title.startswith("Is the reference model's"))
    for r in summary:
        tests = per_seed_tests[(r["task"], r["split"], r["model_a"], r["model_b"])]
        assert [int(t["seed"]) for t in tests] == list(SEEDS)
        n_significant = sum(t["significant_0.05"] == "1" for t in tests)
        max_p = max(float(t["p_value"]) for t in tests)
        assert r["n_significant"] == n_significant
        assert r["max_p_value"] == pytest.approx(max_p, rel=1e-5)
        line = table_line(section, r["task"], r["split"], f"{r['model_a']} vs {r['model_b']}")
        assert line[3:5] == ["0, 1, 2", f"{n_significant}/3"]
        assert float(line[7]) == pytest.approx(max_p, rel=0.05)
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    binary = next(r for r in summary if r["task"] == "binary" and r["split"] == HEADLINE)
    assert f"(significant in {binary['n_significant']}/3 seeds" in findings
    assert "one test per seed" in findings


def test_class_gains_over_seeds_match_per_seed_recalls(report, grid):
    recall = {(r["task"], r["model"], int(r["seed"]), r["class"]): float(r["recall"])
              for r in csv_rows(report, "per_class.csv") if r["split"] == HEADLINE}
    rows = report.tables.class_gain_rows
    assert {(r["task"], r["model_b"]) for r in rows} == {
        (task, next(m for m in MODELS if m != report.inputs.reference(task))) for task in ("binary", "5class")}
    section = next(s.markdown for s in report.sections if s.title.startswith("Per-class recall gains"))
    for r in rows:
        gains = [recall[(r["task"], r["model_a"], s, r["class"])] - recall[(r["task"], r["model_b"], s, r["class"])]
                 for s in SEEDS]
        assert r["gains"] == pytest.approx(gains, abs=1e-6)
        assert r["gain_mean"] == pytest.approx(np.mean(gains), abs=1e-6)
        assert r["gain_std"] == pytest.approx(np.std(gains, ddof=1), abs=1e-6)
        table_line(section, r["task"], f"{r['model_a']} vs {r['model_b']}", r["class"], "0, 1, 2")
    # "holds" against each seed's paired interval, computed here from the stored predictions
    task = "5class"
    ref, other = report.inputs.reference(task), next(r["model_b"] for r in rows if r["task"] == task)
    intervals = []
    for seed in SEEDS:
        labels, proba_a = stored_predictions(grid / "runs" / task / ref / f"seed{seed}", HEADLINE)
        _, proba_b = stored_predictions(grid / "runs" / task / other / f"seed{seed}", HEADLINE)
        intervals.append(paired_recall_gain(labels, proba_a.argmax(1), proba_b.argmax(1), proba_a.shape[1],
                                            seed=seed)[1])
    intervals = np.array(intervals)
    for k, r in enumerate(r for r in rows if r["task"] == task):
        expected = ("gain" if (intervals[:, k, 0] > 0).all() else
                    "loss" if (intervals[:, k, 1] < 0).all() else None)
        assert r["holds"] == expected, r["class"]
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    assert "Per-class differences that hold in every seed" in findings


def test_html_holds_the_seed_sections(report):
    page = report.files["index.html"]
    assert "significant (p &lt; 0.05)" in page
    assert "hog_svm (seed ensemble, 3)" in page
    assert "Per-class recall gains of the reference model over seeds" in page


# --- one seed: none of it -------------------------------------------------------------------------------------

def test_one_seed_grid_has_no_ensembles_and_no_spreads(one_seed_report):
    assert "ensemble" not in one_seed_report.files["metrics.csv"]
    assert not one_seed_report.tables.significance_summary_rows
    assert not one_seed_report.tables.class_gain_rows
    for name in ("summary.md", "index.html", "summary.tex"):
        text = one_seed_report.files[name]
        assert "±" not in text and "$\\pm$" not in text, name
        assert "seed ensemble" not in text, name
    summary = one_seed_report.files["summary.md"]
    assert "| task | model | accuracy % [95% CI] | macro-F1 % [95% CI] |" in summary
    assert "over seeds (" not in summary and "Per-class recall gains" not in summary
    assert "(p: exact McNemar test on the same PrivateTest images, seed 0.)" in summary
