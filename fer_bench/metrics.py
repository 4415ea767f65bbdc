"""Metrics computed from stored predictions (scikit-learn where it has them).

Everything here is a pure function of (true labels, predicted probabilities), so `fer-bench report` can recompute
every number without retraining, deterministically (bootstrap resampling is seeded).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn import metrics as skm

#: number of bins of the expected calibration error (top-label, equal-width bins)
ECE_BINS = 15
#: bootstrap resamples for the 95% intervals of accuracy and macro-F1
BOOTSTRAP_RESAMPLES = 1000


def expected_calibration_error(y_true, proba, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over confidence bins of |accuracy - mean confidence| weighted by bin size."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    # Bin edges (0, 1/n], (1/n, 2/n], ...: confidence 1.0 falls in the last bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_curve(y_true, proba, n_bins: int = ECE_BINS):
    """Per confidence bin: (bin centre, mean confidence, accuracy, count); empty bins have NaN."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    centres = (np.arange(n_bins) + 0.5) / n_bins
    return centres, mean_conf, accuracy, counts


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


def _macro_f1_from_confusion(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    denom = predicted + actual
    # sklearn's zero_division=0 convention: a class with no true and no predicted samples scores 0.
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def bootstrap_intervals(y_true, y_pred, n_classes: int, *, n_resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for accuracy and macro-F1 (images resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    pair = y_true * n_classes + y_pred
    accuracies = np.empty(n_resamples)
    f1s = np.empty(n_resamples)
    for i in range(n_resamples):
        sample = pair[rng.integers(0, n, n)]
        cm = np.bincount(sample, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
        accuracies[i] = np.trace(cm) / n
        f1s[i] = _macro_f1_from_confusion(cm)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {
        "accuracy": (float(np.percentile(accuracies, lo)), float(np.percentile(accuracies, hi))),
        "f1_macro": (float(np.percentile(f1s, lo)), float(np.percentile(f1s, hi))),
    }


def bootstrap_recall_intervals(y_true, y_pred, n_classes: int, *, n_resamples: int = BOOTSTRAP_RESAMPLES,
                               seed: int = 0, level: float = 0.95) -> np.ndarray:
    """(n_classes, 2) percentile bootstrap intervals of each class's recall."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    pair = y_true * n_classes + y_pred
    recalls = np.empty((n_resamples, n_classes))
    for i in range(n_resamples):
        cm = np.bincount(pair[rng.integers(0, n, n)], minlength=n_classes * n_classes).reshape(n_classes, -1)
        support = cm.sum(axis=1)
        recalls[i] = np.divide(np.diag(cm), support, out=np.full(n_classes, np.nan), where=support > 0)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return np.stack([np.nanpercentile(recalls, lo, axis=0), np.nanpercentile(recalls, hi, axis=0)], axis=1)


def summary_metrics(y_true, proba, n_classes: int, *, seed: int = 0) -> dict[str, float]:
    """All scalar metrics of one (task, model, seed, split) cell."""
    y_true = np.asarray(y_true)
    y_pred = proba.argmax(axis=1)
    labels = np.arange(n_classes)
    out = {
        "n": len(y_true),
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        out.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
    intervals = bootstrap_intervals(y_true, y_pred, n_classes, seed=seed)
    out["accuracy_ci_low"], out["accuracy_ci_high"] = intervals["accuracy"]
    out["f1_macro_ci_low"], out["f1_macro_ci_high"] = intervals["f1_macro"]
    out.update(roc_auc(y_true, proba, n_classes))
    out["log_loss"] = skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels)
    out["ece"] = expected_calibration_error(y_true, proba)
    return {k: (int(v) if k == "n" else float(v)) for k, v in out.items()}


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


def mcnemar_exact(correct_a, correct_b) -> dict[str, float]:
    """Exact (binomial) McNemar test on paired predictions of the same images.

    Returns the two disagreement counts (a right & b wrong, a wrong & b right) and the two-sided p-value."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only = int((correct_a & ~correct_b).sum())
    b_only = int((~correct_a & correct_b).sum())
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_right_b_wrong": a_only, "a_wrong_b_right": b_only, "p_value": p}


def floors(train_labels, test_labels, n_classes: int) -> dict[str, float]:
    """Accuracy of always predicting the training majority class, and of uniform guessing."""
    majority = int(np.bincount(train_labels, minlength=n_classes).argmax())
    return {"majority_class": majority,
            "majority_accuracy": float(np.mean(np.asarray(test_labels) == majority)),
            "chance_accuracy": 1.0 / n_classes}
