"""Where the reference model gains: per-class recall with bootstrap intervals, the paired per-class recall gain
over each other model, and each model's most frequent confusions. The numbers are computed first
(`per_class_recalls`, `recall_gains`, `confused_pairs`), then drawn; `plot_recall`, `plot_recall_gain` and
`plot_confused_pairs` do both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.errors import FerBenchError
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, SectionOutput, TaskResults
from fer_bench.figures.png import new_figure
from fer_bench.metrics import bootstrap_recall_intervals, paired_recall_gain, top_confusions
from fer_bench.settings import Settings


@dataclass
class Bars:
    """Per-class values (fractions) with their (k, 2) 95% interval."""

    values: np.ndarray
    interval: np.ndarray


def per_class_recalls(tr: TaskResults, settings: Settings) -> dict[str, Bars]:
    """Per model: each class's recall (per_class.csv's recall) and its percentile bootstrap interval."""
    support = np.bincount(tr.labels, minlength=tr.n_classes)
    bars = {}
    for model in tr.models:
        pred = tr.pred(model)
        recall = np.divide(np.bincount(tr.labels, weights=pred == tr.labels, minlength=tr.n_classes), support,
                           out=np.full(tr.n_classes, np.nan), where=support > 0)
        bars[model] = Bars(recall, bootstrap_recall_intervals(tr.labels, pred, tr.n_classes, seed=tr.cells[model].seed,
                                                              n_resamples=settings.bootstrap_resamples,
                                                              level=settings.confidence_level))
    return bars


def recall_gains(tr: TaskResults, settings: Settings) -> dict[str, Bars]:
    """Per other model: the reference's per-class recall minus its own, with the paired bootstrap interval."""
    return {b: Bars(*paired_recall_gain(tr.labels, tr.pred(tr.reference), tr.pred(b), tr.n_classes,
                                        seed=tr.cells[tr.reference].seed, n_resamples=settings.bootstrap_resamples,
                                        level=settings.confidence_level))
            for b in tr.baselines}


def confused_pairs(tr: TaskResults, top: int) -> dict[str, list[tuple[int, int, int, float]]]:
    """Per model: its `top` most frequent (true, predicted, count, share of the true class), as confusions.csv."""
    return {model: top_confusions(tr.labels, tr.pred(model), tr.n_classes, top) for model in tr.models}


def _bar_positions(n_groups: int, n_bars: int, width: float = 0.8):
    bar = width / n_bars
    return [np.arange(n_groups) - width / 2 + bar * (k + 0.5) for k in range(n_bars)], bar


def _error_bars(bars: Bars) -> np.ndarray:
    return np.abs(np.stack([bars.values - bars.interval[:, 0], bars.interval[:, 1] - bars.values])) * 100


def recall_figure(tr: TaskResults, recalls: dict[str, Bars], colors) -> Figure:
    fig = new_figure(max(5.0, 0.9 * tr.n_classes + 2.2), 3.6)
    ax = fig.add_subplot()
    positions, bar = _bar_positions(tr.n_classes, len(recalls))
    for x, (model, bars) in zip(positions, recalls.items(), strict=True):
        ax.bar(x, 100 * bars.values, bar, color=colors[model], label=model, yerr=_error_bars(bars), capsize=2,
               error_kw={"lw": 0.8})
    ax.set_xticks(np.arange(tr.n_classes), tr.class_names, fontsize=8)
    ax.set(ylim=(0, 105), ylabel="recall % (95% bootstrap CI)",
           title=f"{tr.task}: per-class recall\n({tr.where_text()})")
    ax.legend(fontsize=8, ncols=len(recalls), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)
    return fig


def gain_figure(tr: TaskResults, gains: dict[str, Bars], colors) -> Figure:
    fig = new_figure(max(5.0, 0.8 * tr.n_classes + 2.2), 3.4)
    ax = fig.add_subplot()
    positions, bar = _bar_positions(tr.n_classes, len(gains))
    for x, (baseline, bars) in zip(positions, gains.items(), strict=True):
        ax.bar(x, 100 * bars.values, bar, color=colors[baseline], label=f"{tr.reference} − {baseline}",
               yerr=_error_bars(bars), capsize=2, error_kw={"lw": 0.8})
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(tr.n_classes), tr.class_names, fontsize=8)
    ax.set(ylabel="recall gain, points (95% paired CI)",
           title=f"{tr.task}: per-class recall gain of {tr.reference}\n({tr.where_text()})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def confused_pairs_figure(tr: TaskResults, pairs_by_model: dict[str, list], colors, top: int) -> Figure:
    fig = new_figure(0.6 + 2.9 * len(pairs_by_model), 2.6)
    axes = fig.subplots(1, len(pairs_by_model), squeeze=False, sharex=True)[0]
    largest = 0.0
    for ax, (model, pairs) in zip(axes, pairs_by_model.items(), strict=True):
        names = [f"{tr.class_names[i]}→{tr.class_names[j]}" for i, j, _, _ in pairs]
        shares = [100 * share for _, _, _, share in pairs]
        y = np.arange(len(pairs))
        ax.barh(y, shares, color=colors[model])
        for yi, (_, _, count, share) in zip(y, pairs, strict=True):
            ax.text(100 * share, yi, f" {count}", va="center", fontsize=7)
        ax.set_yticks(y, names, fontsize=7.5)
        ax.invert_yaxis()
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("% of the true class", fontsize=8)
        largest = max([largest, *shares])
    axes[0].set_xlim(0, max(10.0, largest * 1.25))
    fig.suptitle(f"{tr.task}: top {top} confusions (true→predicted; number: images)\n({tr.where_text()})",
                 fontsize=10)
    return fig


# --- computed, then drawn: the report's figures and fer_bench.results' alike -----------------------------------

def plot_recall(tr: TaskResults, settings: Settings, colors) -> Figure:
    """Every model's per-class recall of `tr` with its bootstrap interval."""
    return recall_figure(tr, per_class_recalls(tr, settings), colors)


def plot_recall_gain(tr: TaskResults, settings: Settings, colors) -> Figure:
    """The reference model's per-class recall gain over each other model of `tr`, paired bootstrap intervals."""
    if not (tr.reference and tr.baselines):
        raise FerBenchError(f"{tr.task}: no recall gain without the reference model ({tr.reference_model or 'none'}) "
                            f"and another model; models: {', '.join(tr.models)}")
    return gain_figure(tr, recall_gains(tr, settings), colors)


def plot_confused_pairs(tr: TaskResults, top: int, colors) -> Figure:
    """Each model's `top` most frequent confusions of `tr`."""
    return confused_pairs_figure(tr, confused_pairs(tr, top), colors, top)


# --- registered figures -------------------------------------------------------------------------------------------

def draw_recall(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    output.figure(plot_recall(tr, ctx.settings, ctx.colors), f"recall_{tr.task}", f"{tr.task} per-class recall",
                  f"{tr.task}: per-class recall of each model, 95% bootstrap intervals ({tr.where_text()}).")


def draw_recall_gain(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    if tr.reference and tr.baselines:
        output.figure(plot_recall_gain(tr, ctx.settings, ctx.colors), f"recall_gain_{tr.task}",
                      f"{tr.task} per-class recall gain", f"{tr.task}: per-class recall gain of {tr.reference} over "
                      f"each other model, paired 95% bootstrap intervals ({tr.where_text()}).")


def draw_confused_pairs(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    top = ctx.settings.top_confusions
    output.figure(plot_confused_pairs(tr, top, ctx.colors), f"confused_pairs_{tr.task}", f"{tr.task} top confusions",
                  f"{tr.task}: each model's {top} most frequent confusions (true→predicted) ({tr.where_text()}).")


def note_without_reference(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    if not tr.reference:
        output.note(f"*{tr.task}: no {ctx.settings.reference_model or 'reference model'} cells, so no "
                    "comparison with the reference model.*")


RECALL = FigureSpec("recall", outline.GAIN_FIGURES, Needs.PREDICTIONS, draw_recall)
RECALL_GAIN = FigureSpec("recall_gain", outline.GAIN_FIGURES, Needs.PREDICTIONS, draw_recall_gain)
CONFUSED_PAIRS = FigureSpec("confused_pairs", outline.GAIN_FIGURES, Needs.PREDICTIONS, draw_confused_pairs)
NO_REFERENCE_NOTE = FigureSpec("no_reference_note", outline.GAIN_FIGURES, Needs.PREDICTIONS,
                               note_without_reference)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (RECALL, RECALL_GAIN, CONFUSED_PAIRS, NO_REFERENCE_NOTE,)
