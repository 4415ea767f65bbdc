"""`fer-bench report`: every metric, table and figure, recomputed from the stored predictions alone.

The report is built in memory, then written once: `build_report` reads the cells (inputs.py), computes the
tables (tables.py, timing.py), draws the figures (fer_bench.figures) and assembles summary.md from the sections
listed in sections.py and summary.tex (latex.py); `write_report` swaps the whole set in at once: staged in
`<out>/.report.staging/`, then renamed into place (fer_bench.staging), so a report killed at any moment leaves
the old files or the new ones, and what an interrupted report or cell left is cleared first. Output is
deterministic (sorted cells, seeded bootstrap, fixed number formatting), so running it twice gives byte-identical
files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.figures import FigureContext, render_figures, task_results
from fer_bench.plugins import load_recorded_plugins
from fer_bench.report.audit import leaked_ids, read_audit_rows
from fer_bench.report.html import index_html
from fer_bench.report.inputs import ReportInputs, choose_references, load_cells
from fer_bench.report.latex import latex_escape, latex_headline
from fer_bench.report.markdown import headline_table
from fer_bench.report.robustness import PER_CLASS_HEADER as ROBUSTNESS_CLASS_HEADER
from fer_bench.report.robustness import ROBUSTNESS_HEADER, robustness_tables
from fer_bench.report.sections import RenderedSection, SectionContext, summary_markdown
from fer_bench.report.seeds import identical_seed_models
from fer_bench.report.tables import Tables, compute_tables, csv_text
from fer_bench.report.timing import timing_csv, timing_rows
from fer_bench.settings import Settings
from fer_bench.staging import REPORT_OWNED, folder_lock, swap_in
from fer_bench.storage import check_results_folder, default_results_folder, unrecorded_note


@dataclass
class Report:
    """A report in memory: every file it writes (relative path -> text or PNG bytes), the sections of summary.md
    and the tables they were made from."""

    inputs: ReportInputs
    tables: Tables
    files: dict[str, str | bytes] = field(default_factory=dict)
    sections: list[RenderedSection] = field(default_factory=list)
    #: figures of an earlier report it left in place (not drawn, still linked): not removed as stale
    kept_figures: set[str] = field(default_factory=set)

    @property
    def out(self) -> Path:
        return self.inputs.out

    @property
    def metric_rows(self) -> list[dict]:
        return self.tables.metric_rows


def read_inputs(out, *, dataset: Dataset | None = None, settings: Settings | None = None) -> ReportInputs:
    """What a report of the results folder `out` is made from: its cells in report order, audit rows, references.
    `dataset`: the data set the cells were computed on, when the caller holds it (the image figures otherwise
    re-load it)."""
    out = Path(out)
    check_results_folder(out)
    load_recorded_plugins(out)  # a plugin model's cells (order, saved model) need its registration
    cells = load_cells(out)
    audit_rows = read_audit_rows(out)
    settings = settings or Settings()
    return ReportInputs(out=out, cells=cells, settings=settings, dataset=dataset, audit_rows=audit_rows,
                        leaked_ids=leaked_ids(audit_rows, cells, out), references=choose_references(cells, settings),
                        identical_seeds=identical_seed_models(cells))


def report_tables(inputs: ReportInputs) -> Tables:
    """Every table of the report (timing included) and its CSV text."""
    tables = compute_tables(inputs)
    tables.timing_rows = timing_rows(inputs, tables.metric_rows)
    if tables.timing_rows:
        tables.files["timing.csv"] = timing_csv(tables.timing_rows)
    tables.robustness_rows, tables.robustness_class_rows = robustness_tables(inputs)
    if tables.robustness_rows:
        tables.files["robustness.csv"] = csv_text(ROBUSTNESS_HEADER, tables.robustness_rows)
        tables.files["robustness_per_class.csv"] = csv_text(ROBUSTNESS_CLASS_HEADER, tables.robustness_class_rows)
    return tables


def build_report(out, *, dataset: Dataset | None = None, settings: Settings | None = None) -> Report:
    """Everything `fer-bench report` writes for the results folder `out`, in memory. `dataset`: the data set the
    cells were computed on, when the caller holds it (the image figures otherwise re-load it)."""
    inputs = read_inputs(out, dataset=dataset, settings=settings)
    tables = report_tables(inputs)
    figures = render_figures(FigureContext(task_results(inputs.cells, inputs.settings, inputs.references),
                                           inputs.settings, inputs.out, dataset=dataset,
                                           timing_rows=tables.timing_rows, robustness_rows=tables.robustness_rows))
    summary, sections = summary_markdown(SectionContext(inputs, tables, figures))
    report = Report(inputs, tables, files={**tables.files, **figures.files}, sections=sections,
                    kept_figures=set(figures.kept))
    report.files["summary.md"] = summary
    report.files["summary.tex"] = latex_headline(inputs, tables)
    report.files["index.html"] = index_html(inputs, tables, sections, list(report.files))
    return report


#: the headline columns `fer-bench run` prints at its end (the rest stays in summary.md: a terminal is narrow)
TERMINAL_COLUMNS = ("task", "model", "seeds", "accuracy", "macro-F1", "fit time")


def headline_text(report: Report) -> str:
    """The headline table as plain aligned text (its task, model, seeds, accuracy, macro-F1 and fit-time
    columns), for the end of `fer-bench run`."""
    columns, rows = headline_table(report.inputs, report.tables)
    keep = [k for k, column in enumerate(columns) if column.startswith(TERMINAL_COLUMNS)]
    table = [[columns[k] for k in keep], *[[row[k] for k in keep] for row in rows]]
    widths = [max(len(line[k]) for line in table) for k in range(len(keep))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in table]
    return "\n".join([f"{report.inputs.settings.headline_split} (full table and findings: summary.md)", *lines])


def write_report(out=None, *, dataset: Dataset | None = None, settings: Settings | None = None) -> Report:
    """Build the report of the results folder `out` and swap its files in as a set; returns the Report."""
    out = Path(out) if out else default_results_folder()
    check_results_folder(out)
    try:
        with folder_lock(out):  # clears an interrupted report's or cell's leftovers when no other run is on
            report = build_report(out, dataset=dataset, settings=settings)
            # figures it no longer draws (a model or task gone) go with the swap; those it kept stay
            swap_in(out, report.files, owned=REPORT_OWNED, keep=report.kept_figures)
    except OSError as exc:
        raise FerBenchError(f"cannot write the report under {out}: {exc.strerror or exc}") from None
    n_figures = sum(name.startswith("figures/") and name != "figures/timing.png" for name in report.files)
    print(f"report: {n_figures} figures written to {out / 'figures'}", file=sys.stderr)
    note = unrecorded_note(report.inputs.cells)
    if note:
        print(note, file=sys.stderr)
    print(f"report written to {out / 'summary.md'} (open {out / 'index.html'} in a browser)")
    return report


__all__ = ["Report", "ReportInputs", "build_report", "headline_text", "latex_escape", "read_inputs",
           "report_tables", "write_report"]
