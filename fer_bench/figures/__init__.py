"""The report's figures: one module per kind, each figure one registered `FigureSpec`.

    curves.py     ROC curves (macro and per class), reliability diagrams
    confusion.py  confusion matrices and their differences from the reference model
    gains.py      per-class recall, the reference's recall gain, each model's top confusions
    mosaics.py    pixel-for-pixel mosaics of faces; face grids of right and wrong answers
    saliency.py   occlusion and gradient maps, class-average maps, maps on mistakes, templates, HOG pictures,
                  drawn from the cells' maps.npz (fer_bench/cell_maps.py)
    training.py   training curves from the stored per-epoch history
    timing.py     the timing comparison
    png.py        the one PNG writer and palette; data.py: what figures are drawn from, the registry types

Each module ends with its `FIGURES` tuple; `FIGURES` below is their concatenation, the registry. Adding a
figure to a module is one draw function and one `figure(...)` entry in that module's tuple. `render_figures`
draws them in memory by stage (FigureSpec.stage: per-task figures from the predictions first, task by task;
then those from stored histories and timings; then, task by task, those that need the images or the cells'
maps; then the ones drawn once from the maps), in registry order within a stage; within a section the markdown
keeps that order; the figures left out for want of the images are named in one line at the end. The report
writes the PNGs with its tables and places each section's markdown (fer_bench.report.sections).
"""

from __future__ import annotations

import itertools

from fer_bench.figures import confusion, curves, gains, mosaics, saliency, timing, training
from fer_bench.figures.data import FigureContext, FigureOutput, FigureSpec, task_results
from fer_bench.settings import ECE_BINS

FIGURES: tuple[FigureSpec, ...] = (*curves.FIGURES, *confusion.FIGURES, *gains.FIGURES, *timing.FIGURES,
                                    *training.FIGURES, *mosaics.FIGURES, *saliency.FIGURES)

#: the section holding the one line that names the figures left out for want of the images
IMAGES_NOTE_SECTION = "saliency"
#: text above a figure section's figures
INTROS = {
    "confusion": "Colour: share of the true class (rows sum to 1); numbers: images. In the difference matrices "
                 "(CNN minus a baseline, percentage points of the true class), red on the diagonal is a class the "
                 "CNN recognises more often; off the diagonal, blue is a confusion the CNN removes and red one it "
                 "adds.",
    "gain": "Recall intervals: 95% percentile bootstrap over the images. Gain intervals: paired bootstrap (the same "
            "resampled images score both models), so an interval that excludes 0 is a clear per-class gain or "
            "loss. Confusions are ranked by count, as in `confusions.csv`; the bars give the share of the true "
            "class and the numbers the images. Face grids show the most confident mistakes, classes in turn, with "
            "the true label and the wrong predictions above each face.",
    "calibration": f"Accuracy against mean top-label confidence in {ECE_BINS} equal-width bins (the ECE of "
                   "`metrics.csv`); "
                   "the lower panel shows the share of images in each bin.",
    "saliency": saliency.INTRO,
}


def render_figures(ctx: FigureContext, figures: tuple[FigureSpec, ...] = FIGURES) -> FigureOutput:
    """Draw every registered figure in memory: PNG bytes, each section's markdown parts, findings."""
    output = FigureOutput(ctx.out)
    ordered = sorted(figures, key=lambda spec: spec.stage)  # stable: registry order within a stage
    for _, run in itertools.groupby(ordered, key=lambda spec: spec.stage):
        run = list(run)
        if run[0].scope == "task":
            for tr in ctx.results:
                for spec in run:
                    spec.draw(output, ctx, tr)
        else:
            for spec in run:
                spec.draw(output, ctx)
    if note := output.images_note():
        output.note(IMAGES_NOTE_SECTION, note)
    return output


def section_markdown(output: FigureOutput, section: str) -> str | None:
    """A figure section's markdown: its intro and its figures, None when it has none."""
    parts = output.parts.get(section)
    if not parts:
        return None
    return "\n\n".join(([INTROS[section]] if section in INTROS else []) + parts)


__all__ = ["FIGURES", "FigureContext", "FigureOutput", "FigureSpec", "render_figures", "section_markdown",
           "task_results"]
