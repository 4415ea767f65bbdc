"""The outline of summary.md (and index.html): every `##` section as one `Section` object, in order.

`SECTIONS` is the one list of the report's sections and their order. Figures (fer_bench.figures: a
`FigureSpec.section`) and the report (fer_bench.report.sections: the markdown each section is built from) refer
to a section by its object, never by a name typed again, so a section cannot be misspelt into a new one. This
module sits low in the import graph (it imports neither figures nor report) so that both can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_bench import saliency as saliency_maps


@dataclass(frozen=True)
class Section:
    """One `##` section of the report.

    id: a stable short key (not shown). title: the heading, a template naming the settings' splits, {headline}
    and {selection}, and the {reference} model. intro: text above a figure section's figures (None: none), a
    template naming the {reference} model and the settings' {ece_bins} (see intro_text). figures_on_one_line: its
    figures (one of a kind per task) share one line of summary.md, not a line per task."""

    id: str
    title: str
    intro: str | None = None
    figures_on_one_line: bool = False

    @property
    def order(self) -> int:
        """Its place in the report: its position in SECTIONS (ValueError for a section not registered there)."""
        return SECTIONS.index(self)

    def heading(self, *, headline: str, selection: str, reference: str) -> str:
        return self.title.format(headline=headline, selection=selection, reference=reference)

    def intro_text(self, *, reference: str, ece_bins: int) -> str | None:
        """The intro as the report shows it, with the report's reference model and settings."""
        return None if self.intro is None else self.intro.format(reference=reference, ece_bins=ece_bins)


HEADLINE = Section("headline", "Headline: {headline} ({selection} only used for model selection)")
FINDINGS = Section("findings", "Findings")
#: the headline table with every headline metric and the seed ensembles (the headline shows the brief metrics)
ALL_METRICS = Section("all_metrics", "Every headline metric ({headline})")
PROVENANCE = Section("provenance", "Provenance")
PER_CLASS = Section("per_class", "Per-class recall and the {reference}'s gains ({headline})")
SIGNIFICANCE = Section("significance", "Is the {reference}'s difference significant? ({headline})")
CONFUSIONS = Section("confusions", "Top confusions ({headline})")
#: a table section that also holds the accuracy-against-severity figures, below its tables
ROBUSTNESS = Section("robustness", "Robustness: accuracy under corruptions ({headline})", figures_on_one_line=True)
SELECTION = Section("selection", "What each model chose on {selection}")
#: table sections that also hold figures below their tables: the training curves (the epochs chosen on
#: PublicTest) and the timing figures
TIMING = Section("timing", "Timing: speed, size and efficiency")
ROC_FIGURES = Section("roc", "Figures: ROC curves ({headline})")
CONFUSION_FIGURES = Section(
    "confusion", "Figures: confusion matrices ({headline})",
    intro="Colour: share of the true class (rows sum to 1); numbers: images. In the difference matrices ({reference} "
          "minus another model, percentage points of the true class), red on the diagonal is a class the "
          "{reference} recognises more often; off the diagonal, blue is a confusion the {reference} removes and "
          "red one it adds.")
GAIN_FIGURES = Section(
    "gain", "Figures: where the {reference} gains ({headline})",
    intro="Recall intervals: 95% percentile bootstrap over the images. Gain intervals: paired bootstrap (the same "
          "resampled images score both models), so an interval that excludes 0 is a clear per-class gain or "
          "loss. Confusions are ranked by count, as in `confusions.csv`; the bars give the share of the true "
          "class and the numbers the images. Face grids show the most confident mistakes, classes in turn, with "
          "the true label and the wrong predictions above each face.")
CALIBRATION_FIGURES = Section(
    "calibration", "Figures: calibration ({headline})", figures_on_one_line=True,
    intro="Accuracy against mean top-label confidence in {ece_bins} equal-width bins (the ECE of `metrics.csv`); "
          "the lower panel shows the share of images in each bin.")
SALIENCY_FIGURES = Section(
    "saliency", "Figures: what the models look at ({headline})",
    intro=f"*Occlusion* (all models, through `predict_proba`): a gray {saliency_maps.OCCLUSION_PATCH}x"
          f"{saliency_maps.OCCLUSION_PATCH} patch slides over the face in steps of {saliency_maps.OCCLUSION_STRIDE} "
          "pixels; each pixel shows the mean drop of the true-class probability over the patches covering it. "
          "Red: hiding the area lowers the probability (the model relies on it); blue: hiding it raises it. One "
          "colour scale per row, so faces compare within a model. *Gradient* and *SmoothGrad* "
          f"({saliency_maps.SMOOTHGRAD_SAMPLES} noisy copies, noise {saliency_maps.SMOOTHGRAD_NOISE:.0%} of the pixel "
          "range): magnitude of the derivative of a network model's logit for the class w.r.t. each pixel, each "
          "map scaled to its own 99th percentile. *Grad-CAM*: the network's last convolution block weighted by the "
          "logit's mean gradient, rectified and scaled to 0..1. Each caption names the model and seed the maps "
          "come from; a model without maps is left out.")
AUDIT = Section("audit", "Data audit")
FILES = Section("files", "Files")

#: every section of the report, in the order summary.md and index.html show them
SECTIONS: tuple[Section, ...] = (
    HEADLINE, FINDINGS, ALL_METRICS, PROVENANCE, PER_CLASS, SIGNIFICANCE, CONFUSIONS, ROBUSTNESS, SELECTION,
    TIMING, ROC_FIGURES, CONFUSION_FIGURES, GAIN_FIGURES, CALIBRATION_FIGURES, SALIENCY_FIGURES,
    AUDIT, FILES,
)
#: the section holding the one line that names the figures left out for want of the images
IMAGES_NOTE = SALIENCY_FIGURES

__all__ = ["SECTIONS", "Section"]
