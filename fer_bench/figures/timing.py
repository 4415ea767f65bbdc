"""The timing comparison figures, drawn from the report's timing rows (fer_bench.report.timing): fit time,
inference throughput and accuracy per task and model, and accuracy against fit time; and, for the models whose
training FLOPs are counted (networks), accuracy against training compute."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fer_bench import outline
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, Scope, SectionOutput
from fer_bench.figures.png import model_colors, new_figure

TIMING_FIGURE = "timing"
COMPUTE_FIGURE = "accuracy_vs_compute"
COMPUTE_CAPTION = ("Accuracy against training compute (TFLOP of the whole fit, log scale) of the models whose training "
                   "FLOPs are counted, per task: small dots are seeds, large ones their mean. FLOPs do not depend on "
                   "the machine, so points of cells run on different machines compare.")
CAPTION = ("Fit time, inference throughput and accuracy per task and model; bottom right: accuracy against fit time "
           "(colour = model, marker = task).")


def grouped_rows(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Timing rows by (task, model), in row order."""
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row["task"], row["model"])].append(row)
    return grouped


def mean_of(rows: list[dict], key: str):
    """Mean of a column over rows (seeds), None when no row has it."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _short(value: float) -> str:
    """3 significant digits with a k/M suffix (bar labels)."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _positive(value):
    return value if value is not None and value > 0 else None


def timing_figure(rows: list[dict], split: str) -> Figure | None:
    """The timing comparison figure (None when nothing was timed): fit time, inference throughput and accuracy
    per task and model, and accuracy against fit time."""
    grouped = grouped_rows(rows)
    if not grouped or all(mean_of(g, "fit_seconds") is None for g in grouped.values()):
        return None
    tasks = list(dict.fromkeys(task for task, _ in grouped))
    models = list(dict.fromkeys(model for _, model in grouped))
    colors = model_colors(models)
    markers = dict(zip(tasks, "osD^vP*X", strict=False))

    fig = new_figure(11, 7.5)
    axes = fig.subplots(2, 2)
    panels = [(axes[0, 0], "fit_seconds", "fit time (s, log scale)", True, 1.0),
              (axes[0, 1], "predict_images_per_s", f"inference, {split} batch (images/s, log scale)",
               True, 1.0),
              (axes[1, 0], "accuracy", f"{split} accuracy (%)", False, 100.0)]
    width = 0.8 / max(len(models), 1)
    for ax, key, title, log, scale in panels:
        for j, model in enumerate(models):
            for i, task in enumerate(tasks):
                value = mean_of(grouped.get((task, model), []), key)
                value = _positive(None if value is None else value * scale)
                if value is None:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(x, value, width, color=colors[model])
                ax.annotate(_short(value), (x, value), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
    model_handles = [Patch(color=colors[m], label=m) for m in models]
    axes[0, 0].legend(handles=model_handles, fontsize=8)
    scatter = axes[1, 1]
    for (task, model), group in grouped.items():
        fit, accuracy = _positive(mean_of(group, "fit_seconds")), mean_of(group, "accuracy")
        if fit is None or accuracy is None:
            continue
        scatter.scatter(fit, 100 * accuracy, color=colors[model], marker=markers.get(task, "o"), s=60)
    scatter.set_xscale("log")
    scatter.set_xlabel("fit time (s, log scale)")
    scatter.set_ylabel(f"{split} accuracy (%)")
    scatter.set_title("trade-off: accuracy against fit time", fontsize=10)
    scatter.grid(alpha=0.3)
    task_handles = [Line2D([], [], color="grey", marker=markers.get(t, "o"), linestyle="", label=t) for t in tasks]
    scatter.legend(handles=model_handles + task_handles, fontsize=8, loc="best")
    return fig


def compute_figure(rows: list[dict], split: str) -> Figure | None:
    """Accuracy against training TFLOP, one panel per task, for the models with counted training FLOPs (None when
    no cell has them)."""
    counted = [r for r in rows if r.get("train_tflop") is not None and r.get("accuracy") is not None]
    if not counted:
        return None
    grouped = grouped_rows(counted)
    tasks = list(dict.fromkeys(task for task, _ in grouped))
    colors = model_colors(list(dict.fromkeys(model for _, model in grouped_rows(rows))))
    fig = new_figure(3.6 * len(tasks) + 0.6, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(tasks), squeeze=False)[0])
    for ax, task in zip(axes, tasks, strict=True):
        for (row_task, model), group in grouped.items():
            if row_task != task:
                continue
            ax.scatter([r["train_tflop"] for r in group], [100 * r["accuracy"] for r in group], s=14, alpha=0.5,
                       color=colors[model])
            x, y = mean_of(group, "train_tflop"), 100 * mean_of(group, "accuracy")
            ax.scatter(x, y, s=70, color=colors[model], label=f"{model} ({len(group)} seed{'s' * (len(group) > 1)})")
            ax.annotate(model, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("training compute (TFLOP, log scale)")
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.3, y=0.2)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def draw_timing(output: SectionOutput, ctx: FigureContext) -> None:
    fig = timing_figure(ctx.timing_rows, ctx.settings.headline_split)
    if fig is not None:
        output.figure(fig, TIMING_FIGURE, CAPTION, CAPTION)


def draw_compute(output: SectionOutput, ctx: FigureContext) -> None:
    fig = compute_figure(ctx.timing_rows, ctx.settings.headline_split)
    if fig is not None:
        output.figure(fig, COMPUTE_FIGURE, COMPUTE_CAPTION, COMPUTE_CAPTION)


TIMING = FigureSpec("timing", outline.TIMING, Needs.TIMINGS, draw_timing, scope=Scope.GRID)
COMPUTE = FigureSpec("accuracy_vs_compute", outline.TIMING, Needs.TIMINGS, draw_compute, scope=Scope.GRID)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (TIMING, COMPUTE)
