"""Confusion matrices side by side, and the reference model's matrix minus each other model's: the matrices are
computed first (`confusion_matrices`, `confusion_differences`), then drawn; `plot_confusion` and
`plot_confusion_difference` do both, for the report and fer_bench.results alike."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.errors import FerBenchError
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, SectionOutput, TaskResults
from fer_bench.figures.png import new_figure, pct
from fer_bench.metrics import confusion, row_normalise


def _annotated_matrix(ax, values, texts, cmap, vmin, vmax, class_names, title, *, ylabel=True):
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    span = vmax - vmin
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            strong = abs(values[i, j] - (vmin + vmax) / 2) > 0.3 * span if vmin < 0 else values[i, j] > 0.55 * vmax
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7 if len(values) > 5 else 8,
                    color="white" if strong else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=7.5)
    ax.set_yticks(ticks, class_names if ylabel else [""] * len(ticks), fontsize=7.5)
    ax.set_xlabel("predicted", fontsize=8)
    if ylabel:
        ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    return image



def confusion_matrices(tr: TaskResults) -> dict[str, np.ndarray]:
    """Per model: the confusion matrix (counts; rows true, columns predicted), as in confusions.csv."""
    return {model: confusion(tr.labels, tr.pred(model), tr.n_classes) for model in tr.models}


def confusion_differences(tr: TaskResults) -> dict[str, np.ndarray]:
    """Per other model: the reference's row-normalised matrix minus its own, in percentage points."""
    ref_rates = row_normalise(confusion(tr.labels, tr.pred(tr.reference), tr.n_classes))
    return {b: 100 * (ref_rates - row_normalise(confusion(tr.labels, tr.pred(b), tr.n_classes))) for b in tr.baselines}


def confusion_figure(tr: TaskResults, matrices: dict[str, np.ndarray]) -> Figure:
    fig = new_figure(max(4.8, 0.4 + 3.2 * len(matrices)), 4.1)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for k, (ax, (model, cm)) in enumerate(zip(axes, matrices.items(), strict=True)):
        texts = [[str(v) for v in row] for row in cm]
        acc = np.trace(cm) / max(cm.sum(), 1)
        image = _annotated_matrix(ax, row_normalise(cm), texts, "Blues", 0.0, 1.0, tr.class_names,
                                  f"{model} (accuracy {pct(acc)}%)", ylabel=k == 0)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class")
    what = f"confusion matrix of {next(iter(matrices))}" if len(matrices) == 1 else "confusion matrices"
    fig.suptitle(f"{tr.task}: {what} ({tr.where_text()})\ncolour: row-normalised; numbers: image counts",
                 fontsize=10)
    return fig


def confusion_difference_figure(tr: TaskResults, diffs: dict[str, np.ndarray]) -> Figure:
    limit = max(5.0, max(float(np.abs(d).max()) for d in diffs.values()))
    fig = new_figure(max(4.8, 0.4 + 3.2 * len(diffs)), 4.1)
    axes = fig.subplots(1, len(diffs), squeeze=False)[0]
    image = None
    for k, (ax, (baseline, diff)) in enumerate(zip(axes, diffs.items(), strict=True)):
        texts = [[f"{v:+.0f}" if abs(v) >= 0.5 else "0" for v in row] for row in diff]
        image = _annotated_matrix(ax, diff, texts, "RdBu_r", -limit, limit, tr.class_names,
                                  f"{tr.reference} − {baseline}", ylabel=k == 0)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="difference (percentage points of the true class)")
    fig.suptitle(f"{tr.task}: where {tr.reference}'s confusion matrix differs\n({tr.where_text()})", fontsize=10)
    return fig


def plot_confusion(tr: TaskResults) -> Figure:
    """The confusion matrices of every model of `tr`, side by side (the report's figure)."""
    return confusion_figure(tr, confusion_matrices(tr))


def plot_confusion_difference(tr: TaskResults) -> Figure:
    """The reference's row-normalised confusion matrix minus each other model's of `tr`."""
    if not (tr.reference and tr.baselines):
        raise FerBenchError(f"{tr.task}: no confusion difference without the reference model "
                            f"({tr.reference_model or 'none'}) and another model; models: {', '.join(tr.models)}")
    return confusion_difference_figure(tr, confusion_differences(tr))


def draw_confusion(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    output.figure(plot_confusion(tr), f"confusion_{tr.task}", f"{tr.task} confusion matrices",
                  f"{tr.task}: confusion matrices of the models side by side ({tr.where_text()}).")


def draw_confusion_difference(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    if tr.reference and tr.baselines:
        output.figure(plot_confusion_difference(tr), f"confusion_diff_{tr.task}", f"{tr.task} confusion difference",
                      f"{tr.task}: {tr.reference} minus each other model, row-normalised confusion matrices in "
                      f"percentage points ({tr.where_text()}).")


CONFUSION = FigureSpec("confusion", outline.CONFUSION_FIGURES, Needs.PREDICTIONS, draw_confusion)
CONFUSION_DIFFERENCE = FigureSpec("confusion_diff", outline.CONFUSION_FIGURES, Needs.PREDICTIONS,
                                  draw_confusion_difference)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (CONFUSION, CONFUSION_DIFFERENCE,)
