"""A results folder in Python, for notebooks: `open_results(path)` gives its tables as pandas DataFrames and the
report's figures as matplotlib Figures.

Nothing is read from the report's CSVs: the tables are computed from the stored cells by the report's own code
(fer_bench.report: read_inputs, report_tables), so they hold the numbers `fer-bench report` writes, at full
precision, and they exist before any report was written. The figures are the report's (fer_bench.figures:
computed first, then drawn), for the models and seed asked for, titled with the task, split and seed(s) and with
the models in their panel titles or legends.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from fer_bench.errors import FerBenchError
from fer_bench.figures import confusion, curves, gains, robustness
from fer_bench.figures.data import TaskResults, task_results
from fer_bench.figures.png import model_colors
from fer_bench.provenance import machine_label
from fer_bench.report import read_inputs, report_tables
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.robustness import ROBUSTNESS_HEADER
from fer_bench.report.tables import (
    CONFUSIONS_HEADER,
    FLOORS_HEADER,
    PER_CLASS_HEADER,
    SIGNIFICANCE_HEADER,
    Tables,
    metrics_header,
)
from fer_bench.report.timing import TIMING_COLUMNS
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell

#: columns of Results.cells
CELL_COLUMNS = ["task", "model", "seed", "machine", "commit", "dirty", "finished"]


def open_results(path, *, settings: Settings | None = None) -> Results:
    """The results folder `path` (e.g. "results/fer2013"): its cells are read now (a bad folder or a damaged cell
    is one FerBenchError naming it), its tables computed on first use. `settings`: the report's settings (headline
    split, bootstrap, reference model...), default those of `fer-bench report`."""
    return Results(read_inputs(path, settings=settings))


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


class Results:
    """The tables and figures of one results folder. Each table property is a new DataFrame with the columns of
    the report's CSV of that name (docs/results-format.md describes them); `cells` lists the stored cells and
    `predictions(...)` gives one cell's probabilities. The plot_* methods return the report's figures for one
    task: every model of the task, or those named in `models`; each model's first seed, or the one `seed` names."""

    def __init__(self, inputs: ReportInputs):
        self._inputs = inputs
        self._colors = model_colors(list(dict.fromkeys(cell.model for cell in inputs.cells)))

    def __repr__(self) -> str:
        return (f"<fer-bench results {str(self.path)!r}: {len(self._inputs.cells)} cells, tasks "
                f"{', '.join(self.tasks)}; models {', '.join(self.models)}>")

    @property
    def path(self) -> Path:
        return self._inputs.out

    @property
    def settings(self) -> Settings:
        return self._inputs.settings

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(cell.task for cell in self._inputs.cells))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(cell.model for cell in self._inputs.cells))

    def reference(self, task: str) -> str | None:
        """The model `task`'s comparisons (significance, gains, confusion differences) are against."""
        self._task_cells(task)
        return self._inputs.reference(task)

    # --- tables ------------------------------------------------------------------------------------------------

    @cached_property
    def _tables(self) -> Tables:
        return report_tables(self._inputs)

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv: one row per task, model, seed, split and subset (seed ensembles: seed "ensemble")."""
        return _frame(self._tables.metric_rows, metrics_header())

    @property
    def per_class(self) -> pd.DataFrame:
        """per_class.csv: precision, recall, F1, support and ROC AUC per task, model, seed, split and class."""
        return _frame(self._tables.per_class_rows, PER_CLASS_HEADER)

    @property
    def confusions(self) -> pd.DataFrame:
        """confusions.csv: each cell's most frequent (true, predicted) confusions per split."""
        return _frame(self._tables.confusion_rows, CONFUSIONS_HEADER)

    @property
    def significance(self) -> pd.DataFrame:
        """significance.csv: exact McNemar test of each task's reference model against every other model."""
        return _frame(self._tables.significance_rows, SIGNIFICANCE_HEADER)

    @property
    def timing(self) -> pd.DataFrame:
        """timing.csv: fit and inference speed, size and machine of each cell."""
        return _frame(self._tables.timing_rows, TIMING_COLUMNS)

    @property
    def robustness(self) -> pd.DataFrame:
        """robustness.csv: accuracy and macro-F1 of each cell under each corruption and severity (corruption "none",
        severity 0: the clean faces); empty when no cell stored robustness.npz."""
        return _frame(self._tables.robustness_rows, ROBUSTNESS_HEADER)

    @property
    def floors(self) -> pd.DataFrame:
        """floors.csv: majority-class and chance accuracy per task and split."""
        return _frame(self._tables.floor_rows, FLOORS_HEADER)

    @property
    def cells(self) -> pd.DataFrame:
        """One row per stored cell, in report order: where and with which code it was computed."""
        return _frame([{"task": c.task, "model": c.model, "seed": c.seed, "machine": machine_label(c.manifest.machine),
                        "commit": c.manifest.code["commit"], "dirty": bool(c.manifest.code.get("dirty")),
                        "finished": c.manifest.finished} for c in self._inputs.cells], CELL_COLUMNS)

    def predictions(self, task: str, model: str, seed: int | None = None) -> pd.DataFrame:
        """One cell's stored predictions (predictions.csv): split, image_id, label (class index) and prob_<class>,
        each row renormalised to sum to 1 as the report scores it. `seed`: default the cell's lowest seed."""
        cell = self._cell(task, model, seed)
        frame = pd.DataFrame({"split": cell.splits, "image_id": cell.image_ids, "label": cell.labels})
        for k, name in enumerate(cell.class_names):
            frame[f"prob_{name}"] = cell.proba[:, k]
        return frame

    # --- figures -----------------------------------------------------------------------------------------------

    def task_results(self, task: str, models: str | Sequence[str] | None = None,
                     seed: int | None = None) -> TaskResults:
        """What the figures of `task` are drawn from: the headline-split predictions of `models` (default all the
        task's models) for `seed` (default each model's lowest seed), on the same images."""
        cells = self._task_cells(task)
        if models is not None:
            names = [models] if isinstance(models, str) else list(models)
            if not names:
                raise FerBenchError(f"{self.path}: no models named for task {task}; its models: "
                                    f"{', '.join(dict.fromkeys(c.model for c in cells))}")
            for name in names:
                self._cell(task, name, None)
            cells = [c for c in cells if c.model in names]
        if seed is not None:
            lacking = sorted({c.model for c in cells} - {c.model for c in cells if c.seed == seed})
            if lacking and (models is not None or len(lacking) == len({c.model for c in cells})):
                self._cell(task, lacking[0], seed)  # the error naming the seeds that model has
            cells = [c for c in cells if c.seed == seed]
        (results,) = task_results(cells, self.settings, self._inputs.references)
        return results

    def plot_confusion(self, task: str, models: str | Sequence[str] | None = None, seed: int | None = None) -> Figure:
        """Confusion matrices of `task`, one per model, side by side."""
        return confusion.plot_confusion(self.task_results(task, models, seed))

    def plot_confusion_difference(self, task: str, models: str | Sequence[str] | None = None,
                                  seed: int | None = None) -> Figure:
        """The reference model's row-normalised confusion matrix minus each other model's (or those of `models`)."""
        return confusion.plot_confusion_difference(self.task_results(task, self._with_reference(task, models), seed))

    def plot_roc(self, task: str, models: str | Sequence[str] | None = None, seed: int | None = None) -> Figure:
        """ROC curve of each model (binary task) or its macro one-vs-rest ROC curve, AUC in the legend."""
        return curves.plot_roc(self.task_results(task, models, seed), self._colors)

    def plot_roc_per_class(self, task: str, models: str | Sequence[str] | None = None,
                           seed: int | None = None) -> Figure:
        """One-vs-rest ROC curve of each class, one panel per class."""
        return curves.plot_roc_per_class(self.task_results(task, models, seed), self._colors)

    def plot_reliability(self, task: str, models: str | Sequence[str] | None = None,
                         seed: int | None = None) -> Figure:
        """Reliability (calibration) diagram of each model, ECE in the legend."""
        return curves.plot_reliability(self.task_results(task, models, seed), self.settings.ece_bins, self._colors)

    def plot_robustness(self, task: str) -> Figure:
        """Accuracy against severity under each corruption, a line per model (mean over seeds, band ± seed sd)."""
        curves_ = robustness.severity_curves(self._tables.robustness_rows, task)
        if not curves_:
            raise FerBenchError(f"no cell of {task} in {self.path} stored robustness.npz (`fer-bench robustness`)")
        return robustness.robustness_figure(curves_, self._colors, task)

    def plot_recall(self, task: str, models: str | Sequence[str] | None = None, seed: int | None = None) -> Figure:
        """Per-class recall of each model with its 95% bootstrap interval."""
        return gains.plot_recall(self.task_results(task, models, seed), self.settings, self._colors)

    def plot_recall_gain(self, task: str, models: str | Sequence[str] | None = None,
                         seed: int | None = None) -> Figure:
        """Per-class recall gain of the task's reference model over each other model (or those of `models`),
        with paired 95% bootstrap intervals."""
        tr = self.task_results(task, self._with_reference(task, models), seed)
        return gains.plot_recall_gain(tr, self.settings, self._colors)

    # --- lookups -----------------------------------------------------------------------------------------------

    def _task_cells(self, task: str) -> list[StoredCell]:
        cells = [c for c in self._inputs.cells if c.task == task]
        if not cells:
            raise FerBenchError(f"{self.path}: no cells of task {task!r}; its tasks: {', '.join(self.tasks)}")
        return cells

    def _cell(self, task: str, model: str, seed: int | None) -> StoredCell:
        """The stored cell (task, model, seed); seed None: the model's lowest seed."""
        cells = self._task_cells(task)
        of_model = [c for c in cells if c.model == model]
        if not of_model:
            models = ", ".join(dict.fromkeys(c.model for c in cells))
            raise FerBenchError(f"{self.path}: no cells of model {model!r} in task {task}; its models: {models}")
        if seed is None:
            return of_model[0]
        for cell in of_model:
            if cell.seed == seed:
                return cell
        raise FerBenchError(f"{self.path}: no cell {task}/{model}/seed{seed}; seeds of {task}/{model}: "
                            f"{', '.join(str(c.seed) for c in of_model)}")

    def _with_reference(self, task: str, models: str | Sequence[str] | None) -> list[str] | None:
        """`models` with the task's reference model in front (comparisons are against it); None: every model."""
        if models is None:
            return None
        names = [models] if isinstance(models, str) else list(models)
        reference = self.reference(task)
        return names if reference is None or reference in names else [reference, *names]
