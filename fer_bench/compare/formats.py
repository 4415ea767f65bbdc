"""Writing a `Comparison` (fer_bench.compare.folders) for the terminal, markdown, HTML, CSV and JSON, as the
command line's `View` asks: `render`."""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fer_bench import __version__
from fer_bench.compare.folders import (
    SIGNIFICANCE_LEVEL,
    TABLE_METRICS,
    TIMINGS,
    Comparison,
    ModelComparison,
    Side,
    different_data_message,
)
from fer_bench.errors import FerBenchError
from fer_bench.metrics import Metric, brief_metrics, get_metric

# --- what is shown -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """The command line's choices: only the significant pairs, timings across machines, the gate's points."""

    only_changed: bool = False
    timings: bool = False
    fail_if_worse: float | None = None

    def shown(self, c: Comparison) -> list[ModelComparison]:
        return c.significant if self.only_changed else c.models

    def shows_timings(self, c: Comparison) -> bool:
        return c.same_machine or self.timings

    def failing(self, c: Comparison) -> list[ModelComparison]:
        return [] if self.fail_if_worse is None else c.worse_by_more_than(self.fail_if_worse)


def p_text(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "< 1e-6" if p < 1e-6 else f"{p:.2g}"


def points_text(points: float) -> str:
    """Signed, in points; an exact zero is written 0 so that 'no difference' and 'rounds to +0.0' read apart."""
    return "0" if points == 0 else f"{points:+.1f}"


def _limit_text(n: float) -> str:
    return f"{n:g} point" + ("" if n == 1 else "s")


def _difference_text(m: ModelComparison) -> str:
    return f"{points_text(m.accuracy_points)} points"


def _table_metrics() -> list[Metric]:
    brief = {metric.name for metric in brief_metrics()}
    return [get_metric(name) for name in TABLE_METRICS if name in brief]


def accuracy_columns() -> list[str]:
    columns = ["model", "seeds A/B", "images", "accuracy A", "accuracy B", "B − A", "p", "flag"]
    for metric in _table_metrics()[1:]:
        columns += [f"{metric.label} A", f"{metric.label} B", "B − A"]
    return columns


def accuracy_rows(c: Comparison, view: View) -> dict[str, list[list[str]]]:
    """Per task, the rows of its table (accuracy and the other TABLE_METRICS in %, differences in points)."""
    tables: dict[str, list[list[str]]] = {}
    metrics = _table_metrics()
    for m in view.shown(c):
        row = [m.model, f"{m.seeds_a}/{m.seeds_b}", str(m.test.n_images)]
        for k, metric in enumerate(metrics):
            row += [metric.format(m.metrics_a[metric.name]), metric.format(m.metrics_b[metric.name]),
                    points_text(100 * m.difference(metric.name)) if metric.percent else
                    metric.format(m.difference(metric.name), signed=True)]
            if k == 0:
                row += [p_text(m.test.p_value), m.flag]
        tables.setdefault(m.task, []).append(row)
    return tables


def accuracy_title(c: Comparison, task: str) -> str:
    labels = " and ".join(metric.label for metric in _table_metrics())
    return f"{task}: {labels} on {c.split}, %; B − A in points"


def timing_columns() -> list[str]:
    columns = ["task / model"]
    for timing in TIMINGS:
        columns += [f"{timing.label} A", "B", "B / A"]
    return columns


def timing_rows(c: Comparison, view: View) -> list[list[str]]:
    rows = []
    for m in view.shown(c):
        row = [m.name]
        for timing in TIMINGS:
            a, b = m.timings_a[timing.name], m.timings_b[timing.name]
            ratio = "–" if a is None or b is None or a == 0 else f"{b / a:.2f}"
            row += [timing.format(a), timing.format(b), ratio]
        rows.append(row)
    return rows


def _machines(side: Side) -> str:
    return ", ".join(side.machines)


def timing_title(c: Comparison) -> str:
    if c.same_machine:
        return f"Timings (seed means, {c.split}), one machine: {c.a.machines[0]}"
    return f"Timings (seed means, {c.split}) from different machines: A on {_machines(c.a)}; B on {_machines(c.b)}"


def timing_omitted(c: Comparison) -> str:
    return (f"Timings not compared: A ran on {_machines(c.a)}, B on {_machines(c.b)} "
            "(--timings shows them anyway)")


def side_lines(side: Side) -> list[str]:
    commits = ", ".join(commit + (" (dirty)" if dirty else "") for commit, dirty in side.commits)
    first, last = side.finished
    return [f"{side.name}: {side.path}",
            f"  data: {side.dataset}, fingerprint {side.fingerprint}",
            f"  commits: {commits}",
            f"  machines: {_machines(side)}",
            f"  cells finished: {first}" + ("" if last == first else f" … {last}")]


def header_lines(c: Comparison) -> list[str]:
    lines = [*side_lines(c.a), *side_lines(c.b)]
    if not c.same_data:
        lines.append(f"WARNING: different data: {different_data_message(c)}; differences may come from the data, "
                     f"not the models (--allow-different-data)")
    lines.append(f"Split {c.split}; metrics recomputed from the stored predictions, mean over each folder's seeds.")
    lines.append(f"p: exact McNemar test on the images both folders predicted (an image counts as right when more "
                 f"than half of a folder's seeds got it right); flag: B better or worse than A in accuracy, "
                 f"p < {SIGNIFICANCE_LEVEL:g}.")
    return lines


def summary_line(c: Comparison, view: View) -> str:
    """The last line: how many (task, model) differ significantly in accuracy and, with --fail-if-worse, what
    fails it."""
    if not c.models:
        line = "no (task, model) is present in both folders"
    elif c.significant:
        line = (f"{len(c.significant)} of {len(c.models)} (task, model) differ significantly in accuracy "
                f"(p < {SIGNIFICANCE_LEVEL:g}): "
                + ", ".join(f"{m.name} ({m.flag}, {_difference_text(m)})" for m in c.significant))
    else:
        line = (f"0 of {len(c.models)} (task, model) differ significantly in accuracy "
                f"(p < {SIGNIFICANCE_LEVEL:g})")
    if view.fail_if_worse is not None:
        failing = view.failing(c)
        limit = _limit_text(view.fail_if_worse)
        if failing:
            line += (f"; FAIL (--fail-if-worse {view.fail_if_worse:g}): lost more than {limit}: "
                     + ", ".join(f"{m.name} ({_difference_text(m)})" for m in failing))
        else:
            line += f"; pass (--fail-if-worse {view.fail_if_worse:g}): none lost more than {limit}"
    return line


def footer_lines(c: Comparison, view: View) -> list[str]:
    lines = []
    if c.only_a:
        lines.append("only in A: " + ", ".join(f"{t} / {m}" for t, m in c.only_a))
    if c.only_b:
        lines.append("only in B: " + ", ".join(f"{t} / {m}" for t, m in c.only_b))
    return [*lines, summary_line(c, view)]


# --- writing -----------------------------------------------------------------------------------------------------

def _aligned(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                             for i, cell in enumerate(r)).rstrip() for r in rows]


def comparison_text(c: Comparison, view: View) -> str:
    """Plain text for the terminal: the header, one table per task, the timings, the summary line last."""
    out = ["fer-bench compare", *header_lines(c), ""]
    for task, rows in accuracy_rows(c, view).items():
        out += [accuracy_title(c, task), *_aligned([accuracy_columns(), *rows]), ""]
    if c.models and view.shown(c):
        if view.shows_timings(c):
            out += [timing_title(c), *_aligned([timing_columns(), *timing_rows(c, view)]), ""]
        else:
            out += [timing_omitted(c), ""]
    out += footer_lines(c, view)
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(_md_escape(x) for x in columns) + " |", "|---|" + "---:|" * (len(columns) - 1),
            *("| " + " | ".join(_md_escape(x) for x in r) + " |" for r in rows)]


def comparison_markdown(c: Comparison, view: View) -> str:
    out = ["# fer-bench compare", ""]
    out += [("  - " if line.startswith("  ") else "- ") + _md_escape(line.strip()) for line in header_lines(c)]
    out += [f"- Written by fer-bench {__version__}.", ""]
    for task, rows in accuracy_rows(c, view).items():
        out += [f"## {_md_escape(accuracy_title(c, task))}", "", *_md_table(accuracy_columns(), rows), ""]
    if c.models and view.shown(c):
        if view.shows_timings(c):
            out += [f"## {_md_escape(timing_title(c))}", "", *_md_table(timing_columns(), timing_rows(c, view)), ""]
        else:
            out += [_md_escape(timing_omitted(c)), ""]
    out += ["## Summary", ""] + [_md_escape(line) + "  " for line in footer_lines(c, view)]
    out[-1] = out[-1].rstrip()
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f2f2f2}
.worse{color:#b00020;font-weight:bold}.better{color:#1b6e20;font-weight:bold}
.warning{background:#fff3cd;padding:.5em;border:1px solid #e0c060}p.note{color:#555;font-size:.9em}"""


def _html_table(columns: list[str], rows: list[list[str]], flag_column: int | None = None) -> list[str]:
    e = html.escape
    out = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in columns) + "</tr>"]
    for r in rows:
        cells = [f"<td>{e(r[0])}</td>"]
        for i, x in enumerate(r[1:], start=1):
            css = f"num {x}" if i == flag_column and x else "num"
            cells.append(f'<td class="{css}">{e(x)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return [*out, "</table>"]


def comparison_html(c: Comparison, view: View) -> str:
    """A small self-contained page (inline CSS, no scripts, no external assets); every text is escaped."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>fer-bench compare: {e(str(c.a.path))} vs {e(str(c.b.path))}</title>", f"<style>{_CSS}</style>",
           "</head>", "<body>", "<h1>fer-bench compare</h1>", "<ul>"]
    for line in header_lines(c):
        css = ' class="warning"' if line.startswith("WARNING") else ""
        out.append(f"<li{css}>{e(line.strip())}</li>")
    out.append(f"<li>Written by fer-bench {e(__version__)}.</li>")
    out.append("</ul>")
    flag_column = accuracy_columns().index("flag")
    for task, rows in accuracy_rows(c, view).items():
        out += [f"<h2>{e(accuracy_title(c, task))}</h2>", *_html_table(accuracy_columns(), rows, flag_column)]
    if c.models and view.shown(c):
        if view.shows_timings(c):
            out += [f"<h2>{e(timing_title(c))}</h2>", *_html_table(timing_columns(), timing_rows(c, view))]
        else:
            out.append(f'<p class="note">{e(timing_omitted(c))}</p>')
    out.append("<h2>Summary</h2>")
    out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in footer_lines(c, view)) + "</ul>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def comparison_records(c: Comparison, view: View) -> list[dict]:
    """One record per (task, model) shown: the CSV's rows and the JSON's records. Metrics are fractions (as in
    metrics.csv), differences of percent metrics in points; None for an undefined value."""
    records = []
    for m in view.shown(c):
        record = {"task": m.task, "model": m.model, "seeds_a": m.seeds_a, "seeds_b": m.seeds_b,
                  "n_images": m.test.n_images, "accuracy_a": _number(m.metrics_a["accuracy"]),
                  "accuracy_b": _number(m.metrics_b["accuracy"]), "difference_points": _number(m.accuracy_points),
                  "p_value": _number(m.test.p_value), "flag": m.flag,
                  "a_right_b_wrong": m.test.a_right_b_wrong, "a_wrong_b_right": m.test.a_wrong_b_right}
        for metric in brief_metrics():
            if metric.name != "accuracy":
                difference = m.difference(metric.name)
                record.update({f"{metric.name}_a": _number(m.metrics_a[metric.name]),
                               f"{metric.name}_b": _number(m.metrics_b[metric.name]),
                               f"{metric.name}_difference": _number(100 * difference if metric.percent
                                                                    else difference)})
        for timing in TIMINGS:
            record.update({f"{timing.name}_a": m.timings_a[timing.name],
                           f"{timing.name}_b": m.timings_b[timing.name]})
        records.append(record)
    return records


def record_columns() -> list[str]:
    """The CSV's header (the keys of comparison_records, also when there is no record)."""
    columns = ["task", "model", "seeds_a", "seeds_b", "n_images", "accuracy_a", "accuracy_b",
               "difference_points", "p_value", "flag", "a_right_b_wrong", "a_wrong_b_right"]
    for metric in brief_metrics():
        if metric.name != "accuracy":
            columns += [f"{metric.name}_a", f"{metric.name}_b", f"{metric.name}_difference"]
    return columns + [f"{timing.name}_{side}" for timing in TIMINGS for side in ("a", "b")]


def comparison_csv(c: Comparison, view: View) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=record_columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(comparison_records(c, view))
    return buf.getvalue()


def _side_json(side: Side) -> dict:
    return {"path": str(side.path), "dataset": side.dataset, "fingerprint": side.fingerprint,
            "commits": [{"commit": commit, "dirty": dirty} for commit, dirty in side.commits],
            "machines": side.machines, "finished": list(side.finished)}


def comparison_json(c: Comparison, view: View) -> str:
    document = {
        "fer_bench": __version__, "split": c.split, "a": _side_json(c.a), "b": _side_json(c.b),
        "same_data": c.same_data, "same_machine": c.same_machine,
        "test": "exact McNemar on the images both folders predicted, each folder's seed majority",
        "significance_level": SIGNIFICANCE_LEVEL,
        "records": comparison_records(c, view),
        "only_a": [{"task": t, "model": m} for t, m in c.only_a],
        "only_b": [{"task": t, "model": m} for t, m in c.only_b],
        "summary": {"compared": len(c.models), "significant": [m.name for m in c.significant],
                    "fail_if_worse": view.fail_if_worse, "failing": [m.name for m in view.failing(c)],
                    "line": summary_line(c, view)},
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


#: --format -> writer
WRITERS: dict[str, Callable[[Comparison, View], str]] = {
    "text": comparison_text, "md": comparison_markdown, "html": comparison_html, "csv": comparison_csv,
    "json": comparison_json}
#: --out file suffix -> --format, when --format is not given
SUFFIX_FORMATS = {".txt": "text", ".md": "md", ".html": "html", ".htm": "html", ".csv": "csv", ".json": "json"}


def format_for(path) -> str:
    """The format of an --out file, from its suffix; FerBenchError for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise FerBenchError(f"compare: --out {path}: give --format, or end the name in "
                            f"{', '.join(SUFFIX_FORMATS)}")
    return SUFFIX_FORMATS[suffix]


def render(c: Comparison, fmt: str, view: View | None = None) -> str:
    return WRITERS[fmt](c, view or View())
