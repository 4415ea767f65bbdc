"""The sections of summary.md, in order: this list is the one place that says what the summary holds and in which
order. A section is a title and a function of the `SectionContext` returning its markdown (None: left out).
Adding a section is one function and one `Section(...)` line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from fer_bench.figures import FigureOutput, section_markdown
from fer_bench.report import markdown
from fer_bench.report.audit import audit_markdown
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.tables import Tables
from fer_bench.report.timing import timing_section


@dataclass
class SectionContext:
    """What every section is made from: the inputs, the computed tables and the drawn figures."""

    inputs: ReportInputs
    tables: Tables
    figures: FigureOutput


@dataclass(frozen=True)
class Section:
    title: Callable[[ReportInputs], str]
    build: Callable[[SectionContext], str | None]


@dataclass(frozen=True)
class RenderedSection:
    """A section as summary.md holds it."""

    title: str
    markdown: str


def _figures(section: str, ctx: SectionContext) -> str | None:
    return section_markdown(ctx.figures, section)


def _title(template: str) -> Callable[[ReportInputs], str]:
    """A title naming the settings' splits, {headline} and {selection}, and the {reference} model ("CNN" when
    every task compares against it)."""
    return lambda inputs: template.format(headline=inputs.settings.headline_split,
                                          selection=inputs.settings.selection_split,
                                          reference="CNN" if inputs.reference_is_default else "reference model")


SECTIONS: tuple[Section, ...] = (
    Section(_title("Headline: {headline} ({selection} only used for model selection)"), markdown.headline_markdown),
    Section(_title("Findings"), markdown.findings_markdown),
    Section(_title("Provenance"), markdown.provenance_markdown),
    Section(_title("Per-class recall and F1 ({headline})"), markdown.per_class_markdown),
    Section(_title("Is the {reference}'s difference significant? ({headline})"), markdown.significance_markdown),
    Section(_title("Per-class recall gains of the {reference} over seeds ({headline})"),
            markdown.class_gains_markdown),
    Section(_title("Top confusions ({headline})"), markdown.confusions_markdown),
    Section(_title("What each model chose on {selection}"), markdown.selection_markdown),
    Section(_title("Timing: speed, size and efficiency"), timing_section),
    Section(_title("Figures: CNN training curves ({selection}: model selection only)"), partial(_figures, "training")),
    Section(_title("Figures: ROC curves ({headline})"), partial(_figures, "roc")),
    Section(_title("Figures: confusion matrices ({headline})"), partial(_figures, "confusion")),
    Section(_title("Figures: where the {reference} gains ({headline})"), partial(_figures, "gain")),
    Section(_title("Figures: calibration ({headline})"), partial(_figures, "calibration")),
    Section(_title("Figures: what the models look at ({headline})"), partial(_figures, "saliency")),
    Section(_title("Data audit"), audit_markdown),
    Section(_title("Files"), lambda ctx: markdown.FILES_MARKDOWN),
)


def summary_markdown(ctx: SectionContext,
                     sections: tuple[Section, ...] = SECTIONS) -> tuple[str, list[RenderedSection]]:
    """summary.md's text and the sections it holds."""
    body = [markdown.title_markdown(ctx)]
    rendered = []
    for section in sections:
        text = section.build(ctx)
        if text is None:
            continue
        title = section.title(ctx.inputs)
        rendered.append(RenderedSection(title, text))
        body += [f"## {title}", "", text.rstrip(), ""]
    return "\n".join(body), rendered
