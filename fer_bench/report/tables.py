"""The report's tables, computed from the stored predictions: metrics.csv, per_class.csv, confusions.csv,
significance.csv, class_gains.csv and floors.csv (timing.csv: fer_bench.report.timing). Rows are plain dicts, so
the markdown, LaTeX and figures read the same numbers the CSVs hold."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

from fer_bench.metrics import (
    confusion,
    floors,
    holm_adjusted,
    mcnemar_exact,
    metric_columns,
    per_class_metrics,
    row_normalise,
    summary_metrics,
    top_confusions,
)
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.seeds import (
    cells_by_model,
    class_gain_rows,
    ensemble_metric_rows,
    significance_summary,
    with_ensembles,
)
from fer_bench.storage import PREDICTION_SPLITS


@dataclass
class Tables:
    """Every table's rows, and the CSV text of each (file name -> text)."""

    metric_rows: list[dict] = field(default_factory=list)
    per_class_rows: list[dict] = field(default_factory=list)
    confusion_rows: list[dict] = field(default_factory=list)
    significance_rows: list[dict] = field(default_factory=list)
    floor_rows: list[dict] = field(default_factory=list)
    timing_rows: list[dict] = field(default_factory=list)
    #: seed-level rows (fer_bench.report.seeds), empty when every (task, model) has one seed
    significance_summary_rows: list[dict] = field(default_factory=list)
    class_gain_rows: list[dict] = field(default_factory=list)
    #: (task, model) -> (class names, row-normalised confusion matrix on the headline split, mean over seeds)
    confusion_rates: dict = field(default_factory=dict)
    #: the cells' accuracy under each corruption and severity, and their classes' (fer_bench.report.robustness)
    robustness_rows: list[dict] = field(default_factory=list)
    robustness_class_rows: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def fmt(value) -> str:
    """A CSV field: integers as they are, floats with 6 decimals (fixed, so the same numbers give the same bytes)."""
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and np.isnan(value):
        return "nan"
    if isinstance(value, (float, np.floating)):
        return f"{value:.6f}"
    return str(value)


def csv_text(header: list[str], rows: list[dict], formatter=None) -> str:
    """CSV text of `rows` in `header` order; formatter(column, value) -> field, default fmt(value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([formatter(h, row.get(h)) if formatter else fmt(row.get(h)) for h in header])
    return buf.getvalue()


def metrics_table(inputs: ReportInputs) -> list[dict]:
    """One row per task x model x seed x split x subset (all; clean: PrivateTest without leaked images); the
    seed ensembles' rows are added by compute_tables."""
    rows = []
    for cell in inputs.cells:
        n_classes = len(cell.class_names)
        for split in PREDICTION_SPLITS:
            ids, y, proba = cell.split(split)
            subsets = [("all", np.ones(len(y), bool))]
            if inputs.leaked_ids and split == inputs.settings.headline_split:
                subsets.append(("clean", ~np.isin(ids, list(inputs.leaked_ids))))
            for subset, mask in subsets:
                m = summary_metrics(y[mask], proba[mask], n_classes, seed=cell.seed, settings=inputs.settings)
                rows.append({"dataset": cell.manifest.dataset.name, "task": cell.task, "model": cell.model,
                             "seed": cell.seed, "split": split, "subset": subset, **m,
                             "fit_seconds": cell.timings.get("fit_seconds"),
                             "predict_images_per_s": cell.timings.get(f"predict_images_per_s_{split}"),
                             "quick": cell.manifest.quick})
    return rows


def metrics_header() -> list[str]:
    """metrics.csv's header: the registered metrics' columns (read when the report is written, so a metric
    registered by then has its column) between the cell's and its timings'."""
    return ["dataset", "task", "model", "seed", "split", "subset", *metric_columns(),
            "fit_seconds", "predict_images_per_s", "quick"]


def per_class_table(inputs: ReportInputs) -> list[dict]:
    rows = []
    for cell in inputs.cells:
        for split in PREDICTION_SPLITS:
            _, y, proba = cell.split(split)
            pc = per_class_metrics(y, proba, len(cell.class_names))
            for k, name in enumerate(cell.class_names):
                rows.append({"task": cell.task, "model": cell.model, "seed": cell.seed, "split": split,
                             "class": name, **{key: pc[key][k] for key in pc}})
    return rows


PER_CLASS_HEADER = ["task", "model", "seed", "split", "class", "precision", "recall", "f1", "support", "roc_auc"]


def confusions_table(inputs: ReportInputs) -> list[dict]:
    """The most frequent off-diagonal (true, predicted) pairs per task, model, seed and split."""
    rows = []
    for cell in inputs.cells:
        for split in PREDICTION_SPLITS:
            _, y, proba = cell.split(split)
            pairs = top_confusions(y, proba.argmax(axis=1), len(cell.class_names), inputs.settings.top_confusions)
            for rank, (i, j, count, rate) in enumerate(pairs, 1):
                rows.append({"task": cell.task, "model": cell.model, "seed": cell.seed, "split": split,
                             "rank": rank, "true": cell.class_names[i], "predicted": cell.class_names[j],
                             "count": int(count), "rate_of_true": rate})
    return rows


CONFUSIONS_HEADER = ["task", "model", "seed", "split", "rank", "true", "predicted", "count", "rate_of_true"]


def significance_table(inputs: ReportInputs) -> list[dict]:
    """Exact McNemar test of the reference model against each other model, on the same images."""
    by_key = {(c.task, c.model, c.seed): c for c in inputs.cells}
    rows = []
    for (task, model, seed), ref in by_key.items():
        if model != inputs.reference(task):
            continue
        for (task_b, other, seed_b), cell in by_key.items():
            if task_b != task or seed_b != seed or other == model:
                continue
            for split in PREDICTION_SPLITS:
                ref.check_same_images(cell, split)
                _, y_a, p_a = ref.split(split)
                _, y_b, p_b = cell.split(split)
                test = mcnemar_exact(p_a.argmax(1) == y_a, p_b.argmax(1) == y_b)
                rows.append({"task": task, "seed": seed, "split": split, "model_a": model, "model_b": other,
                             "n": len(y_a), "accuracy_a": float(np.mean(p_a.argmax(1) == y_a)),
                             "accuracy_b": float(np.mean(p_b.argmax(1) == y_b)), **test,
                             "significant_0.05": test["p_value"] < 0.05})
    return with_holm(rows)


def with_holm(rows: list[dict]) -> list[dict]:
    """Each test's Holm-adjusted p over its family: the reference's comparisons of one task, seed and split."""
    families: dict[tuple, list[int]] = {}
    for k, row in enumerate(rows):
        families.setdefault((row["task"], row["seed"], row["split"]), []).append(k)
    for members in families.values():
        for k, adjusted in zip(members, holm_adjusted([rows[k]["p_value"] for k in members]), strict=True):
            rows[k]["p_holm"] = float(adjusted)
            rows[k]["significant_holm_0.05"] = bool(adjusted < 0.05)  # a Python bool: written 1/0
    return rows


SIGNIFICANCE_HEADER = ["task", "seed", "split", "model_a", "model_b", "n", "accuracy_a", "accuracy_b",
                       "a_right_b_wrong", "a_wrong_b_right", "p_value", "significant_0.05", "p_holm",
                       "significant_holm_0.05"]


def confusion_rates(inputs: ReportInputs) -> dict:
    """Per (task, model): its class names and its row-normalised confusion matrix on the headline split, the
    mean over its seeds (what the findings compare: which confusions every model shares, which the reference
    removes)."""
    split = inputs.settings.headline_split
    rates = {}
    for key, cells in cells_by_model(inputs.cells).items():
        n_classes = len(cells[0].class_names)
        matrices = []
        for cell in cells:
            _, y, proba = cell.split(split)
            matrices.append(row_normalise(confusion(y, proba.argmax(axis=1), n_classes)))
        rates[key] = (cells[0].class_names, np.mean(matrices, axis=0))
    return rates


CLASS_GAINS_HEADER = ["task", "model_a", "model_b", "class", "seeds", "gain_mean", "gain_std", "ci_low", "ci_high",
                      "holds"]


def _class_gain_field(column: str, value) -> str:
    if column == "seeds":
        return " ".join(map(str, value))
    if column == "holds":
        return value or ""
    return fmt(value)


def floors_table(inputs: ReportInputs) -> list[dict]:
    rows, seen = [], set()
    for cell in inputs.cells:
        # the first cell of a task that records its training counts (older manifests may lack them)
        if cell.task in seen or cell.manifest.train_class_counts is None:
            continue
        seen.add(cell.task)
        counts = np.asarray(cell.manifest.train_class_counts)
        train_labels = np.repeat(np.arange(len(counts)), counts)
        for split in PREDICTION_SPLITS:
            _, y, _ = cell.split(split)
            f = floors(train_labels, y, len(cell.class_names))
            rows.append({"task": cell.task, "split": split, "majority_class": cell.class_names[f["majority_class"]],
                         "majority_accuracy": f["majority_accuracy"], "chance_accuracy": f["chance_accuracy"]})
    return rows


FLOORS_HEADER = ["task", "split", "majority_class", "majority_accuracy", "chance_accuracy"]


def compute_tables(inputs: ReportInputs) -> Tables:
    """Every prediction table (timing rows are added by fer_bench.report.timing); metrics.csv holds each seed
    ensemble's rows after its seeds' rows."""
    metric_rows = with_ensembles(metrics_table(inputs), ensemble_metric_rows(inputs))
    tables = Tables(metric_rows, per_class_table(inputs), confusions_table(inputs),
                    significance_table(inputs), floors_table(inputs))
    tables.significance_summary_rows = significance_summary(tables.significance_rows)
    tables.class_gain_rows = class_gain_rows(inputs)
    tables.files["metrics.csv"] = csv_text(metrics_header(), tables.metric_rows)
    tables.files["per_class.csv"] = csv_text(PER_CLASS_HEADER, tables.per_class_rows)
    tables.files["confusions.csv"] = csv_text(CONFUSIONS_HEADER, tables.confusion_rows)
    tables.confusion_rates = confusion_rates(inputs)
    # Significant digits, not fmt's fixed decimals: FER-2013's p-values go far below 1e-6.
    tables.files["significance.csv"] = csv_text(
        SIGNIFICANCE_HEADER, [{**row, "p_value": f"{row['p_value']:.6g}", "p_holm": f"{row['p_holm']:.6g}"}
                              for row in tables.significance_rows])
    if tables.class_gain_rows:
        tables.files["class_gains.csv"] = csv_text(CLASS_GAINS_HEADER, tables.class_gain_rows, _class_gain_field)
    tables.files["floors.csv"] = csv_text(FLOORS_HEADER, tables.floor_rows)
    return tables
