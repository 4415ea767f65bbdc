"""ROC curves and reliability diagrams: the curves are computed first (`roc_curves`, `per_class_roc_curves`,
`reliability_curves`), then drawn, so tests can check what a figure shows against metrics.csv; `plot_roc`,
`plot_roc_per_class` and `plot_reliability` do both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from fer_bench import outline
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, SectionOutput, TaskResults
from fer_bench.figures.png import new_figure
from fer_bench.metrics import expected_calibration_error, per_class_auc, reliability_curve, roc_auc


@dataclass
class Curve:
    """One model's curve: x and y points and the number its legend shows (AUC or ECE)."""

    x: np.ndarray
    y: np.ndarray
    value: float


def _roc_points(positive: np.ndarray, score: np.ndarray):
    fpr, tpr, _ = skm.roc_curve(positive, score)
    return fpr, tpr


def _macro_roc(labels: np.ndarray, proba: np.ndarray, n_classes: int):
    """Macro one-vs-rest ROC curve: each present class's TPR interpolated on the union of FPRs, averaged."""
    curves = [_roc_points(labels == c, proba[:, c]) for c in range(n_classes) if 0 < (labels == c).sum() < len(labels)]
    if not curves:  # a single class in the split: no ROC curve exists
        return np.array([]), np.array([])
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
    return grid, tpr


def roc_curves(tr: TaskResults) -> dict[str, Curve]:
    """Per model: the binary ROC curve (class 1 vs 0) or the macro one-vs-rest curve, with metrics.csv's
    roc_auc_macro."""
    curves = {}
    for model in tr.models:
        proba = tr.proba[model]
        auc = roc_auc(tr.labels, proba, tr.n_classes)["roc_auc_macro"]
        if tr.n_classes == 2:
            fpr, tpr = _roc_points(tr.labels == 1, proba[:, 1])
        else:
            fpr, tpr = _macro_roc(tr.labels, proba, tr.n_classes)
        curves[model] = Curve(fpr, tpr, auc)
    return curves


def per_class_roc_curves(tr: TaskResults) -> dict[int, dict[str, Curve]]:
    """Per present class, per model: the one-vs-rest ROC curve and per_class.csv's roc_auc."""
    aucs = {m: per_class_auc(tr.labels, tr.proba[m], tr.n_classes) for m in tr.models}
    curves = {}
    for c in range(tr.n_classes):
        positive = tr.labels == c
        if 0 < positive.sum() < len(positive):
            curves[c] = {m: Curve(*_roc_points(positive, tr.proba[m][:, c]), aucs[m][c]) for m in tr.models}
    return curves


def roc_figure(tr: TaskResults, curves: dict[str, Curve], colors) -> Figure:
    fig = new_figure(5.2, 4.6)
    ax = fig.add_subplot()
    for model, curve in curves.items():
        label = f"{model} (AUC {curve.value:.3f})" if tr.n_classes == 2 else f"{model} (macro AUC {curve.value:.3f})"
        ax.plot(curve.x, curve.y, color=colors[model], lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    kind = f"{tr.class_names[1]} vs {tr.class_names[0]}" if tr.n_classes == 2 else "macro one-vs-rest"
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=f"{tr.task}: ROC, {kind}\n({tr.where_text()})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def roc_per_class_figure(tr: TaskResults, curves: dict[int, dict[str, Curve]], colors) -> Figure:
    ncols = 4 if tr.n_classes > 6 else 3
    nrows = int(np.ceil(tr.n_classes / ncols))
    fig = new_figure(2.6 * ncols, 2.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for c, name in enumerate(tr.class_names):
        ax = axes.flat[c]
        if c in curves:
            for model, curve in curves[c].items():
                ax.plot(curve.x, curve.y, color=colors[model], lw=1.3, label=f"{model} {curve.value:.3f}")
            ax.legend(loc="lower right", fontsize=6.5, title="AUC", title_fontsize=6.5)
        else:
            ax.text(0.5, 0.5, "class absent", ha="center", va="center", fontsize=8)
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
        ax.set_title(f"{name} (n={int((tr.labels == c).sum())})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[tr.n_classes:]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("false positive rate", fontsize=8)
    for c in range(max(tr.n_classes - ncols, 0), tr.n_classes):  # panels above an empty one keep their x axis
        if c // ncols < nrows - 1:
            axes.flat[c].set_xlabel("false positive rate", fontsize=8)
            axes.flat[c].tick_params(labelbottom=True)
    fig.suptitle(f"{tr.task}: one-vs-rest ROC per class ({tr.where_text()})", fontsize=10)
    return fig


@dataclass
class Reliability:
    """One model's reliability curve (metrics.reliability_curve) and its ECE (metrics.csv's ece)."""

    centres: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float


def reliability_curves(tr: TaskResults, n_bins: int) -> dict[str, Reliability]:
    return {m: Reliability(*reliability_curve(tr.labels, tr.proba[m], n_bins),
                           expected_calibration_error(tr.labels, tr.proba[m], n_bins)) for m in tr.models}


def reliability_figure(tr: TaskResults, curves: dict[str, Reliability], colors) -> Figure:
    fig = new_figure(5.0, 5.6)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for model, curve in curves.items():
        used = curve.counts > 0
        top.plot(curve.mean_confidence[used], curve.accuracy[used], marker="o", ms=3.5, lw=1.4, color=colors[model],
                 label=f"{model} (ECE {curve.ece:.3f})")
        bottom.step(curve.centres, curve.counts / curve.counts.sum(), where="mid", color=colors[model], lw=1.2)
    top.set(ylim=(0, 1.02), ylabel="accuracy",
            title=f"{tr.task}: reliability (top-label confidence)\n({tr.where_text()})")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.set(xlim=(0, 1), xlabel="top-label confidence", ylabel="share of images")
    bottom.grid(alpha=0.3)
    return fig


# --- computed, then drawn: the report's figures and fer_bench.results' alike -----------------------------------

def plot_roc(tr: TaskResults, colors) -> Figure:
    """Every model's ROC curve of `tr` (binary, or macro one-vs-rest), AUC in the legend."""
    return roc_figure(tr, roc_curves(tr), colors)


def plot_roc_per_class(tr: TaskResults, colors) -> Figure:
    """One panel per class: every model's one-vs-rest ROC curve, per-class AUC in the legends."""
    return roc_per_class_figure(tr, per_class_roc_curves(tr), colors)


def plot_reliability(tr: TaskResults, n_bins: int, colors) -> Figure:
    """Every model's reliability diagram of `tr` in `n_bins` confidence bins, ECE in the legend."""
    return reliability_figure(tr, reliability_curves(tr, n_bins), colors)


# --- registered figures -------------------------------------------------------------------------------------------

def draw_roc(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    kind = "ROC curve" if tr.n_classes == 2 else "macro one-vs-rest ROC curve"
    output.figure(plot_roc(tr, ctx.colors), f"roc_{tr.task}", f"{tr.task} ROC",
                  f"{tr.task}: {kind} of every model, AUC in the legend ({tr.where_text()}).")


def draw_roc_per_class(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    if tr.n_classes > 2:
        output.figure(plot_roc_per_class(tr, ctx.colors), f"roc_per_class_{tr.task}",
                      f"{tr.task} ROC per class", f"{tr.task}: one-vs-rest ROC curve of each class, every model, "
                      f"per-class AUC in the legends ({tr.where_text()}).")


def draw_reliability(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    output.figure(plot_reliability(tr, ctx.settings.ece_bins, ctx.colors), f"reliability_{tr.task}",
                  f"{tr.task} reliability diagram",
                  f"{tr.task}: reliability diagram of every model, ECE in the legend ({tr.where_text()}).")


ROC = FigureSpec("roc", outline.ROC_FIGURES, Needs.PREDICTIONS, draw_roc)
ROC_PER_CLASS = FigureSpec("roc_per_class", outline.ROC_FIGURES, Needs.PREDICTIONS, draw_roc_per_class)
RELIABILITY = FigureSpec("reliability", outline.CALIBRATION_FIGURES, Needs.PREDICTIONS, draw_reliability)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (ROC, ROC_PER_CLASS, RELIABILITY,)
