"""Training curves of the models that store a per-epoch history (the CNN): PublicTest and training accuracy
after each epoch against cumulative training minutes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, Scope, SectionOutput
from fer_bench.figures.png import new_figure
from fer_bench.settings import REFERENCE_MODEL
from fer_bench.storage import StoredCell


def training_history(cell: StoredCell) -> list[dict] | None:
    """A cell's per-epoch history: from params.json (what the model's training_history() offered at run time),
    else from a saved CNN's cnn_params.json (git-ignored, only on the machine that ran the cell); None if
    neither."""
    history = cell.params.get("history")
    if history:
        return history
    saved = Path(cell.path) / "model" / "cnn_params.json"
    try:
        return json.loads(saved.read_text()).get("history") or None
    except (OSError, ValueError):
        return None


def training_curves_figure(histories: dict[str, list[dict]]) -> Figure:
    """Per task: PublicTest and training accuracy after each epoch against cumulative training minutes."""
    fig = new_figure(4.2 * len(histories), 3.4)
    axes = fig.subplots(1, len(histories), squeeze=False)[0]
    for ax, (task, history) in zip(axes, histories.items(), strict=True):
        minutes = np.cumsum([r["seconds"] for r in history]) / 60
        validation = np.array([r.get("val_accuracy") or np.nan for r in history], dtype=float)
        ax.plot(minutes, 100 * np.array([r["accuracy"] for r in history], dtype=float), color="0.6",
                label="training (augmented)")
        ax.plot(minutes, 100 * validation, color="tab:blue", marker=".", label="PublicTest")
        if np.isfinite(validation).any():
            best = int(np.nanargmax(validation))
            ax.plot(minutes[best], 100 * validation[best], "o", color="tab:red",
                    label=f"kept: epoch {best + 1}, {100 * validation[best]:.1f}%")
        ax.set(title=f"{task}: {len(history)} epochs, {minutes[-1]:.0f} min", xlabel="training minutes",
               ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def draw_training_curves(output: SectionOutput, ctx: FigureContext) -> None:
    histories, trained = {}, []
    for tr in ctx.results:  # per task, the first model (in report order) that stored a per-epoch history
        for model in tr.models:
            history = training_history(tr.cells[model])
            if history:
                histories[tr.task] = history
                trained.append(model)
                break
    if histories:
        output.figure(training_curves_figure(histories), "cnn_training_curves", "CNN training curves",
                      f"The {'/'.join(dict.fromkeys(trained))}'s accuracy after each epoch against cumulative training "
                      "minutes (epoch time includes the PublicTest evaluation); the red dot is the epoch whose weights "
                      "were kept. A point at minute m is not what an m-minute schedule would reach: the learning "
                      "rate follows the full schedule.")
    elif any(REFERENCE_MODEL in tr.cells for tr in ctx.results):
        output.skipped(["cnn_training_curves"], "CNN training curves: no per-epoch history stored")


TRAINING_CURVES = FigureSpec("training_curves", outline.SELECTION, Needs.HISTORY, draw_training_curves,
                             scope=Scope.GRID)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (TRAINING_CURVES,)
