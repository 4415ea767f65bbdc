"""index.html: the report as one self-contained web page, next to summary.md.

The page holds the same sections as summary.md, in the same order (fer_bench.report.sections), each converted
from its markdown by markdown-it-py (CommonMark with pipe tables; raw HTML in the markdown is escaped, not passed
through). Around them the Jinja2 template `templates/index.html.j2` (autoescaping on) puts a table of contents
linking every section's anchor, the provenance of the cells (data fingerprint, commits, machines), links to the
report's CSVs and other files (in a closed box under the title, so the headline opens the page), inline CSS and a
small inline script that sorts a table when its header is clicked (numbers numerically). Each figure is a closed
`<details>` named by its task and title, a section's figures grouped by task, so the page opens short. Figures are
linked relative to the results folder (`figures/<name>.png`), so the page works opened from disk or served as a
static folder, and it loads nothing from the network (its Content-Security-Policy forbids it).

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
    ("robustness.csv", "accuracy and macro-F1 under each corruption and severity"),
    ("robustness_per_class.csv", "each class's recall and share of the predictions under each corruption"),
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


def figure_task(alt: str, tasks: Iterable[str]) -> str | None:
    """The task a figure belongs to: its alt text's first word when that names a task ("7class ROC" -> 7class)."""
    words = alt.split()
    return words[0] if words and words[0] in set(tasks) else None


def _figure_item(tokens, start: int) -> tuple[int, str] | None:
    """(index of list_item_close, alt text) when the list item opening at `start` is a figure (its paragraph
    starts with an image), else None."""
    close = next(i for i in range(start + 1, len(tokens))
                 if tokens[i].type == "list_item_close" and tokens[i].level == tokens[start].level)
    inline = tokens[start + 2] if start + 2 < close else None
    if inline is None or inline.type != "inline" or not inline.children or inline.children[0].type != "image":
        return None
    return close, inline.children[0].content


def split_figure_lines(tokens: list) -> list:
    """Each list item holding several figures (summary.md puts one task's figures on one line, separated by
    FIGURE_SEPARATOR) as one list item per figure: its image and the caption after it, as if written a line
    each."""
    result, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        figure = _figure_item(tokens, i) if token.type == "list_item_open" else None
        inline = tokens[i + 2] if figure is not None else None
        if inline is None or sum(child.type == "image" for child in inline.children) < 2:
            result.append(token)
            i += 1
            continue
        close = figure[0]
        chunks = []
        for child in inline.children:
            if child.type == "image":
                chunks.append([])
            chunks[-1].append(child)
        for chunk in chunks:
            while chunk and chunk[-1].type == "text" and not chunk[-1].content.strip(" ·"):
                chunk.pop()  # the separator before the next figure
            for template in tokens[i:close + 1]:
                copy = template.copy()
                if template is inline:
                    copy.children = chunk
                    copy.content = ""
                result.append(copy)
        i = close + 1
    return result


def group_figures(tokens: list, tasks: Iterable[str]) -> list:
    """Reorder each list of figures so that one task's figures sit together (tasks in `tasks` order, figures of
    no task last, the order within a group kept)."""
    order = {task: k for k, task in enumerate(tasks)}
    result, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token.type != "bullet_list_open":
            result.append(token)
            i += 1
            continue
        end = next(j for j in range(i + 1, len(tokens))
                   if tokens[j].type == "bullet_list_close" and tokens[j].level == token.level)
        items, j, all_figures = [], i + 1, True
        while j < end:
            figure = _figure_item(tokens, j)
            if figure is None:
                all_figures = False
                break
            close, alt = figure
            items.append((order.get(figure_task(alt, order), len(order)), tokens[j:close + 1]))
            j = close + 1
        if not all_figures or not items:
            result.append(token)
            i += 1
            continue
        result.append(token)
        for _, item in sorted(items, key=lambda entry: entry[0]):
            result.extend(item)
        result.append(tokens[end])
        i = end + 1
    return result


def markdown_renderer() -> MarkdownIt:
    """CommonMark with pipe tables; raw HTML escaped. Tables get class "sortable" inside a scrolling wrapper, each
    image links to its full-size file, and a list item that is a figure becomes a closed `<details>` whose summary
    names the figure's task (from `env["tasks"]`, when its alt text starts with one) and the figure."""
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

    def list_item_open(self, tokens, idx, options, env):
        figure = _figure_item(tokens, idx)
        if figure is None:
            return self.renderToken(tokens, idx, options, env)
        alt = figure[1]
        task = figure_task(alt, env.get("tasks", ()))
        label = (f"<strong>{escapeHtml(task)}</strong>: {escapeHtml(alt[len(task):].strip(' ,:'))}" if task
                 else escapeHtml(alt))
        return f'<li class="figure"><details><summary>{label}</summary>\n'

    def list_item_close(self, tokens, idx, options, env):
        start = next(i for i in range(idx - 1, -1, -1)
                     if tokens[i].type == "list_item_open" and tokens[i].level == tokens[idx].level)
        if _figure_item(tokens, start) is None:
            return self.renderToken(tokens, idx, options, env)
        return "</details></li>\n"

    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    md.add_render_rule("image", image)
    md.add_render_rule("list_item_open", list_item_open)
    md.add_render_rule("list_item_close", list_item_close)
    return md


def render_markdown(md: MarkdownIt, text: str, tasks: list[str]) -> str:
    """`text` as HTML, each list of figures grouped by task (`tasks`: the report's, in report order)."""
    env = {"tasks": tasks}
    tokens = group_figures(split_figure_lines(md.parse(text, env)), tasks)
    return md.renderer.render(tokens, md.options, env)


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
    files = list(files)
    grid_facts = grid(inputs, tables, files)
    rendered = [{"title": s.title, "anchor": anchor,
                 "html": Markup(render_markdown(md, s.markdown, grid_facts["tasks"]))}
                for s, anchor in zip(sections, anchors(titles), strict=True)]
    title_html = Markup(md.render(markdown.title_markdown(SimpleNamespace(inputs=inputs))))
    info = provenance(inputs)
    return _environment().get_template(TEMPLATE).render(
        page_title=f"fer-bench results: {info['dataset']}", title_html=title_html, sections=rendered,
        provenance=info, grid=grid_facts, files=linked_files(inputs, files))


__all__ = ["LINKED_FILES", "anchors", "figure_task", "group_figures", "index_html", "markdown_renderer",
           "render_markdown"]
