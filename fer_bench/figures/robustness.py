"""Accuracy against corruption severity, one panel per corruption and one line per model (mean over its seeds, the
band ± one seed sd), severity 0 being the clean faces; drawn per task from the report's robustness rows
(fer_bench.report.robustness)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.cell_robustness import CLEAN, CLEAN_SEVERITY
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, SectionOutput, TaskResults
from fer_bench.figures.png import new_figure

PANEL_COLUMNS = 4


def severity_curves(rows: list[dict], task: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """model -> corruption -> (severities, mean accuracy %, seed sd %) of one task, each curve starting at the
    clean faces (severity 0); rows in report order."""
    values = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        if row["task"] == task:
            values[row["model"]][row["corruption"]][row["severity"]].append(100 * row["accuracy"])
    curves = {}
    for model, by_corruption in values.items():
        clean = by_corruption.pop(CLEAN)[CLEAN_SEVERITY]
        curves[model] = {}
        for corruption, by_severity in by_corruption.items():
            severities = [CLEAN_SEVERITY, *sorted(by_severity)]
            samples = [clean, *(by_severity[s] for s in severities[1:])]
            curves[model][corruption] = (np.asarray(severities), np.asarray([np.mean(v) for v in samples]),
                                         np.asarray([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in samples]))
    return curves


def robustness_figure(curves: dict, colors: dict, task: str) -> Figure:
    corruptions = list(next(iter(curves.values())))
    rows = -(-len(corruptions) // PANEL_COLUMNS)
    fig = new_figure(3.0 * PANEL_COLUMNS, 2.3 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, PANEL_COLUMNS, sharex=True, sharey=True)).ravel()
    for ax, corruption in zip(axes, corruptions, strict=False):
        for model, by_corruption in curves.items():
            severities, mean, std = by_corruption[corruption]
            ax.plot(severities, mean, marker="o", ms=3, lw=1.4, color=colors.get(model), label=model)
            if std.any():
                ax.fill_between(severities, mean - std, mean + std, color=colors.get(model), alpha=0.2, lw=0)
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xticks(range(int(severities[-1]) + 1))
    for ax in axes[len(corruptions):]:
        ax.set_visible(False)
    for ax in axes[::PANEL_COLUMNS]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    for ax in axes[-PANEL_COLUMNS:]:
        ax.set_xlabel("severity (0: clean)", fontsize=8)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{task}: accuracy under each corruption", fontsize=11)
    return fig


def draw_robustness(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    curves = severity_curves(ctx.robustness_rows, tr.task)
    if not curves:
        return
    counts = {model: len(_seeds(ctx.robustness_rows, tr.task, model)) for model in curves}
    lines = ("line: one seed per model" if max(counts.values()) == 1 else
             "line: mean over the seeds, band: ± one seed sd (seeds: "
             + ", ".join(f"{model} {n}" for model, n in counts.items()) + ")")
    output.figure(robustness_figure(curves, ctx.colors, tr.task), f"robustness_{tr.task}",
                  f"{tr.task} accuracy under corruptions",
                  f"{tr.task}: {tr.split} accuracy against severity under each corruption (0: clean faces); {lines}.")


def _seeds(rows: list[dict], task: str, model: str) -> set:
    return {row["seed"] for row in rows if row["task"] == task and row["model"] == model}


ROBUSTNESS = FigureSpec("robustness", outline.ROBUSTNESS, Needs.ROBUSTNESS, draw_robustness)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (ROBUSTNESS,)
