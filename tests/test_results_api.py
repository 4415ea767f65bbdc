"""fer_bench.open_results: a results folder's tables as DataFrames and the report's figures as Figures, read from
the committed synthetic reference grid (nothing is computed but the tables) and checked against its CSVs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fer_bench
from fer_bench.errors import FerBenchError
from fer_bench.figures import FigureContext, curves, gains, render_figures, task_results
from fer_bench.figures import confusion as confusion_figures
from fer_bench.figures.png import figure_png
from fer_bench.report import read_inputs
from fer_bench.report.tables import csv_text, metrics_header
from fer_bench.storage import list_cells

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "synthetic-reference"


@pytest.fixture(scope="module")
def results():
    return fer_bench.open_results(REFERENCE)


def as_read_back(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as a CSV read back: the dtypes pandas gives the committed file, booleans as the 0/1 it holds."""
    read = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    return read.astype({column: int for column in read.columns if read[column].dtype == bool})


@pytest.mark.parametrize(("table", "file", "atol"), [
    ("metrics", "metrics.csv", 5e-7), ("per_class", "per_class.csv", 5e-7), ("confusions", "confusions.csv", 5e-7),
    ("significance", "significance.csv", 5e-7), ("floors", "floors.csv", 5e-7),
    ("timing", "timing.csv", 0.05),  # timing.csv rounds images/s to 1 decimal, seconds to 3
])
def test_each_table_holds_the_committed_csv(results, table, file, atol):
    frame = getattr(results, table)
    committed = pd.read_csv(REFERENCE / file)
    assert list(frame.columns) == list(committed.columns)
    pd.testing.assert_frame_equal(as_read_back(frame), committed, check_dtype=False, rtol=1e-5, atol=atol)


def test_metrics_formatted_as_the_report_does_are_metrics_csv_byte_for_byte(results):
    text = csv_text(metrics_header(), results.metrics.to_dict("records"))
    assert text == (REFERENCE / "metrics.csv").read_text(encoding="utf-8")


def test_cells_list_every_stored_cell_with_its_machine_and_commit(results):
    cells = results.cells
    stored = {(p.parent.parent.name, p.parent.name, int(p.name.removeprefix("seed"))) for p in list_cells(REFERENCE)}
    assert set(zip(cells.task, cells.model, cells.seed, strict=True)) == stored and len(cells) == len(stored)
    timing = pd.read_csv(REFERENCE / "timing.csv")
    assert list(cells.machine) == list(timing.machine)  # both in report order
    for row in cells.itertuples():
        manifest = json.loads((REFERENCE / "runs" / row.task / row.model / f"seed{row.seed}" / "manifest.json")
                              .read_text(encoding="utf-8"))
        assert row.commit == manifest["code"]["commit"]


@pytest.mark.parametrize(("task", "model"), [("7class", "cnn"), ("binary", "logreg")])
def test_predictions_are_the_rows_of_the_cells_predictions_csv(results, task, model):
    frame = results.predictions(task, model, 0)
    stored = pd.read_csv(REFERENCE / "runs" / task / model / "seed0" / "predictions.csv")
    # stored at 6 decimals; the API gives each row renormalised to sum to 1, as the report scores it
    pd.testing.assert_frame_equal(frame, stored, check_dtype=False, atol=1e-5, rtol=0)
    np.testing.assert_allclose(frame.filter(like="prob_").sum(axis=1), 1.0, atol=1e-12)
    pd.testing.assert_frame_equal(results.predictions(task, model), frame)  # the lowest seed by default


@pytest.mark.parametrize(("call", "named"), [
    (lambda r: r.predictions("7class", "no_such_model"), "no_such_model"),
    (lambda r: r.predictions("7class", "cnn", seed=7), "seed7"),
    (lambda r: r.predictions("9class", "cnn"), "9class"),
    (lambda r: r.plot_confusion("7class", ["cnn", "no_such_model"]), "no_such_model"),
    (lambda r: r.plot_roc("binary", "hog_svm", seed=4), "seed4"),
    (lambda r: r.plot_reliability("binary", []), "no models named"),
])
def test_an_unknown_cell_is_one_line_naming_it(results, call, named):
    with pytest.raises(FerBenchError) as error:
        call(results)
    message = str(error.value)
    assert named in message and str(REFERENCE) in message and "\n" not in message


def test_a_folder_that_is_not_a_results_folder_is_one_line(tmp_path):
    with pytest.raises(FerBenchError, match="is not a fer-bench results folder") as error:
        fer_bench.open_results(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "\n" not in str(error.value)


def _texts(fig) -> str:
    """Every title, suptitle and legend entry of a figure, one string."""
    texts = [t.get_text() for t in fig.texts] + [ax.get_title() for ax in fig.axes]
    texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return "\n".join(texts)


def test_a_confusion_figure_names_task_split_seed_and_its_one_model_with_metrics_accuracy(results):
    fig = results.plot_confusion("7class", "cnn")
    title = fig.texts[0].get_text()
    assert title.startswith("7class: confusion matrix of cnn (PrivateTest, seed 0, n=700)")
    metrics = results.metrics
    accuracy = metrics.query("task == '7class' and model == 'cnn' and split == 'PrivateTest'").accuracy.item()
    assert fig.axes[0].get_title() == f"cnn (accuracy {100 * accuracy:.1f}%)"
    assert "hog_svm" not in _texts(fig)


def test_curve_and_gain_figures_show_the_models_asked_for(results):
    roc = results.plot_roc("binary", ["cnn", "logreg"])
    assert roc.axes[0].get_title() == "binary: ROC, positive vs negative\n(PrivateTest, seed 0, n=567)"
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    auc = results.metrics.query("task == 'binary' and model == 'logreg' and split == 'PrivateTest'").roc_auc_macro
    assert legend[0].startswith("cnn (AUC ") and legend[1:] == [f"logreg (AUC {auc.item():.3f})", "chance"]
    reliability = results.plot_reliability("5class", seed=0)
    assert "5class: reliability" in _texts(reliability) and "seed 0" in _texts(reliability)
    assert all(f"{model} (ECE" in _texts(reliability) for model in ("cnn", "hog_svm", "logreg"))
    gain = results.plot_recall_gain("7class", "logreg")  # the reference (cnn) is added: gains are against it
    assert gain.axes[0].get_title().startswith("7class: per-class recall gain of cnn\n(PrivateTest, seed 0")
    assert [t.get_text() for t in gain.axes[0].get_legend().get_texts()] == ["cnn − logreg"]


@pytest.mark.parametrize(("spec", "name", "plot"), [
    (confusion_figures.CONFUSION, "confusion_5class", lambda r: r.plot_confusion("5class")),
    (curves.ROC, "roc_5class", lambda r: r.plot_roc("5class")),
    (curves.RELIABILITY, "reliability_5class", lambda r: r.plot_reliability("5class")),
    (gains.RECALL_GAIN, "recall_gain_5class", lambda r: r.plot_recall_gain("5class")),
])
def test_a_figure_of_every_model_is_the_reports_figure_pixel_for_pixel(results, spec, name, plot):
    inputs = read_inputs(REFERENCE)
    every_task = task_results(inputs.cells, inputs.settings, inputs.references)
    # the report's colours: one per model of the whole grid (every task here has the same three models)
    drawn = render_figures(FigureContext([tr for tr in every_task if tr.task == "5class"], inputs.settings,
                                         inputs.out), figures=(spec,))
    assert figure_png(plot(results)) == drawn.files[f"figures/{name}.png"]


def test_importing_fer_bench_loads_neither_pandas_nor_matplotlib():
    code = "import sys, fer_bench; print(sorted({'pandas', 'matplotlib', 'tensorflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
