"""The robustness tables, computed from the cells' robustness.npz (fer_bench.cell_robustness): every model's
accuracy and macro-F1 on its task's PrivateTest under each corruption and severity (robustness.csv), each class's
recall and share of the predictions (robustness_per_class.csv), and their summaries: the mean corrupted accuracy,
the corruption error relative to a classic reference model (ImageNet-C's mCE), where the reference's lead over the
best classic model grows or shrinks, and which class collapses first. Severity 0 is the clean PrivateTest, from the
cell's predictions.csv.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fer_bench.cell_robustness import CLEAN, CLEAN_SEVERITY, cell_robustness
from fer_bench.metrics import get_metric
from fer_bench.report.seeds import mean_and_std

#: a class has collapsed when its recall falls below this share of its clean recall
COLLAPSE_SHARE = 0.5
#: classes whose clean recall is below this are not said to collapse (there is nothing to lose)
MIN_CLEAN_RECALL = 0.1

ROBUSTNESS_HEADER = ["task", "model", "seed", "corruption", "severity", "accuracy", "f1_macro"]
PER_CLASS_HEADER = ["task", "model", "seed", "corruption", "severity", "class", "recall", "predicted_share"]


def _scores(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(accuracy, macro-F1, recall per class, share of the predictions per class) of predicted classes."""
    support = np.bincount(y, minlength=n_classes)
    hits = np.bincount(y[predicted == y], minlength=n_classes)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    share = np.bincount(predicted, minlength=n_classes) / max(len(y), 1)
    # the registered macro-F1 scores probabilities by their argmax: one-hot rows are the predicted classes
    macro_f1 = get_metric("f1_macro").function(y, np.eye(n_classes)[predicted], n_classes)
    return float(np.mean(predicted == y)), float(macro_f1), recall, share


def robustness_tables(inputs) -> tuple[list[dict], list[dict]]:
    """(robustness.csv rows, robustness_per_class.csv rows) for every cell with a robustness.npz, in report
    order: the clean split first (corruption "none", severity 0), then every corruption and severity."""
    rows, class_rows = [], []
    for cell in inputs.cells:
        robustness = cell_robustness(cell)
        if robustness is None:
            continue
        _, y, clean = cell.split(robustness.split)
        n_classes = len(cell.class_names)
        variants = [(CLEAN, CLEAN_SEVERITY, clean.argmax(axis=1))] + [
            (c, s, robustness.predictions(c, s)) for c in robustness.corruptions for s in robustness.severities]
        for corruption, severity, predicted in variants:
            accuracy, macro_f1, recall, share = _scores(y, predicted, n_classes)
            key = {"task": cell.task, "model": cell.model, "seed": cell.seed, "corruption": corruption,
                   "severity": severity}
            rows.append({**key, "accuracy": accuracy, "f1_macro": macro_f1})
            class_rows += [{**key, "class": name, "recall": recall[k], "predicted_share": share[k]}
                           for k, name in enumerate(cell.class_names)]
    return rows, class_rows


# --- summaries ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRobustness:
    """One (task, model) over its seeds: accuracy per (corruption, severity) as {seed: value}."""

    task: str
    model: str
    seeds: tuple
    accuracy: dict  # (corruption, severity) -> {seed: accuracy}

    @property
    def corruptions(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.accuracy if c != CLEAN))

    @property
    def severities(self) -> list[int]:
        return sorted({s for c, s in self.accuracy if c != CLEAN})

    def mean(self, corruption: str, severity: int) -> float:
        return float(np.mean(list(self.accuracy[(corruption, severity)].values())))

    def clean(self) -> list[float]:
        """The clean accuracy, per seed."""
        return [self.accuracy[(CLEAN, CLEAN_SEVERITY)][seed] for seed in self.seeds]

    def corrupted(self) -> list[float]:
        """The mean accuracy over every corruption and severity (mCA), per seed."""
        return [float(np.mean([self.accuracy[(c, s)][seed] for c in self.corruptions for s in self.severities]))
                for seed in self.seeds]

    def under(self, corruption: str) -> list[float]:
        """The mean accuracy over the severities of one corruption, per seed."""
        return [float(np.mean([self.accuracy[(corruption, s)][seed] for s in self.severities]))
                for seed in self.seeds]

    def errors_relative_to(self, reference: ModelRobustness) -> list[float]:
        """The mean corruption error relative to `reference` (corruption_error), per seed."""
        return [corruption_error(self, reference, seed) for seed in self.seeds]


def model_robustness(rows: list[dict], deterministic=frozenset()) -> dict[tuple, ModelRobustness]:
    """(task, model) -> ModelRobustness from robustness.csv rows; a deterministic model (identical seeds, in
    `deterministic`) keeps its first seed only, so its spread is not a false ± 0."""
    grouped = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        grouped[(row["task"], row["model"])][(row["corruption"], row["severity"])][row["seed"]] = row["accuracy"]
    result = {}
    for (task, model), accuracy in grouped.items():
        seeds = tuple(sorted(next(iter(accuracy.values()))))
        if (task, model) in deterministic:
            seeds = seeds[:1]
        result[(task, model)] = ModelRobustness(task, model, seeds, dict(accuracy))
    return result


def corruption_error(model: ModelRobustness, reference: ModelRobustness, seed) -> float:
    """ImageNet-C's mean corruption error of one seed of `model`, relative to `reference` (its seeds' mean error):
    per corruption, the model's errors summed over the severities over the reference's, then the mean over the
    corruptions (1.0: as robust as the reference; lower is better)."""
    ratios = []
    for corruption in model.corruptions:
        own = sum(1 - model.accuracy[(corruption, s)][seed] for s in model.severities)
        ref = sum(1 - reference.mean(corruption, s) for s in model.severities)
        ratios.append(own / ref if ref > 0 else np.nan)
    return float(np.nanmean(ratios)) if not np.all(np.isnan(ratios)) else float("nan")


def lead(model: ModelRobustness, rival: ModelRobustness, corruption: str, severity: int) -> float:
    """`model`'s accuracy minus `rival`'s in points (means over each one's seeds)."""
    return 100 * (model.mean(corruption, severity) - rival.mean(corruption, severity))


@dataclass(frozen=True)
class ClassCollapse:
    """Under one corruption, the class that collapses first (its recall below COLLAPSE_SHARE of its clean recall
    at the lowest severity; None when none does by the last one), and the class the predictions drift to most at
    the last severity (the largest rise in its share of the predictions)."""

    collapsed: str | None
    severity: int | None
    drift_to: str
    drift_points: float


def class_collapses(class_rows: list[dict], task: str, model: str, seeds) -> dict[str, ClassCollapse]:
    """corruption -> ClassCollapse of one (task, model), from robustness_per_class.csv rows (mean over `seeds`)."""
    recall, share = defaultdict(list), defaultdict(list)
    for row in class_rows:
        if row["task"] == task and row["model"] == model and row["seed"] in seeds:
            recall[(row["corruption"], row["severity"], row["class"])].append(row["recall"])
            share[(row["corruption"], row["severity"], row["class"])].append(row["predicted_share"])
    classes = list(dict.fromkeys(c for _, _, c in recall))
    corruptions = list(dict.fromkeys(c for c, _, _ in recall if c != CLEAN))
    severities = sorted({s for c, s, _ in recall if c != CLEAN})
    mean_recall = {key: float(np.mean(v)) for key, v in recall.items()}
    mean_share = {key: float(np.mean(v)) for key, v in share.items()}
    result = {}
    for corruption in corruptions:
        collapsed, at = None, None
        for severity in severities:
            ratios = {k: mean_recall[(corruption, severity, k)] / mean_recall[(CLEAN, CLEAN_SEVERITY, k)]
                      for k in classes if mean_recall[(CLEAN, CLEAN_SEVERITY, k)] >= MIN_CLEAN_RECALL}
            fallen = {k: r for k, r in ratios.items() if r < COLLAPSE_SHARE}
            if fallen:
                collapsed, at = min(fallen, key=lambda k: (fallen[k], classes.index(k))), severity
                break
        rise = {k: mean_share[(corruption, severities[-1], k)] - mean_share[(CLEAN, CLEAN_SEVERITY, k)]
                for k in classes}
        drift_to = max(classes, key=lambda k: (rise[k], -classes.index(k)))
        result[corruption] = ClassCollapse(collapsed, at, drift_to, 100 * rise[drift_to])
    return result


def spread_points(values: list[float]) -> str:
    """Accuracies (fractions) as "mean ± sd" in %, one value without a spread."""
    mean, std = mean_and_std(values)
    return f"{100 * mean:.1f}" if len(values) == 1 else f"{100 * mean:.1f} ± {100 * std:.1f}"
