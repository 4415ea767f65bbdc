"""summary.md, section by section: what each section of the report's outline is built from.

The sections and their order are `fer_bench.outline.SECTIONS`; here each table section maps to the function of
the `SectionContext` returning its markdown (None: left out), and a section with no function here is a figure
section: its intro and the figures whose FigureSpec names it. Adding a table section is one `Section` in the
outline and one function entered in SECTION_MARKDOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from fer_bench import outline
from fer_bench.figures import FigureOutput, section_markdown
from fer_bench.outline import Section
from fer_bench.report import comparisons, findings, markdown
from fer_bench.report.audit import audit_markdown
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.robustness_section import robustness_markdown
from fer_bench.report.tables import Tables
from fer_bench.report.timing import timing_section


@dataclass
class SectionContext:
    """What every section is made from: the inputs, the computed tables and the drawn figures."""

    inputs: ReportInputs
    tables: Tables
    figures: FigureOutput


@dataclass(frozen=True)
class RenderedSection:
    """A section as summary.md holds it."""

    title: str
    markdown: str


def _figures(section: Section, ctx: SectionContext) -> str | None:
    intro = section.intro_text(reference=reference_name(ctx.inputs), ece_bins=ctx.inputs.settings.ece_bins)
    return section_markdown(ctx.figures, section, intro)


def _selection(ctx: SectionContext) -> str | None:
    """What each model chose on PublicTest, then the training curves its epochs were chosen from."""
    table, figures = markdown.selection_markdown(ctx), section_markdown(ctx.figures, outline.SELECTION, intro="")
    return "\n\n".join(part for part in (table, figures) if part) or None


def _files(ctx: SectionContext) -> str:
    return markdown.FILES_MARKDOWN


#: the markdown of each table section; every other section of the outline shows its figures
SECTION_MARKDOWN: Mapping[Section, Callable[[SectionContext], str | None]] = MappingProxyType({
    outline.HEADLINE: markdown.headline_markdown,
    outline.FINDINGS: findings.findings_markdown,
    outline.ALL_METRICS: markdown.all_metrics_markdown,
    outline.PROVENANCE: markdown.provenance_markdown,
    outline.PER_CLASS: comparisons.per_class_markdown,
    outline.SIGNIFICANCE: comparisons.significance_markdown,
    outline.CONFUSIONS: comparisons.confusions_markdown,
    outline.SELECTION: _selection,  # the table, then the training curves
    outline.ROBUSTNESS: robustness_markdown,  # the tables, then the accuracy-against-severity figures
    outline.TIMING: timing_section,  # the table, then the timing figure
    outline.AUDIT: audit_markdown,
    outline.FILES: _files,
})


def section_builder(section: Section) -> Callable[[SectionContext], str | None]:
    """What `section`'s markdown is made from: its table function, else its figures."""
    return SECTION_MARKDOWN.get(section, partial(_figures, section))


def reference_name(inputs: ReportInputs) -> str:
    """How headings and intros name the reference: "CNN" when every task compares against it, else "reference
    model"."""
    return "CNN" if inputs.reference_is_default else "reference model"


def section_title(section: Section, inputs: ReportInputs) -> str:
    """The section's heading with the settings' splits and the reference model (reference_name)."""
    return section.heading(headline=inputs.settings.headline_split, selection=inputs.settings.selection_split,
                           reference=reference_name(inputs))


def summary_markdown(ctx: SectionContext,
                     sections: tuple[Section, ...] = outline.SECTIONS) -> tuple[str, list[RenderedSection]]:
    """summary.md's text and the sections it holds."""
    body = [markdown.title_markdown(ctx)]
    rendered = []
    for section in sections:
        text = section_builder(section)(ctx)
        if text is None:
            continue
        title = section_title(section, ctx.inputs)
        rendered.append(RenderedSection(title, text))
        body += [f"## {title}", "", text.rstrip(), ""]
    return "\n".join(body), rendered
