"""Metrics computed from stored predictions (scikit-learn where it has them), and the metric registry.

Everything here is a pure function of (true labels, predicted probabilities), so `fer-bench report` can recompute
every number without retraining, deterministically (bootstrap resampling is seeded).

The metric registry (`register_metric`, `registered_metrics`) is what every table reads: metrics.csv's columns,
the headline of summary.md and index.html, summary.tex and `fer-bench compare`. A metric is one `Metric` entry
(its function of (y_true, proba, n_classes), label, how it prints, which way is better, whether it gets a
bootstrap interval and which tables show it); registering one adds its column to metrics.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from fer_bench.errors import FerBenchError
from fer_bench.settings import BOOTSTRAP_RESAMPLES, CONFIDENCE_LEVEL, ECE_BINS, Settings

#: the report's defaults, for callers that pass no settings
DEFAULT_SETTINGS = Settings()

# --- calibration ----------------------------------------------------------------------------------------------


def reliability_curve(y_true, proba, n_bins: int = ECE_BINS):
    """Per equal-width top-label confidence bin (0, 1/n], (1/n, 2/n], ...: (bin centre, mean confidence,
    accuracy, count); empty bins have NaN. The non-empty bins come from scikit-learn's calibration_curve."""
    y_true = np.asarray(y_true)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(int)
    # calibration_curve's bins are right-closed like these: a confidence of exactly k/n falls in bin k-1.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    mean_conf = np.full(n_bins, np.nan)
    accuracy = np.full(n_bins, np.nan)
    if len(y_true):
        accuracy_used, conf_used = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
        used = np.flatnonzero(counts)
        if len(used) == len(conf_used):
            mean_conf[used], accuracy[used] = conf_used, accuracy_used
        else:  # a confidence exactly on a bin edge, which the two binnings place on different sides
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
                accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    centres = (np.arange(n_bins) + 0.5) / n_bins
    return centres, mean_conf, accuracy, counts


def expected_calibration_error(y_true, proba, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over the reliability curve's bins of |accuracy - mean confidence| weighted by bin
    size."""
    _, mean_conf, accuracy, counts = reliability_curve(y_true, proba, n_bins)
    used = counts > 0
    if not used.any():
        return 0.0
    return float(np.sum(counts[used] / counts.sum() * np.abs(accuracy[used] - mean_conf[used])))


# --- ranking ---------------------------------------------------------------------------------------------------

def roc_auc(y_true, proba, n_classes: int) -> dict[str, float]:
    """Binary: plain AUC of class 1 (reported as macro and micro alike). Multi-class: one-vs-rest macro and
    micro AUC. Classes absent from y_true make a one-vs-rest AUC undefined: they are left out of the macro mean."""
    if n_classes == 2:
        auc = float(skm.roc_auc_score(y_true, proba[:, 1])) if len(np.unique(y_true)) == 2 else float("nan")
        return {"roc_auc_macro": auc, "roc_auc_micro": auc}
    per_class = per_class_auc(y_true, proba, n_classes)
    onehot = np.eye(n_classes)[y_true]
    return {
        "roc_auc_macro": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan"),
        "roc_auc_micro": float(skm.roc_auc_score(onehot.ravel(), proba.ravel())),
    }


def per_class_auc(y_true, proba, n_classes: int) -> np.ndarray:
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        positives = y_true == c
        if 0 < positives.sum() < len(y_true):
            out[c] = skm.roc_auc_score(positives, proba[:, c])
    return out


# --- bootstrap --------------------------------------------------------------------------------------------------
# One resampling loop for every interval: images drawn with replacement, rng.integers(0, n, n) per resample in
# order, so a statistic's interval depends only on (seed, n, n_resamples) and is the same whichever batch size
# computes it. scipy.stats.bootstrap would do the drawing and the percentiles, but every statistic here needs a
# confusion matrix per resample (our code either way), and its resampling stream would change every committed
# interval; the percentile step is the same np.percentile.

#: resampled index rows computed at once: bounds the index array's memory
_BOOTSTRAP_CELLS = 2_000_000


def bootstrap_distribution(statistic: Callable[[np.ndarray], np.ndarray], n: int, *,
                           n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """`statistic(index)` for index arrays of shape (batch, n) of resampled image positions, stacked over all
    `n_resamples` resamples: shape (n_resamples, ...)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CELLS // max(n, 1))
    parts = []
    for start in range(0, n_resamples, chunk):
        parts.append(np.asarray(statistic(rng.integers(0, n, (min(chunk, n_resamples - start), n)))))
    return np.concatenate(parts)


def percentile_interval(values: np.ndarray, level: float = CONFIDENCE_LEVEL) -> np.ndarray:
    """Percentile interval along axis 0, ignoring NaN (a class absent from a resample): shape (2, ...)."""
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return np.stack([np.nanpercentile(values, lo, axis=0), np.nanpercentile(values, hi, axis=0)])


def _confusions(pair_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """(batch, n) codes true * k + predicted -> (batch, k, k) confusion matrices."""
    batch = len(pair_codes)
    offsets = (np.arange(batch) * n_classes * n_classes)[:, None]
    counts = np.bincount((pair_codes + offsets).ravel(), minlength=batch * n_classes * n_classes)
    return counts.reshape(batch, n_classes, n_classes)


def _macro_f1(cms: np.ndarray) -> np.ndarray:
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    denom = cms.sum(axis=1) + cms.sum(axis=2)
    # sklearn's zero_division=0 convention: a class with no true and no predicted samples scores 0.
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(axis=1)


def _recalls(cms: np.ndarray) -> np.ndarray:
    support = cms.sum(axis=2)
    diagonal = np.diagonal(cms, axis1=1, axis2=2)
    return np.divide(diagonal, support, out=np.full(support.shape, np.nan), where=support > 0)


def bootstrap_recall_intervals(y_true, y_pred, n_classes: int, *, n_resamples: int = BOOTSTRAP_RESAMPLES,
                               seed: int = 0, level: float = CONFIDENCE_LEVEL) -> np.ndarray:
    """(n_classes, 2) percentile bootstrap intervals of each class's recall."""
    pair = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    recalls = bootstrap_distribution(lambda index: _recalls(_confusions(pair[index], n_classes)), len(pair),
                                     n_resamples=n_resamples, seed=seed)
    return percentile_interval(recalls, level).T


def paired_recall_gain(labels, pred_a, pred_b, n_classes: int, *, n_resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, level: float = CONFIDENCE_LEVEL):
    """Per-class recall of model a minus model b, and its paired percentile bootstrap interval (the same
    resampled images score both models). Returns (gain (k,), interval (k, 2)); NaN for absent classes."""
    labels = np.asarray(labels)
    difference = (pred_a == labels).astype(np.float64) - (pred_b == labels)
    support = np.bincount(labels, minlength=n_classes)
    gain = np.divide(np.bincount(labels, weights=difference, minlength=n_classes), support,
                     out=np.full(n_classes, np.nan), where=support > 0)

    def statistic(index):
        batch = len(index)
        key = (np.arange(batch)[:, None] * n_classes + labels[index]).ravel()
        sums = np.bincount(key, weights=difference[index].ravel(), minlength=batch * n_classes)
        counts = np.bincount(key, minlength=batch * n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / counts).reshape(batch, n_classes)

    gains = bootstrap_distribution(statistic, len(labels), n_resamples=n_resamples, seed=seed)
    interval = np.full((n_classes, 2), np.nan)
    present = np.flatnonzero(support)
    interval[present] = percentile_interval(gains[:, present], level).T
    return gain, interval


# --- the registry ------------------------------------------------------------------------------------------------

def format_number(value, *, percent: bool, decimals: int, signed: bool = False) -> str:
    """How a metric's value prints in every table: ×100 when `percent` (a difference then reads in points),
    fixed decimals, "–" for a missing or undefined (NaN) value."""
    if value is None or np.isnan(value):
        return "–"
    sign = "+" if signed else ""
    return f"{100 * value if percent else value:{sign}.{decimals}f}"


@dataclass(frozen=True)
class Metric:
    """One scalar metric of a (task, model, seed, split) cell: a column of metrics.csv, and what the tables that
    show it need to know.

    function(y_true, proba, n_classes) -> float, or function(y_true, proba, n_classes, settings) with
    `takes_settings` (a metric defined by a setting, like the ECE's bins). `interval`: metrics.csv also gets
    <name>_ci_low/_ci_high, a percentile bootstrap over the images (`metric_intervals`); `from_confusions`, when
    given, computes the metric from a (batch, k, k) stack of confusion matrices so that the bootstrap need not
    call `function` once per resample. `percent`: printed ×100 (differences in points) with `decimals` (default
    1, else 3); `higher_is_better`: which way a difference is an improvement. `label` heads its table column
    (default: the name with spaces), `short_label` the narrow summary.tex column. `headline`: a column of the
    headline table (summary.md, index.html); `brief`: a column of the narrow tables, summary.tex and
    `fer-bench compare`'s CSV and JSON (the built-in brief metrics are headline ones too)."""

    name: str
    function: Callable[..., float]
    higher_is_better: bool = True
    interval: bool = False
    percent: bool = True
    label: str = ""
    short_label: str = ""
    decimals: int | None = None
    headline: bool = False
    brief: bool = False
    takes_settings: bool = False
    from_confusions: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self):
        # frozen: the defaults that depend on other fields are filled in once, here
        object.__setattr__(self, "label", self.label or self.name.replace("_", " "))
        object.__setattr__(self, "short_label", self.short_label or self.label)
        if self.decimals is None:
            object.__setattr__(self, "decimals", 1 if self.percent else 3)

    @property
    def columns(self) -> list[str]:
        return [self.name, f"{self.name}_ci_low", f"{self.name}_ci_high"] if self.interval else [self.name]

    @property
    def header(self) -> str:
        """The column heading: the label, with its unit when shown in percent."""
        return f"{self.label} %" if self.percent else self.label

    def value(self, y_true, proba, n_classes: int, settings: Settings) -> float:
        if self.takes_settings:
            return float(self.function(y_true, proba, n_classes, settings))
        return float(self.function(y_true, proba, n_classes))

    def format(self, value, *, signed: bool = False) -> str:
        return format_number(value, percent=self.percent, decimals=self.decimals, signed=signed)

    def improves(self, difference: float) -> bool:
        """Whether a change by `difference` (new - old) is for the better."""
        return difference > 0 if self.higher_is_better else difference < 0


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, overwrite: bool = False) -> Metric:
    """Add `metric` to the registry: a column of metrics.csv from the next report on (in registration order)."""
    if metric.name in _METRICS and not overwrite:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> Metric:
    return _METRICS.pop(name)


@contextmanager
def metric_registered(metric: Metric):
    """`metric` registered inside the `with` block only (a test's or a one-off script's own metric)."""
    register_metric(metric)
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


def registered_metrics() -> tuple[Metric, ...]:
    return tuple(_METRICS.values())


def headline_metrics() -> list[Metric]:
    """The columns of the headline table (summary.md, index.html), in registration order."""
    return [metric for metric in registered_metrics() if metric.headline]


def brief_metrics() -> list[Metric]:
    """The metrics of the narrow tables: summary.tex and `fer-bench compare`'s CSV and JSON."""
    return [metric for metric in registered_metrics() if metric.brief]


def get_metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise FerBenchError(f"unknown metric {name!r}; registered: {', '.join(_METRICS)}") from None


def metric_columns() -> list[str]:
    """The columns of metrics.csv that summary_metrics fills, in order."""
    return ["n", *(column for metric in registered_metrics() for column in metric.columns)]


def _averaged(score: str, average: str):
    index = ("precision", "recall", "f1").index(score)

    def metric(y_true, proba, n_classes):
        return skm.precision_recall_fscore_support(y_true, proba.argmax(axis=1), labels=np.arange(n_classes),
                                                   average=average, zero_division=0)[index]
    return metric


def _accuracy_of_confusions(cms: np.ndarray) -> np.ndarray:
    return np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2))


for _metric in (
    Metric("accuracy", lambda y, p, k: skm.accuracy_score(y, p.argmax(axis=1)), interval=True,
           headline=True, brief=True, from_confusions=_accuracy_of_confusions),
    Metric("balanced_accuracy", lambda y, p, k: skm.balanced_accuracy_score(y, p.argmax(axis=1))),
    Metric("precision_macro", _averaged("precision", "macro")),
    Metric("recall_macro", _averaged("recall", "macro")),
    Metric("f1_macro", _averaged("f1", "macro"), interval=True, label="macro-F1", headline=True, brief=True,
           from_confusions=_macro_f1),
    Metric("precision_weighted", _averaged("precision", "weighted")),
    Metric("recall_weighted", _averaged("recall", "weighted")),
    Metric("f1_weighted", _averaged("f1", "weighted")),
    Metric("roc_auc_macro", lambda y, p, k: roc_auc(y, p, k)["roc_auc_macro"], percent=False,
           label="ROC AUC (macro)", short_label="AUC", headline=True, brief=True),
    Metric("roc_auc_micro", lambda y, p, k: roc_auc(y, p, k)["roc_auc_micro"], percent=False),
    Metric("log_loss", lambda y, p, k: skm.log_loss(y, np.clip(p, 1e-15, 1), labels=np.arange(k)),
           higher_is_better=False, percent=False, headline=True),
    Metric("ece", lambda y, p, k, settings: expected_calibration_error(y, p, settings.ece_bins),
           higher_is_better=False, percent=False, label="ECE", headline=True, takes_settings=True),
):
    register_metric(_metric)
del _metric


def metric_intervals(y_true, proba, n_classes: int, metrics, *, seed: int = 0,
                     settings: Settings = DEFAULT_SETTINGS) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of `metrics` (images resampled with replacement; every metric scored on
    the same resamples), by metric name."""
    y_true = np.asarray(y_true)
    pair = y_true * n_classes + proba.argmax(axis=1)
    n = len(pair)

    def statistic(index):
        cms = _confusions(pair[index], n_classes)
        return np.stack([metric.from_confusions(cms) if metric.from_confusions is not None
                         else [metric.value(y_true[row], proba[row], n_classes, settings) for row in index]
                         for metric in metrics], axis=1)

    distribution = bootstrap_distribution(statistic, n, n_resamples=settings.bootstrap_resamples, seed=seed)
    interval = percentile_interval(distribution, settings.confidence_level)
    return {metric.name: (float(interval[0, k]), float(interval[1, k])) for k, metric in enumerate(metrics)}


def summary_metrics(y_true, proba, n_classes: int, *, seed: int = 0,
                    settings: Settings = DEFAULT_SETTINGS) -> dict[str, float]:
    """Every registered metric of one (task, model, seed, split) cell, with the intervals of those that have
    one (bootstrap seeded with `seed`; resamples, confidence level and ECE bins from `settings`)."""
    y_true = np.asarray(y_true)
    metrics = registered_metrics()
    out = {"n": len(y_true)}
    for metric in metrics:
        out[metric.name] = metric.value(y_true, proba, n_classes, settings)
    with_interval = [metric for metric in metrics if metric.interval]
    if with_interval:
        intervals = metric_intervals(y_true, proba, n_classes, with_interval, seed=seed, settings=settings)
        for name, (low, high) in intervals.items():
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return {column: out[column] for column in metric_columns()}


# --- per class, confusions, tests, floors ---------------------------------------------------------------------

def per_class_metrics(y_true, proba, n_classes: int) -> dict[str, np.ndarray]:
    y_pred = proba.argmax(axis=1)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), average=None, zero_division=0)
    return {"precision": p, "recall": r, "f1": f, "support": s,
            "roc_auc": per_class_auc(np.asarray(y_true), proba, n_classes)}


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def row_normalise(cm: np.ndarray) -> np.ndarray:
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)


def top_confusions(y_true, y_pred, n_classes: int, top: int) -> list[tuple[int, int, int, float]]:
    """The `top` most frequent off-diagonal (true, predicted) pairs as (true, predicted, count, share of the true
    class), by count, then true class, then predicted class."""
    cm = confusion(y_true, y_pred, n_classes)
    rates = row_normalise(cm)
    pairs = [(int(cm[i, j]), i, j) for i in range(n_classes) for j in range(n_classes) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [(i, j, count, float(rates[i, j])) for count, i, j in pairs[:top]]


def mcnemar_exact(correct_a, correct_b) -> dict[str, float]:
    """Exact (binomial) McNemar test on paired predictions of the same images.

    Returns the two disagreement counts (a right & b wrong, a wrong & b right) and the two-sided p-value."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only = int((correct_a & ~correct_b).sum())
    b_only = int((~correct_a & correct_b).sum())
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_right_b_wrong": a_only, "a_wrong_b_right": b_only, "p_value": p}


def holm_adjusted(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of tests (same order as given): the k-th smallest p is
    multiplied by (m - k + 1), made monotone and capped at 1, so adjusted p < alpha controls the family-wise error
    at alpha. (Hand-written: scipy has no Holm correction and it is four lines.)"""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(scaled, 1.0)
    return adjusted


def floors(train_labels, test_labels, n_classes: int) -> dict[str, float]:
    """Accuracy of always predicting the training majority class, and of uniform guessing."""
    majority = int(np.bincount(train_labels, minlength=n_classes).argmax())
    return {"majority_class": majority,
            "majority_accuracy": float(np.mean(np.asarray(test_labels) == majority)),
            "chance_accuracy": 1.0 / n_classes}
