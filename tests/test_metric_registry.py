"""The metric registry: docs/extending.md's own example (a metric with an interval) runs, every table reads the
registry, and the report's Settings (ECE bins, confidence level) reach metrics.csv."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fer_bench.compare import View, compare_folders, comparison_records, record_columns
from fer_bench.data.synthetic import make_synthetic
from fer_bench.metrics import (
    Metric,
    expected_calibration_error,
    get_metric,
    metric_columns,
    metric_registered,
    registered_metrics,
    reliability_curve,
    summary_metrics,
)
from fer_bench.report.inputs import ReportInputs, load_cells
from fer_bench.report.latex import latex_headline
from fer_bench.report.markdown import all_metrics_markdown, headline_markdown
from fer_bench.report.tables import compute_tables
from fer_bench.run import run_grid
from fer_bench.settings import Settings

EXTENDING_DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A tiny results folder: binary / logreg and 5class / logreg (quick, no CNN)."""
    out = tmp_path_factory.mktemp("grid")
    run_grid(dataset=make_synthetic(n_train=300, n_public=90, n_private=90, seed=0), tasks=["binary", "5class"],
             models=["logreg"], quick=True, out=out, report=False)
    return out


def report_tables(folder: Path, settings: Settings | None = None):
    inputs = ReportInputs(out=folder, cells=load_cells(folder), settings=settings or Settings())
    return inputs, compute_tables(inputs)


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def documented_metric() -> Metric:
    """The metric docs/extending.md's example registers, by running the example's own lines (its
    register_metric call captured, so that the test registers it for its own duration only)."""
    text = EXTENDING_DOC.read_text(encoding="utf-8")
    example = re.search(r"^# fer_bench/metrics\.py.*?\n(.*?)\n\n", text, re.DOTALL | re.MULTILINE)
    assert example, "docs/extending.md's metric example is gone"
    captured = []
    exec(example.group(1), {"np": np, "Metric": Metric, "register_metric": captured.append})
    (metric,) = captured
    return metric


def test_documented_example_gets_a_metrics_csv_column_with_an_interval(grid):
    metric = documented_metric()
    assert metric.interval and metric.name not in metric_columns()
    with metric_registered(metric):
        inputs, tables = report_tables(grid)
        rows = csv_rows(tables.files["metrics.csv"])
        header = tables.files["metrics.csv"].splitlines()[0].split(",")
        headline = headline_markdown(SimpleNamespace(inputs=inputs, tables=tables))
        full = all_metrics_markdown(SimpleNamespace(inputs=inputs, tables=tables))
    for column in ("top2_accuracy", "top2_accuracy_ci_low", "top2_accuracy_ci_high"):
        assert column in header
    for row in rows:
        low, value, high = (float(row[f"top2_accuracy{s}"]) for s in ("_ci_low", "", "_ci_high"))
        assert low <= value <= high
        assert value >= float(row["accuracy"])  # the top two classes include the top one
        if row["task"] == "binary":
            assert value == low == high == 1.0  # two classes: always among the top two
    # headline=True: a column of the headline table, with the interval of one seed in brackets (one seed: the
    # headline is the full table, with every headline metric, and there is no second one)
    assert "| top-2 accuracy % [95% CI] |" in headline and full is None
    # scoped: gone again, and the built-in columns are what they were
    assert "top2_accuracy" not in metric_columns()
    assert [m.name for m in registered_metrics()][-1] == "ece"


def test_the_interval_of_a_registered_metric_is_the_bootstrap_of_its_function():
    """A metric without a confusion-matrix form is scored on the same resamples as accuracy: registered as a
    second accuracy, it gets exactly accuracy's interval."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    proba = rng.dirichlet(np.ones(4), 300)
    plain = Metric("accuracy_again", lambda y, p, k: np.mean(p.argmax(axis=1) == y), interval=True)
    with metric_registered(plain):
        m = summary_metrics(y, proba, 4, seed=3)
    assert m["accuracy_again"] == pytest.approx(m["accuracy"])
    assert (m["accuracy_again_ci_low"], m["accuracy_again_ci_high"]) == pytest.approx(
        (m["accuracy_ci_low"], m["accuracy_ci_high"]))


def test_a_registered_name_is_refused_twice():
    with pytest.raises(ValueError, match="already registered"):
        with metric_registered(Metric("accuracy", lambda y, p, k: 0.0)):
            pass
    assert get_metric("accuracy").interval  # the built-in one is untouched


def test_a_brief_metric_shows_in_headline_latex_and_compare(grid):
    """brief=True: one registration adds the column to summary.md's headline, summary.tex and compare's records
    (CSV and JSON), formatted as registered (not in percent, 2 decimals; its difference not in points)."""
    errors = Metric("error_rate", lambda y, p, k: np.mean(p.argmax(axis=1) != y), higher_is_better=False,
                    percent=False, decimals=2, label="error rate", short_label="err", headline=True, brief=True)
    with metric_registered(errors):
        inputs, tables = report_tables(grid)
        headline = headline_markdown(SimpleNamespace(inputs=inputs, tables=tables))
        full = all_metrics_markdown(SimpleNamespace(inputs=inputs, tables=tables))
        tex = latex_headline(inputs, tables)
        comparison = compare_folders(grid, grid)
        columns = record_columns()
        (record,) = [r for r in comparison_records(comparison, View()) if r["task"] == "binary"]
    row = next(r for r in tables.metric_rows if r["split"] == "PrivateTest" and r["task"] == "binary")
    assert "| ECE | error rate | PublicTest acc % | fit time |" in headline and full is None  # one seed: all in one
    assert f"| {row['error_rate']:.2f} | " in headline
    assert "& AUC & Err & Fit (s)" in tex and r"\begin{tabular}{llrrrrr}" in tex
    assert columns[columns.index("roc_auc_macro_difference") + 1:][:3] == [
        "error_rate_a", "error_rate_b", "error_rate_difference"]
    assert record["error_rate_difference"] == 0
    assert record["error_rate_a"] == pytest.approx(row["error_rate"])


def test_ece_bins_setting_reaches_metrics_csv_as_the_reliability_curve_has_it(grid):
    """metrics.csv's ECE is the reliability curve's with the settings' bins: a non-default ece_bins changes both
    alike."""
    _, default = report_tables(grid)
    inputs, five_bins = report_tables(grid, Settings(ece_bins=5))
    ece_default = {(r["task"], r["split"]): float(r["ece"]) for r in csv_rows(default.files["metrics.csv"])}
    ece_five = {(r["task"], r["split"]): float(r["ece"]) for r in csv_rows(five_bins.files["metrics.csv"])}
    assert ece_five != ece_default
    for cell in inputs.cells:
        for split in ("PublicTest", "PrivateTest"):
            _, y, proba = cell.split(split)
            _, confidence, accuracy, counts = reliability_curve(y, proba, 5)
            used = counts > 0
            from_curve = np.sum(counts[used] / counts.sum() * np.abs(accuracy[used] - confidence[used]))
            assert ece_five[(cell.task, split)] == pytest.approx(from_curve, abs=5e-7)
            assert ece_default[(cell.task, split)] == pytest.approx(expected_calibration_error(y, proba, 15),
                                                                    abs=5e-7)


def test_confidence_level_setting_narrows_the_intervals_and_says_so(grid):
    _, wide = report_tables(grid)
    inputs, narrow = report_tables(grid, Settings(confidence_level=0.5))
    for a, b in zip(wide.metric_rows, narrow.metric_rows, strict=True):
        assert b["accuracy_ci_high"] - b["accuracy_ci_low"] <= a["accuracy_ci_high"] - a["accuracy_ci_low"]
    headline = headline_markdown(SimpleNamespace(inputs=inputs, tables=narrow))
    assert "accuracy % [50% CI]" in headline
    assert "50\\% bootstrap CI" in latex_headline(inputs, narrow)
