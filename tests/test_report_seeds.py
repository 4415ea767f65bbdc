"""Statistics across seeds in the report: mean ± std over seeds in the tables, seed ensembles (the average of
the seeds' stored probabilities) with their own bootstrap interval, the seed-level summary of the McNemar tests,
per-class gains over seeds, and a one-seed folder with none of these.

One small grid of the two baselines on synthetic data, three seeds (a copy of part of conftest's tiny_grid,
computed once per test run); its one-seed counterpart is a copy with seeds 1 and 2 removed.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import copy_grid

from fer_bench.metrics import holm_adjusted, paired_recall_gain
from fer_bench.models import CLASSIC, PRETRAINED, registered_model
from fer_bench.report import build_report, latex_escape
from fer_bench.report.findings import MAX_FINDINGS
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.seeds import ENSEMBLE_FIELD, SeedEnsemble, ensemble_of, is_ensemble, with_ensembles
from fer_bench.settings import Settings

SEEDS = (0, 1, 2)
MODELS = ("hog_svm", "logreg")
HEADLINE = "PrivateTest"


@pytest.fixture(scope="module")
def grid(tiny_grid, tmp_path_factory) -> Path:
    """binary and 5class of conftest's shared tiny_grid: MODELS with SEEDS on 300/90/90 synthetic faces."""
    return copy_grid(tiny_grid, tmp_path_factory.mktemp("seeds") / "results",
                     cells=[f"{task}/{model}/seed{seed}" for task in ("binary", "5class") for model in MODELS
                            for seed in SEEDS])


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

def identical_seeds(grid: Path, task: str, model: str) -> bool:
    """Whether every seed stored the same predictions, read straight from predictions.csv."""
    texts = {(grid / "runs" / task / model / f"seed{seed}" / "predictions.csv").read_bytes() for seed in SEEDS}
    return len(texts) == 1


def mean_interval_text(rows: list[dict], metric: str) -> str:
    low = 100 * np.mean([float(r[f"{metric}_ci_low"]) for r in rows])
    high = 100 * np.mean([float(r[f"{metric}_ci_high"]) for r in rows])
    return f"[{low:.1f}, {high:.1f}]"


@pytest.mark.parametrize("task", ["binary", "5class"])
@pytest.mark.parametrize("model", MODELS)
def test_headline_shows_seed_sd_and_the_images_interval_in_separate_columns(report, grid, task, model):
    rows = per_seed(report, task, model)
    public = per_seed(report, task, model, "PublicTest")
    deterministic = identical_seeds(grid, task, model)
    assert report.inputs.is_deterministic(task, model) == deterministic
    headline, full = report.sections[0].markdown, all_metrics_section(report)
    if deterministic:  # shown once: one seed's numbers, no spread, no ensemble row
        line = table_line(headline, task, model, "3, identical")
        full_line = table_line(full, task, model, "3, identical")
        rows, public = rows[:1], public[:1]
        assert line[3] == f"{100 * float(rows[0]['accuracy']):.1f}"
        assert line[7] == f"{float(rows[0]['roc_auc_macro']):.3f}"
        assert line[8] == f"{100 * float(public[0]['accuracy']):.1f}"
        assert full_line[3] == f"{float(rows[0]['log_loss']):.3f}" and full_line[4] == f"{float(rows[0]['ece']):.3f}"
        assert full_line[5:] == ["–"] * 6  # no seed ensemble of identical seeds
    else:
        line = table_line(headline, task, model, "3")
        full_line = table_line(full, task, model, "3")
        assert line[3] == spread_text([r["accuracy"] for r in rows])
        assert line[5] == spread_text([r["f1_macro"] for r in rows])
        assert line[7] == spread_text([r["roc_auc_macro"] for r in rows], scale=1, decimals=3)
        assert line[8] == spread_text([r["accuracy"] for r in public])
        assert full_line[3] == spread_text([r["log_loss"] for r in rows], scale=1, decimals=3)
        assert full_line[4] == spread_text([r["ece"] for r in rows], scale=1, decimals=3)
    assert line[4] == mean_interval_text(rows, "accuracy")
    assert line[6] == mean_interval_text(rows, "f1_macro")
    fits = [float(r["fit_seconds"]) for r in per_seed(report, task, model)]
    # every seed's fit, identical predictions or not; † when one shared the CPUs (what ran beside the tests)
    shared = any(r["fit_shared"] == "1" for r in csv_rows(report, "timing.csv")
                 if r["task"] == task and r["model"] == model)
    assert line[9] == spread_text(fits, scale=1) + " s" + (" †" if shared else "")
    assert full_line[:3] == line[:3]  # the second table: the same rows, keyed the same way


def test_summary_tex_gives_a_deterministic_model_one_value_and_its_interval(report, grid):
    tex_lines = report.files["summary.tex"].splitlines()
    cases = [(task, model) for task in ("binary", "5class") for model in MODELS]
    assert any(identical_seeds(grid, *case) for case in cases) and not all(identical_seeds(grid, *c) for c in cases)
    for task, model in cases:
        line = next(line for line in tex_lines if line.startswith(f"{task} & {latex_escape(model)} & "))
        if identical_seeds(grid, task, model):  # no "± 0.0": the one seed's value and its images' interval
            accuracy = 100 * float(per_seed(report, task, model)[0]["accuracy"])
            assert "$\\pm$" not in line and line.split(" & ")[2].startswith(f"{accuracy:.1f} [")
        else:
            assert "$\\pm$" in line and "(3 seeds)" in line


def all_metrics_section(report) -> str:
    return next(s.markdown for s in report.sections if s.title.startswith("Every headline metric"))


def test_headline_says_how_many_seeds(report):
    headline = report.sections[0].markdown
    assert headline.startswith("| task | model | seeds | accuracy % ± seed sd | accuracy images' 95% CI | macro-F1 % "
                               "± seed sd | macro-F1 images' 95% CI | ROC AUC (macro) ± seed sd | PublicTest acc % "
                               "| fit time |\n")  # the brief metrics: the answer first
    assert "\n**3 seeds** per task and model (seeds 0, 1, 2" in headline


def test_per_class_table_shows_the_references_recall_and_its_gains(report):
    task, cls = "5class", "happy"
    ref = report.inputs.reference(task)
    rows = [r for r in csv_rows(report, "per_class.csv")
            if r["task"] == task and r["model"] == ref and r["split"] == HEADLINE and r["class"] == cls]
    assert len(rows) == 3
    section = next(s.markdown for s in report.sections if s.title.startswith("Per-class recall and the"))
    line = table_line(section, task, cls)
    recalls = [r["recall"] for r in rows]
    expected = (f"{100 * float(recalls[0]):.1f}" if report.inputs.is_deterministic(task, ref)
                else spread_text(recalls))
    assert line[3] == expected
    assert f"{ref} recall %" in section


def test_timing_table_shows_mean_std_and_seeds(report):
    rows = [r for r in csv_rows(report, "timing.csv") if r["task"] == "binary" and r["model"] == "hog_svm"]
    assert [int(r["seed"]) for r in rows] == list(SEEDS)  # per seed in the CSV
    section = next(s.markdown for s in report.sections if s.title.startswith("Timing"))
    assert {r["machine"] for r in rows} == {rows[0]["machine"]}  # one machine: one row, named M1 below the table
    assert f"Machines: M1 {rows[0]['machine']}." in section
    line = table_line(section, "binary", "hog_svm", "M1", "3")
    assert line[4] == spread_text([r["accuracy"] for r in rows])
    values = np.array([float(r["fit_seconds"]) for r in rows])
    shared = any(r["fit_shared"] == "1" for r in rows)
    assert line[5] == f"{values.mean():,.1f} ± {values.std(ddof=1):,.1f}" + (" †" if shared else "")
    assert all(r["fit_load_average"] != "" for r in rows)  # the cells record the load around their fit


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
    if identical_seeds(grid, task, model):  # the average of identical seeds is one seed again: no row
        assert rows == []
        return
    assert len(rows) == 1
    row = rows[0]
    assert row["seed"] == "ensemble"
    assert float(row["accuracy"]) == pytest.approx(expected, abs=1e-6)
    assert float(row["accuracy_ci_low"]) <= float(row["accuracy"]) <= float(row["accuracy_ci_high"])
    assert float(row["accuracy_ci_low"]) < float(row["accuracy_ci_high"])  # its own bootstrap interval
    fits = [float(r["fit_seconds"]) for r in per_seed(report, task, model)]
    assert float(row["fit_seconds"]) == pytest.approx(sum(fits), abs=1e-5)
    assert row["predict_images_per_s"] == ""


def test_an_ensemble_row_is_marked_by_its_field_not_its_text(report, grid):
    ensembles = [r for r in report.metric_rows if is_ensemble(r)]
    assert {(r["task"], ensemble_of(r).model) for r in ensembles} == {
        (task, model) for task in ("binary", "5class") for model in MODELS if not identical_seeds(grid, task, model)}
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


def test_ensemble_rows_follow_their_seeds_and_stay_out_of_other_tables(report, grid):
    metric_rows = csv_rows(report, "metrics.csv")
    keys = list(dict.fromkeys((r["task"], r["model"]) for r in metric_rows))
    assert keys == [(task, name) for task in ("5class", "binary")  # registered task order
                    for model in MODELS for name in (model, f"{model} (seed ensemble, 3)")
                    if name == model or not identical_seeds(grid, task, model)]
    for name in ("per_class.csv", "confusions.csv", "timing.csv"):
        assert "ensemble" not in report.files[name], name
    assert "ensemble" not in report.files["significance.csv"]
    assert not identical_seeds(grid, "binary", "hog_svm")  # the SVM's probability calibration draws on its seed
    assert "seed ensemble, 3)" not in "".join(line for line in report.sections[0].markdown.splitlines()
                                              if line.startswith("|"))  # the headline keeps to trained models
    # the seed ensemble's metrics beside its model's: every headline metric, then its PublicTest accuracy
    ensemble, ensemble_public = (
        next(r for r in metric_rows if r["model"] == "hog_svm (seed ensemble, 3)" and r["task"] == "binary"
             and r["split"] == split and r["subset"] == "all") for split in (HEADLINE, "PublicTest"))
    line = table_line(all_metrics_section(report), "binary", "hog_svm", "3")
    assert line[5] == (f"{100 * float(ensemble['accuracy']):.1f} [{100 * float(ensemble['accuracy_ci_low']):.1f}, "
                       f"{100 * float(ensemble['accuracy_ci_high']):.1f}]")
    assert line[8] == f"{float(ensemble['log_loss']):.3f}" and line[9] == f"{float(ensemble['ece']):.3f}"
    assert line[10] == f"{100 * float(ensemble_public['accuracy']):.1f}"


# --- significance and per-class gains over seeds --------------------------------------------------------------

def test_significance_summary_counts_the_holm_corrected_per_seed_tests(report):
    per_seed_tests = defaultdict(list)
    for r in csv_rows(report, "significance.csv"):
        per_seed_tests[(r["task"], r["split"], r["model_a"], r["model_b"])].append(r)
    summary = report.tables.significance_summary_rows
    assert {(r["task"], r["split"], r["model_a"], r["model_b"]) for r in summary} == set(per_seed_tests)
    section = next(s.markdown for s in report.sections if s.title.startswith("Is the reference model's"))
    assert "Holm" in section.split("\n\n")[0]  # the caption says the correction
    for r in summary:
        tests = per_seed_tests[(r["task"], r["split"], r["model_a"], r["model_b"])]
        assert [int(t["seed"]) for t in tests] == list(SEEDS)
        n_significant = sum(t["significant_holm_0.05"] == "1" for t in tests)
        max_p = max(float(t["p_holm"]) for t in tests)
        assert r["n_significant"] == n_significant
        assert r["max_p_holm"] == pytest.approx(max_p, rel=1e-5)
        if r["split"] != HEADLINE:
            continue
        header = next(line for line in section.splitlines() if line.startswith("| task | A |"))
        column = [c.strip() for c in header.strip("|").split("|")].index(f"A − {r['model_b']}")
        cell = table_line(section, r["task"], r["model_a"])[column]
        differences = 100 * np.array([float(t["accuracy_a"]) - float(t["accuracy_b"]) for t in tests])
        ahead = sum(float(t["accuracy_a"]) > float(t["accuracy_b"]) for t in tests)
        difference, significant, more_accurate, p = cell.split(" · ")
        assert difference == f"{differences.mean():+.1f} ± {differences.std(ddof=1):.1f}"
        assert (significant, more_accurate) == (f"{n_significant}/3 significant", f"{ahead}/3 ahead")
        assert float(p.removeprefix("p ≤ ")) == pytest.approx(max_p, rel=0.05)
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    binary = next(r for r in summary if r["task"] == "binary" and r["split"] == HEADLINE)
    if binary["n_significant"]:
        assert f"binary {binary['n_significant']}/3 seeds" in findings
    assert "exact McNemar test per seed, Holm-corrected" in findings


def test_holm_adjusts_within_a_family_and_keeps_the_order():
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([0.02]) == pytest.approx([0.02])  # one test: unchanged


def test_class_gains_over_seeds_match_per_seed_recalls(report, grid):
    recall = {(r["task"], r["model"], int(r["seed"]), r["class"]): float(r["recall"])
              for r in csv_rows(report, "per_class.csv") if r["split"] == HEADLINE}
    rows = report.tables.class_gain_rows
    assert {(r["task"], r["model_b"]) for r in rows} == {
        (task, next(m for m in MODELS if m != report.inputs.reference(task))) for task in ("binary", "5class")}
    assert len(csv_rows(report, "class_gains.csv")) == len(rows)
    section = next(s.markdown for s in report.sections if s.title.startswith("Per-class recall and the"))
    header = next(line for line in section.splitlines() if line.startswith("| task | class |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for r in rows:
        gains = [recall[(r["task"], r["model_a"], s, r["class"])] - recall[(r["task"], r["model_b"], s, r["class"])]
                 for s in SEEDS]
        assert r["gains"] == pytest.approx(gains, abs=1e-6)
        assert r["gain_mean"] == pytest.approx(np.mean(gains), abs=1e-6)
        assert r["gain_std"] == pytest.approx(np.std(gains, ddof=1), abs=1e-6)
        cell = table_line(section, r["task"], r["class"])[columns.index(f"− {r['model_b']}")]
        assert cell.startswith(f"{100 * np.mean(gains):+.1f} ± {100 * np.std(gains, ddof=1):.1f} [")
        assert cell.endswith(f"**{r['holds']}**") if r["holds"] else "**" not in cell
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
        assert r["ci_low"] == pytest.approx(intervals[:, k, 0].mean(), abs=1e-9)
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    assert "**Per class, binary**" in findings or "**Per class, 5class**" in findings
    assert ("largest loss" in findings) or ("smallest gain" in findings)  # the low end is as visible as the top


def test_html_holds_the_seed_sections(report):
    page = report.files["index.html"]
    assert "significant (Holm)" in page
    assert "ensemble accuracy % [95% CI]" in page
    assert re.search(r"Per-class recall and the reference model(&#x27;|&#39;|')s gains", page)


# --- the summary's shape and the rivals -------------------------------------------------------------------

def summary_limits(summary: str) -> None:
    """summary.md opens with the answer: the headline table and at most MAX_FINDINGS bullets within its first 60
    lines, and no more than 250 lines in all."""
    lines = summary.splitlines()
    assert len(lines) <= 250, len(lines)
    titles = [k for k, line in enumerate(lines) if line.startswith("## ")]
    assert lines[titles[0]].startswith("## Headline") and lines[titles[1]] == "## Findings"
    findings = lines[titles[1] + 1:titles[2]]
    bullets = [line for line in findings if line.startswith("- ")]
    assert 1 <= len(bullets) <= MAX_FINDINGS
    assert titles[2] <= 60, "the headline and findings must fit in the first 60 lines"
    assert not any(re.fullmatch(r"\|( –? \|)+( – \|){2,}", line) for line in lines), "an empty table row"


def test_summary_opens_with_the_answer_within_its_limits(report, one_seed_report):
    for built in (report, one_seed_report):
        summary_limits(built.files["summary.md"])
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    assert findings.startswith("- **Accuracy** (PrivateTest), the ")


def test_classic_rivals_come_from_the_registry_and_peers_are_labelled(report):
    """A pretrained model is a peer, never the classic rival, however accurate; classic is the registry's word."""
    def cell(model):
        return SimpleNamespace(task="binary", model=model)

    with registered_model("outside_net", lambda seed=0, quick=False: None, family=PRETRAINED), \
            registered_model("my_classic", lambda seed=0, quick=False: None, family=CLASSIC):
        inputs = ReportInputs(out=Path("."), cells=[cell(m) for m in ("cnn", "hog_svm", "outside_net", "my_classic",
                                                                      "unknown")],
                              settings=Settings(), references={"binary": "cnn"})
        assert inputs.classic_rivals("binary") == ["hog_svm", "my_classic"]
        assert inputs.peers("binary") == ["outside_net", "unknown"]


# --- one seed: none of it -------------------------------------------------------------------------------------

def test_one_seed_grid_has_no_ensembles_and_no_spreads(one_seed_report):
    assert "ensemble" not in one_seed_report.files["metrics.csv"]
    assert not one_seed_report.tables.significance_summary_rows
    # the per-class gains stand on the one seed's paired interval
    assert one_seed_report.tables.class_gain_rows
    assert all(r["seeds"] == [0] for r in one_seed_report.tables.class_gain_rows)
    for name in ("summary.md", "index.html", "summary.tex"):
        text = one_seed_report.files[name]
        assert "±" not in text and "$\\pm$" not in text, name
        assert "seed ensemble" not in text, name
    summary = one_seed_report.files["summary.md"]
    assert "| task | model | accuracy % [95% CI] | macro-F1 % [95% CI] |" in summary
    assert "over seeds (" not in summary and "seed sd" not in summary
    assert "significance: exact McNemar test, Holm-corrected over the task's comparisons" in summary


def test_the_lead_on_the_clean_subset_is_a_finding(grid, tiny_synthetic, tmp_path):
    """With a data audit, the findings give the reference's lead over the best classic model on the clean
    subset beside its lead on all images, paired over the seeds, as metrics.csv has them."""
    from fer_bench.audit import run_audit

    out = tmp_path / "results"
    shutil.copytree(grid, out)
    run_audit(dataset=tiny_synthetic, out=out)
    audited = build_report(out)
    findings = next(s.markdown for s in audited.sections if s.title == "Findings")
    line = next(b for b in findings.splitlines() if b.startswith("- **Clean subset**"))
    rows = [r for r in csv_rows(audited, "metrics.csv") if r["split"] == HEADLINE and r["seed"] != "ensemble"]
    for task in ("5class", "binary"):
        ref = audited.inputs.reference(task)
        other = next(m for m in MODELS if m != ref)

        def leads(subset, task=task, ref=ref, other=other):
            accuracy = {(r["model"], r["seed"]): 100 * float(r["accuracy"]) for r in rows
                        if r["task"] == task and r["subset"] == subset}
            return np.array([accuracy[(ref, str(s))] - accuracy[(other, str(s))] for s in SEEDS])

        clean, everything = leads("clean"), leads("all")
        n_clean = next(r["n"] for r in rows if r["task"] == task and r["subset"] == "clean")
        assert (f"{task} {clean.mean():+.1f} ± {clean.std(ddof=1):.1f} vs {other} on {n_clean} clean "
                f"images, {everything.mean():+.1f} ± {everything.std(ddof=1):.1f} on all") in line


def test_the_cost_finding_marks_a_fit_that_shared_the_cpus(grid, tmp_path):
    """A fit whose recorded load average exceeded the machine's cores is marked in the cost finding, as in the
    timing table; the others are not."""
    import json

    from conftest import rerecord

    out = copy_grid(grid, tmp_path / "shared")
    # The grid's own load averages depend on what ran beside the tests, so every fit gets an explicit one:
    # logreg's (on the first task, the cost finding's) above any machine's cores, the others' at zero.
    for timings_file in sorted(out.glob("runs/*/*/seed*/timings.json")):
        cell = timings_file.parent
        timings = json.loads(timings_file.read_text())
        shared = cell.parent.name == "logreg" and cell.parent.parent.name == "5class"
        timings["load_average_fit"] = [64.0, 64.0] if shared else [0.0, 0.0]
        timings_file.write_text(json.dumps(timings))
        rerecord(cell)
    report = build_report(out)
    findings = next(s.markdown for s in report.sections if s.title == "Findings")
    cost = next(line for line in findings.splitlines() if line.startswith("- **Cost**"))
    assert "logreg" in cost.split("min †")[0].rsplit(",", 1)[-1] and cost.count("†") == 2
    assert "shared the CPUs" in cost



def test_headline_fit_times_mark_shared_fits_and_seeds_on_different_machines(grid, tmp_path):
    """The headline's fit time, a mean over seeds, says when a seed's fit shared the CPUs (†) and when the seeds
    ran on different machines (‡), and the note under the table says what the marks mean."""
    import json

    from conftest import rerecord

    out = copy_grid(grid, tmp_path / "marks")
    for timings_file in sorted(out.glob("runs/*/*/seed*/timings.json")):
        cell = timings_file.parent
        timings = json.loads(timings_file.read_text())
        shared = cell.parent.name == "logreg" and cell.parent.parent.name == "5class" and cell.name == "seed1"
        timings["load_average_fit"] = [64.0, 64.0] if shared else [0.0, 0.0]
        timings_file.write_text(json.dumps(timings))
        rerecord(cell)
    manifest_file = out / "runs" / "binary" / "hog_svm" / "seed2" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["machine"] = {**manifest["machine"], "cpu": "Another CPU"}
    manifest_file.write_text(json.dumps(manifest))

    report = build_report(out)
    headline = next(s.markdown for s in report.sections if s.title.startswith("Headline"))
    fit_times = {(line[0], line[1]): line[-1] for line in
                 ([c.strip() for c in row.strip("|").split("|")] for row in headline.splitlines()
                  if row.startswith("| ") and not row.startswith("| task"))}
    marked = {key: text for key, text in fit_times.items() if text.endswith(("†", "‡"))}
    assert set(marked) == {("5class", "logreg"), ("binary", "hog_svm")}
    assert marked[("5class", "logreg")].endswith(" s †") and marked[("binary", "hog_svm")].endswith(" s ‡")
    assert "Fit time †: a seed's fit shared the CPUs with other work; ‡: seeds fitted on different machines" in headline
    tex_rows = {tuple(line.split(" & ")[:2]): line for line in report.files["summary.tex"].splitlines()
                if line.endswith("\\\\") and " & " in line and not line.startswith("Task")}
    assert tex_rows[("binary", "hog\\_svm")].endswith("$^\\ddagger$ \\\\")
    assert tex_rows[("binary", "hog\\_svm (seed ensemble, 3)")].endswith("$^\\ddagger$ \\\\")  # the same fits
    assert tex_rows[("5class", "logreg")].endswith("$^\\dagger$ \\\\")
    ensemble = ("5class", "logreg (seed ensemble, 3)")  # none when logreg's seeds are identical
    assert {key for key, line in tex_rows.items() if "$^" in line} == {
        ("binary", "hog\\_svm"), ("binary", "hog\\_svm (seed ensemble, 3)"), ("5class", "logreg"),
        *([ensemble] if ensemble in tex_rows else [])}
    assert "$^\\ddagger$seeds fitted on different machines" in report.files["summary.tex"]
    unmarked = build_report(copy_grid(grid, tmp_path / "plain"))
    plain = next(s.markdown for s in unmarked.sections if s.title.startswith("Headline"))
    assert "‡" not in plain  # one machine
