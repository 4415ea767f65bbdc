"""The report's figures: one module per kind, each figure one registered `FigureSpec`.

    curves.py     ROC curves (macro and per class), reliability diagrams
    confusion.py  confusion matrices and their differences from the reference model
    gains.py      per-class recall, the reference's recall gain, each model's top confusions
    mosaics.py    pixel-for-pixel mosaics of faces; face grids of right and wrong answers
    saliency.py   occlusion and gradient maps, class-average maps, maps on mistakes, templates, HOG pictures,
                  drawn from the cells' maps.npz (fer_bench/cell_maps.py)
    training.py   training curves from the stored per-epoch history
    timing.py     the timing comparison
    robustness.py accuracy against corruption severity, from the cells' robustness.npz
    png.py        the one PNG writer and palette; data.py: what figures are drawn from, the registry types
    corruptions.py  the corruption suite's picture (docs/corruptions.png), drawn apart from the report

Each module ends with its `FIGURES` tuple; `FIGURES` below is their concatenation, the registry. Adding a
figure to a module is one draw function and one `FigureSpec(...)` entry in that module's tuple, naming its
section (a `fer_bench.outline` Section: the draw function writes to a `SectionOutput` placed there, so the spec
alone says where the figure goes) and what it `Needs`. `render_figures` draws them in memory by `Stage`
(FigureSpec.stage: PER_TASK, figures from the predictions, task by task; ONCE, those from stored histories and
timings; PER_TASK_LOADED, task by task, those that need the images or the cells' maps; ONCE_LOADED, the ones
drawn once from them), in registry order within a stage; within a section the markdown keeps that order; the
figures left out for want of the images are named in one line at the end. The report writes the PNGs with its
tables and places each section's markdown, under the section's intro (fer_bench.report.sections).

The figures drawn from the predictions alone also have a `plot_*` function (e.g. `confusion.plot_confusion`,
`curves.plot_roc`): compute, then draw, and return the Figure. The draw functions call it, and so does
fer_bench.results for a notebook, so a figure is the same in both.
"""

from __future__ import annotations

import itertools

from fer_bench import outline
from fer_bench.figures import confusion, curves, gains, mosaics, robustness, saliency, timing, training
from fer_bench.figures.data import FIGURE_ITEM, FigureContext, FigureOutput, FigureSpec, Scope, task_results
from fer_bench.outline import Section

FIGURES: tuple[FigureSpec, ...] = (*curves.FIGURES, *confusion.FIGURES, *gains.FIGURES, *timing.FIGURES,
                                    *robustness.FIGURES, *training.FIGURES, *mosaics.FIGURES, *saliency.FIGURES)


def render_figures(ctx: FigureContext, figures: tuple[FigureSpec, ...] = FIGURES) -> FigureOutput:
    """Draw every registered figure in memory: PNG bytes, each section's markdown parts, findings."""
    output = FigureOutput(ctx.out)
    ordered = sorted(figures, key=lambda spec: spec.stage)  # stable: registry order within a stage
    for _, run in itertools.groupby(ordered, key=lambda spec: spec.stage):
        run = list(run)
        if run[0].scope is Scope.TASK:
            for tr in ctx.results:
                for spec in run:
                    spec.draw(output.placed_in(spec.section), ctx, tr)
        else:
            for spec in run:
                spec.draw(output.placed_in(spec.section), ctx)
    if note := output.images_note():
        output.placed_in(outline.IMAGES_NOTE).note(note)
    return output


#: between two figures of one task on one line of summary.md
FIGURE_SEPARATOR = " · "


def figure_group(part: str) -> str | None:
    """The first word of a figure item's alt text ("- ![7class ROC](...)" -> "7class": figures name their task
    first), None for a part that is not a figure."""
    if not part.startswith(FIGURE_ITEM):
        return None
    words = part[len(FIGURE_ITEM) + 1:].split("]", 1)[0].split()
    return words[0] if words else ""


def section_markdown(output: FigureOutput, section: Section, intro: str | None = None) -> str | None:
    """A figure section's markdown: its intro (`intro`, default the section's own text) and its figures, None
    when it has none. Consecutive figures form one list; consecutive figures of one task share a line (joined by
    FIGURE_SEPARATOR; every figure, in a section whose figures_on_one_line says so), so summary.md stays short;
    index.html shows each in its own closed box again."""
    parts = output.parts.get(section)
    if not parts:
        return None
    intro = section.intro if intro is None else intro
    blocks = [intro] if intro else []
    for part, previous in zip(parts, [None, *parts[:-1]], strict=True):
        group, previous_group = figure_group(part), None if previous is None else figure_group(previous)
        if group is not None and previous_group is not None and (group == previous_group
                                                                  or section.figures_on_one_line):
            blocks[-1] += FIGURE_SEPARATOR + part[len(FIGURE_ITEM) - 1:]  # the same task: the same line
        elif group is not None and previous_group is not None:
            blocks[-1] += "\n" + part  # a figure after a figure: the next item of the same list
        else:
            blocks.append(part)
    return "\n\n".join(blocks)


__all__ = ["FIGURES", "FigureContext", "FigureOutput", "FigureSpec", "render_figures", "section_markdown",
           "task_results"]
