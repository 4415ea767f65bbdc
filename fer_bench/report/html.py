"""index.html: the report as one self-contained web page, next to summary.md.

The page holds the same sections as summary.md, in the same order (fer_bench.report.sections), each converted
from its markdown by markdown-it-py (CommonMark with pipe tables; raw HTML in the markdown is escaped, not passed
through). Around them the Jinja2 template `templates/index.html.j2` (autoescaping on) puts a table of contents
linking every section's anchor, the provenance of the cells (data fingerprint, commits, machines), links to the
report's CSVs and other files, inline CSS and a small inline script that sorts a table when its header is
clicked (numbers numerically). Figures are linked relative to the results folder (`figures/<name>.png`), so the
page works opened from disk or served as a static folder, and it loads nothing from the network (its
Content-Security-Policy forbids it).

The output depends only on its inputs: no timestamps but the cells' own, so regenerating the report gives a
byte-identical page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import SimpleNamespace

import jinja2
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup

from fer_bench import __version__
from fer_bench.report import markdown
from fer_bench.report.inputs import ReportInputs, cell_provenance
from fer_bench.report.sections import RenderedSection
from fer_bench.report.tables import Tables

#: files of a results folder the page links to, in this order, when the report writes them or they exist
LINKED_FILES: tuple[tuple[str, str], ...] = (
    ("metrics.csv", "one row per task × model × seed × split × subset"),
    ("per_class.csv", "per-class precision, recall, F1, support, AUC"),
    ("confusions.csv", "top confusions per cell and split"),
    ("significance.csv", "exact McNemar tests against the reference model, Holm-corrected"),
    ("class_gains.csv", "the reference model's per-class recall gains, paired intervals"),
    ("floors.csv", "majority-class and chance accuracy"),
    ("timing.csv", "fit and inference speed, latency, size, memory"),
    ("summary.md", "this report as markdown"),
    ("summary.tex", "the headline table as LaTeX"),
    ("audit.md", "data audit (fer-bench data audit)"),
    ("audit.csv", "duplicate groups of the data audit"),
)

TEMPLATE = "index.html.j2"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("fer_bench.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def markdown_renderer() -> MarkdownIt:
    """CommonMark with pipe tables; raw HTML escaped. Tables get class "sortable" inside a scrolling wrapper, and
    each image links to its full-size file."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def table_open(self, tokens, idx, options, env):
        tokens[idx].attrSet("class", "sortable")
        return '<div class="table-wrap">\n' + self.renderToken(tokens, idx, options, env)

    def table_close(self, tokens, idx, options, env):
        return self.renderToken(tokens, idx, options, env) + "</div>\n"

    def image(self, tokens, idx, options, env):
        src = tokens[idx].attrGet("src") or ""
        return (f'<a class="figure-link" href="{escapeHtml(src)}">'
                + self.image(tokens, idx, options, env) + "</a>")

    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    md.add_render_rule("image", image)
    return md


def anchors(titles: Iterable[str]) -> list[str]:
    """A unique, stable id per title: lower-case words joined by '-' ("Figures: ROC curves" -> figures-roc-curves)."""
    used: set[str] = set()
    result = []
    for title in titles:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        anchor, k = base, 2
        while anchor in used:
            anchor, k = f"{base}-{k}", k + 1
        used.add(anchor)
        result.append(anchor)
    return result


def provenance(inputs: ReportInputs) -> dict:
    """What the page header says about where the numbers come from (the manifests of the cells)."""
    facts = cell_provenance(inputs.cells)
    return {
        "dataset": facts["dataset"]["name"],
        "fingerprint": facts["dataset"]["fingerprint"],
        "commits": [{"commit": commit, "dirty": dirty} for commit, dirty in facts["commits"]],
        "machines": facts["machines"],
        "finished": facts["finished"],
        "quick": facts["quick"],
        "version": __version__,
    }


def grid(inputs: ReportInputs, tables: Tables, files: list[str]) -> dict:
    """The grid in one line: tasks, models and seeds in report order, the images scored per task on the headline
    split, and the number of figures."""
    split = inputs.settings.headline_split
    images = {}
    for row in tables.metric_rows:
        if row["split"] == split and row["subset"] == "all":
            images.setdefault(row["task"], row["n"])
    return {"cells": len(inputs.cells),
            "tasks": list(dict.fromkeys(c.task for c in inputs.cells)),
            "models": list(dict.fromkeys(c.model for c in inputs.cells)),
            "seeds": sorted({c.seed for c in inputs.cells}),
            "split": split, "images": images,
            "figures": sum(name.startswith("figures/") and name.endswith(".png") for name in files)}


def linked_files(inputs: ReportInputs, files: Iterable[str]) -> list[dict]:
    """The LINKED_FILES that this report writes (`files`: its relative paths) or that the folder already holds
    (the audit's)."""
    written = set(files)
    return [{"name": name, "description": description} for name, description in LINKED_FILES
            if name in written or (inputs.out / name).is_file()]


def index_html(inputs: ReportInputs, tables: Tables, sections: list[RenderedSection], files: Iterable[str]) -> str:
    """The text of index.html: `sections` as summary.md holds them (rendered to HTML in the same order), the
    provenance of `inputs`' cells, and links to the report's `files` (relative paths under the results folder)."""
    md = markdown_renderer()
    titles = [s.title for s in sections]
    rendered = [{"title": s.title, "anchor": anchor, "html": Markup(md.render(s.markdown))}
                for s, anchor in zip(sections, anchors(titles), strict=True)]
    files = list(files)
    title_html = Markup(md.render(markdown.title_markdown(SimpleNamespace(inputs=inputs))))
    info = provenance(inputs)
    return _environment().get_template(TEMPLATE).render(
        page_title=f"fer-bench results: {info['dataset']}", title_html=title_html, sections=rendered,
        provenance=info, grid=grid(inputs, tables, files), files=linked_files(inputs, files))


__all__ = ["LINKED_FILES", "anchors", "index_html", "markdown_renderer"]
