"""Statistics across seeds, from the stored cells and the per-seed tables (fer_bench.report.tables).

* Seed ensembles: per (task, model) with two or more seeds, the average of the seeds' stored probabilities,
  scored like a cell (`ensemble_metric_rows`). The report knows such a row by its field "ensemble_of" (a
  `SeedEnsemble`: the model and seeds it averages; read with `ensemble_of(row)`), never by its text. In
  metrics.csv its rows have seed ENSEMBLE_SEED and the model name `ensemble_name(model, n)`, e.g. "cnn (seed
  ensemble, 3)", so they cannot pass for a trained model and a CSV reader drops them with `seed != "ensemble"`.
  Nothing is trained; they never enter significance or timing.
* The seed-level summary of the per-seed exact McNemar tests (`significance_summary`).
* The reference model's per-class recall gain over each other model, per seed with its paired bootstrap
  interval, and its mean ± std over seeds (`class_gain_rows`).

A folder with one seed per cell has no ensembles and no seed-level rows, so its report is what it was before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fer_bench.metrics import paired_recall_gain, summary_metrics
from fer_bench.report.inputs import ReportInputs
from fer_bench.storage import PREDICTION_SPLITS, StoredCell

#: the seed column of a seed ensemble's metrics.csv rows (written, never read back to recognise one)
ENSEMBLE_SEED = "ensemble"
#: the metric-row field that marks a seed ensemble's row (absent from metrics.csv)
ENSEMBLE_FIELD = "ensemble_of"


@dataclass(frozen=True)
class SeedEnsemble:
    """What a seed ensemble's metric row averages: the seeds of one model."""

    model: str
    seeds: tuple[int, ...]


def ensemble_name(model: str, n_seeds: int) -> str:
    """The model column of a seed ensemble: not a name a registered model or variant "m[...]" can have."""
    return f"{model} (seed ensemble, {n_seeds})"


def ensemble_of(row: dict) -> SeedEnsemble | None:
    """The seeds a metric row averages when it is a seed ensemble's, else None (a trained cell's row)."""
    return row.get(ENSEMBLE_FIELD)


def is_ensemble(row: dict) -> bool:
    return ensemble_of(row) is not None


def mean_and_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) over seeds; std NaN for one value."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std


def cells_by_model(cells: list[StoredCell]) -> dict[tuple[str, str], list[StoredCell]]:
    """The cells of each (task, model), seeds in report order."""
    grouped = defaultdict(list)
    for cell in cells:
        grouped[(cell.task, cell.model)].append(cell)
    return dict(grouped)


def identical_seed_models(cells: list[StoredCell]) -> frozenset[tuple[str, str]]:
    """(task, model) pairs with two or more seeds whose stored predictions are identical on every split (a model
    the seed does not change, e.g. logistic regression or a pretrained network): the report shows them once."""
    identical = set()
    for key, group in cells_by_model(cells).items():
        first = group[0]
        if len(group) > 1 and all(np.array_equal(first.image_ids, c.image_ids) and np.array_equal(
                first.splits, c.splits) and np.array_equal(first.proba, c.proba) for c in group[1:]):
            identical.add(key)
    return frozenset(identical)


def distinct_rows(rows: list[dict], deterministic: bool) -> list[dict]:
    """A (task, model)'s per-seed rows as the tables show them: one row stands for all seeds of a deterministic
    model (its seeds are the same numbers), else every seed's."""
    return rows[:1] if deterministic else rows


def several_seeds(cells: list[StoredCell]) -> bool:
    """Whether some (task, model) has more than one seed (the report then shows spreads and ensembles)."""
    return any(len(group) > 1 for group in cells_by_model(cells).values())


# --- seed ensembles -----------------------------------------------------------------------------------------------

def averaged_split(cells: list[StoredCell], split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image_ids, labels, mean probabilities) of one split over the seeds' cells, which must score the same
    images in the same order."""
    ids, labels, first = cells[0].split(split)
    probas = [first]
    for cell in cells[1:]:
        cells[0].check_same_images(cell, split)
        probas.append(cell.split(split)[2])
    return ids, labels, np.mean(probas, axis=0)


def _summed(values):
    """Total fit time of an ensemble's seeds (what it cost to train), None when a seed has none."""
    return None if any(v is None for v in values) else float(sum(values))


def ensemble_rows_of(inputs: ReportInputs, cells: list[StoredCell]) -> list[dict]:
    """metrics.csv rows of one (task, model)'s seed ensemble, per split and subset like metrics_table's.
    Its bootstrap is seeded with the smallest member seed, so the interval is reproducible."""
    first = cells[0]
    ensemble = SeedEnsemble(first.model, tuple(cell.seed for cell in cells))
    rows = []
    for split in PREDICTION_SPLITS:
        ids, y, proba = averaged_split(cells, split)
        subsets = [("all", np.ones(len(y), bool))]
        if inputs.leaked_ids and split == inputs.settings.headline_split:
            subsets.append(("clean", ~np.isin(ids, list(inputs.leaked_ids))))
        for subset, mask in subsets:
            m = summary_metrics(y[mask], proba[mask], len(first.class_names), seed=min(ensemble.seeds),
                                settings=inputs.settings)
            rows.append({"dataset": first.manifest.dataset.name, "task": first.task,
                         "model": ensemble_name(first.model, len(cells)), "seed": ENSEMBLE_SEED, "split": split,
                         "subset": subset, **m,
                         "fit_seconds": _summed([cell.timings.get("fit_seconds") for cell in cells]),
                         "predict_images_per_s": None,  # not measured: it would be one call per seed
                         "quick": first.manifest.quick,
                         ENSEMBLE_FIELD: ensemble})
    return rows


def ensemble_metric_rows(inputs: ReportInputs) -> list[dict]:
    """Seed-ensemble rows of every (task, model) with two or more seeds that differ, in report order (the average
    of identical seeds is one seed again)."""
    return [row for key, cells in cells_by_model(inputs.cells).items()
            if len(cells) > 1 and key not in inputs.identical_seeds for row in ensemble_rows_of(inputs, cells)]


def with_ensembles(metric_rows: list[dict], ensemble_rows: list[dict]) -> list[dict]:
    """The per-seed rows with each ensemble's rows right after the last seed row of its (task, model)."""
    pending = defaultdict(list)
    for row in ensemble_rows:
        pending[(row["task"], ensemble_of(row).model)].append(row)
    last = {(row["task"], row["model"]): k for k, row in enumerate(metric_rows)}
    merged = []
    for k, row in enumerate(metric_rows):
        merged.append(row)
        key = (row["task"], row["model"])
        if last[key] == k:
            merged += pending.pop(key, [])
    return merged


# --- significance over seeds --------------------------------------------------------------------------------------

def significance_summary(significance_rows: list[dict]) -> list[dict]:
    """Per (task, split, model_a, model_b) compared in two or more seeds: how many seeds the exact McNemar test
    is significant at 0.05 in after Holm's correction over the task's comparisons, in how many A is the more
    accurate, the largest p (raw and Holm-adjusted), and the accuracy difference A - B (mean and std over
    seeds)."""
    grouped = defaultdict(list)
    for row in significance_rows:
        grouped[(row["task"], row["split"], row["model_a"], row["model_b"])].append(row)
    summary = []
    for (task, split, model_a, model_b), rows in grouped.items():
        if len(rows) < 2:
            continue
        difference = mean_and_std([r["accuracy_a"] - r["accuracy_b"] for r in rows])
        summary.append({"task": task, "split": split, "model_a": model_a, "model_b": model_b,
                        "seeds": [r["seed"] for r in rows],
                        "n_significant": sum(bool(r["significant_holm_0.05"]) for r in rows),
                        "n_a_better": sum(r["accuracy_a"] > r["accuracy_b"] for r in rows),
                        "max_p_value": max(r["p_value"] for r in rows),
                        "max_p_holm": max(r["p_holm"] for r in rows),
                        "accuracy_a_mean": float(np.mean([r["accuracy_a"] for r in rows])),
                        "accuracy_b_mean": float(np.mean([r["accuracy_b"] for r in rows])),
                        "difference_mean": difference[0], "difference_std": difference[1]})
    return summary


# --- per-class gains over seeds -----------------------------------------------------------------------------------

def _holds(intervals: np.ndarray) -> str | None:
    """"gain" or "loss" when every seed's interval excludes 0 on that side, else None."""
    if np.isnan(intervals).any():
        return None
    if (intervals[:, 0] > 0).all():
        return "gain"
    if (intervals[:, 1] < 0).all():
        return "loss"
    return None


def _pair_gains(inputs: ReportInputs, refs: dict[int, StoredCell], others: dict[int, StoredCell],
                seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, the reference's per-class recall gain and its paired bootstrap interval (seeded with the seed,
    as the gains figure's): shapes (seeds, k) and (seeds, k, 2)."""
    split, settings = inputs.settings.headline_split, inputs.settings
    gains, intervals = [], []
    for seed in seeds:
        refs[seed].check_same_images(others[seed], split)
        _, labels, proba_a = refs[seed].split(split)
        proba_b = others[seed].split(split)[2]
        gain, interval = paired_recall_gain(labels, proba_a.argmax(1), proba_b.argmax(1), proba_a.shape[1],
                                            seed=seed, n_resamples=settings.bootstrap_resamples,
                                            level=settings.confidence_level)
        gains.append(gain)
        intervals.append(interval)
    return np.array(gains), np.array(intervals)


def class_gain_rows(inputs: ReportInputs) -> list[dict]:
    """Per task, other model (sharing one or more seeds with the reference) and class, on the headline split:
    the reference's recall gain per seed, its mean and std over seeds (std NaN with one seed), the mean of the
    seeds' paired bootstrap interval bounds, and `holds`: "gain"/"loss" when the paired interval excludes 0 on
    that side in every seed, else None."""
    by_model = {key: {cell.seed: cell for cell in cells} for key, cells in cells_by_model(inputs.cells).items()}
    rows = []
    for (task, model), refs in by_model.items():
        if model != inputs.reference(task):
            continue
        for (task_b, other), others in by_model.items():
            seeds = [seed for seed in refs if seed in others]
            if task_b != task or other == model or not seeds:
                continue
            gains, intervals = _pair_gains(inputs, refs, others, seeds)
            for k, name in enumerate(refs[seeds[0]].class_names):
                mean, std = mean_and_std(gains[:, k])
                rows.append({"task": task, "model_a": model, "model_b": other, "class": name, "seeds": seeds,
                             "gains": gains[:, k].tolist(), "gain_mean": mean, "gain_std": std,
                             "ci_low": float(np.mean(intervals[:, k, 0])),
                             "ci_high": float(np.mean(intervals[:, k, 1])),
                             "holds": _holds(intervals[:, k])})
    return rows
