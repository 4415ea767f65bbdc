"""`fer-bench compare A B`: two results folders side by side, per (task, model), on the headline split, as a gate.

Where the numbers come from: every metric is recomputed from the stored predictions of each folder
(`fer_bench.report.inputs.load_cells`, the registry's metric functions, the report's settings), never read from
a folder's CSVs: a CSV may be stale or hand-edited, the predictions are what the cells produced. Fit time and
inference images/s come from each cell's timings.json.

For each (task, model) present in both folders, on the headline split (`Settings.headline_split`, PrivateTest):

* the registry's brief metrics (accuracy, macro-F1, ROC AUC (macro), and any registered brief=True) of A and B,
  each the mean over the folder's seeds (A and B may have different seeds);
* an exact McNemar test (`fer_bench.metrics.mcnemar_exact`) on the images both folders predicted, matched by
  image id. Over seeds the test reads each folder's **seed majority**: an image counts as right for a folder
  when more than half of its seeds predicted it right (a tie is wrong), so every image is counted once however
  many seeds there are. The accuracy difference is **significant** when p < SIGNIFICANCE_LEVEL; its flag then
  says whether B is better or worse than A;
* the timings (fit time, inference images/s), also seed means: shown only when every cell of both folders ran
  on one machine (`fer_bench.provenance.machine_label` of the manifests) unless asked for. A timing difference
  is never counted as a difference: only accuracy gates.

`Comparison.worse_by_more_than(points)` lists what `--fail-if-worse POINTS` fails on: a (task, model) whose
accuracy in B is more than `points` percentage points below A's, significantly.

Folders holding results for different data (the "fingerprint" of fer-bench.json) are refused unless
`allow_different_data`, in which case the comparison says so. Computing (`compare_folders`, a `Comparison`) is
kept apart from writing it (`render`: text, markdown, HTML, CSV, JSON).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench import __version__
from fer_bench.errors import FerBenchError
from fer_bench.metrics import Metric, brief_metrics, format_number, get_metric, mcnemar_exact
from fer_bench.report.inputs import cell_provenance, load_cells
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell, check_results_folder, list_cells, unrecorded_note

#: an accuracy difference is significant (flagged, counted, able to fail --fail-if-worse) below this p
SIGNIFICANCE_LEVEL = 0.05
#: the metrics of the per-task tables (text, markdown, HTML); CSV and JSON hold every brief metric
TABLE_METRICS = ("accuracy", "f1_macro")


@dataclass(frozen=True)
class Timing:
    """A cell timing (a key of timings.json), printed with `decimals`, never in percent."""

    name: str
    label: str
    higher_is_better: bool
    decimals: int = 1

    def format(self, value) -> str:
        return format_number(value, percent=False, decimals=self.decimals)


TIMINGS: tuple[Timing, ...] = (
    Timing("fit_seconds", "fit time (s)", higher_is_better=False),
    Timing("predict_images_per_s", "inference images/s", higher_is_better=True),
)


# --- what is compared --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One compared folder: where it is, which data, and where its cells come from (their manifests)."""

    name: str  # "A" or "B"
    path: Path
    info: dict  # fer-bench.json
    commits: list[tuple[str, bool]]  # (commit prefix, uncommitted changes)
    machines: list[str]
    finished: tuple[str, str]  # first and last cell's `finished`

    @property
    def dataset(self) -> str:
        return str(self.info.get("dataset"))

    @property
    def fingerprint(self) -> str:
        return str(self.info.get("fingerprint"))


@dataclass(frozen=True)
class PairedTest:
    """The exact McNemar test on the images both folders predicted (seed majority per folder)."""

    n_images: int
    a_right_b_wrong: int
    a_wrong_b_right: int
    p_value: float  # NaN without paired images


@dataclass(frozen=True)
class ModelComparison:
    """One (task, model) present in both folders: seed means of the brief metrics and timings, and the test."""

    task: str
    model: str
    seeds_a: int
    seeds_b: int
    metrics_a: dict[str, float]
    metrics_b: dict[str, float]
    timings_a: dict[str, float | None]
    timings_b: dict[str, float | None]
    test: PairedTest

    @property
    def name(self) -> str:
        return f"{self.task} / {self.model}"

    def difference(self, metric: str) -> float:
        return self.metrics_b[metric] - self.metrics_a[metric]

    @property
    def accuracy_points(self) -> float:
        """B's accuracy minus A's, in percentage points."""
        return 100 * self.difference("accuracy")

    @property
    def significant(self) -> bool:
        return self.test.n_images > 0 and self.test.p_value < SIGNIFICANCE_LEVEL

    @property
    def flag(self) -> str:
        """"better" or "worse" (B against A) when the accuracy difference is significant, else ""."""
        if not self.significant:
            return ""
        if self.accuracy_points == 0:  # the seed majorities differ, the seed means do not
            return "differs"
        return "better" if self.accuracy_points > 0 else "worse"


@dataclass
class Comparison:
    a: Side
    b: Side
    settings: Settings
    models: list[ModelComparison] = field(default_factory=list)
    only_a: list[tuple[str, str]] = field(default_factory=list)
    only_b: list[tuple[str, str]] = field(default_factory=list)
    #: one line naming the cells of A and B stored without integrity records (storage.unrecorded_note), or None
    unrecorded_note: str | None = None

    @property
    def split(self) -> str:
        return self.settings.headline_split

    @property
    def same_data(self) -> bool:
        return self.a.info.get("fingerprint") == self.b.info.get("fingerprint")

    @property
    def same_machine(self) -> bool:
        """Every cell of both folders ran on one machine: their timings can be compared."""
        return len(set(self.a.machines) | set(self.b.machines)) == 1

    @property
    def significant(self) -> list[ModelComparison]:
        return [m for m in self.models if m.significant]

    def worse_by_more_than(self, points: float) -> list[ModelComparison]:
        """What --fail-if-worse `points` fails on: significantly less accurate in B by more than `points`."""
        return [m for m in self.significant if -m.accuracy_points > points]


# --- computing ---------------------------------------------------------------------------------------------------

def _check_folder(folder: Path, name: str) -> None:
    if not folder.exists():
        raise FerBenchError(f"compare: {name} folder {folder} does not exist")
    if not folder.is_dir():
        raise FerBenchError(f"compare: {name} = {folder} is not a folder")
    check_results_folder(folder)
    if not list_cells(folder):
        raise FerBenchError(f"compare: {folder} holds no finished cells under {folder / 'runs'}")


def _side(name: str, folder: Path, cells: list[StoredCell]) -> Side:
    facts = cell_provenance(cells)
    return Side(name=name, path=folder, info=check_results_folder(folder), commits=facts["commits"],
                machines=facts["machines"], finished=facts["finished"])


def different_data_message(c: Comparison) -> str:
    return (f"{c.a.path} and {c.b.path} hold results for different data ({c.a.dataset} fingerprint "
            f"{c.a.fingerprint} vs {c.b.dataset} fingerprint {c.b.fingerprint})")


def _by_model(cells: list[StoredCell]) -> dict[tuple[str, str], list[StoredCell]]:
    """The cells by (task, model), seeds in a list, in report order."""
    grouped: dict[tuple[str, str], list[StoredCell]] = {}
    for cell in cells:
        grouped.setdefault((cell.task, cell.model), []).append(cell)
    return grouped


def seed_mean_metrics(cells: list[StoredCell], split: str, settings: Settings) -> dict[str, float]:
    """Each brief metric of `split`, averaged over the cells (the seeds of one (task, model))."""
    values: dict[str, list[float]] = {metric.name: [] for metric in brief_metrics()}
    for cell in cells:
        _, labels, proba = cell.split(split)
        for metric in brief_metrics():
            values[metric.name].append(metric.value(labels, proba, len(cell.class_names), settings))
    return {name: float(np.mean(seeds)) for name, seeds in values.items()}


def seed_mean_timings(cells: list[StoredCell], split: str) -> dict[str, float | None]:
    """Fit seconds and `split` inference images/s averaged over the cells; None where a cell lacks one."""
    keys = {"fit_seconds": "fit_seconds", "predict_images_per_s": f"predict_images_per_s_{split}"}
    means: dict[str, float | None] = {}
    for name, key in keys.items():
        values = [cell.timings.get(key) for cell in cells]
        means[name] = None if any(v is None for v in values) else float(np.mean(values))
    return means


def seed_majority_correct(cells: list[StoredCell], split: str) -> dict[str, bool]:
    """Per image id of `split` that every cell predicted: right in more than half of the cells (a tie is wrong)."""
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    for cell in cells:
        ids, labels, proba = cell.split(split)
        for image_id, correct in zip(ids.tolist(), (proba.argmax(axis=1) == labels).tolist(), strict=True):
            seen[image_id] = seen.get(image_id, 0) + 1
            right[image_id] = right.get(image_id, 0) + correct
    return {image_id: 2 * right[image_id] > len(cells) for image_id, n in seen.items() if n == len(cells)}


def paired_test(cells_a: list[StoredCell], cells_b: list[StoredCell], split: str) -> PairedTest:
    """The exact McNemar test of A's against B's seed-majority correctness, on the images both predicted."""
    correct_a, correct_b = seed_majority_correct(cells_a, split), seed_majority_correct(cells_b, split)
    paired = [image_id for image_id in correct_a if image_id in correct_b]
    if not paired:
        return PairedTest(0, 0, 0, math.nan)
    test = mcnemar_exact([correct_a[i] for i in paired], [correct_b[i] for i in paired])
    return PairedTest(len(paired), test["a_right_b_wrong"], test["a_wrong_b_right"], test["p_value"])


def compare_folders(a, b, *, allow_different_data: bool = False, settings: Settings | None = None) -> Comparison:
    """Compare results folders `a` and `b` (see the module docstring). Raises FerBenchError for a missing or
    non-results folder, a damaged cell, and folders of different data fingerprints unless
    `allow_different_data`."""
    settings = settings or Settings()
    a, b = Path(a), Path(b)
    _check_folder(a, "A")
    _check_folder(b, "B")
    cells_a = load_cells(a)
    cells_b = cells_a if a.resolve() == b.resolve() else load_cells(b)
    comparison = Comparison(_side("A", a, cells_a), _side("B", b, cells_b), settings)
    if not comparison.same_data and not allow_different_data:
        raise FerBenchError(f"compare: {different_data_message(comparison)}; "
                            f"pass --allow-different-data to compare them anyway")
    split = settings.headline_split
    comparison.unrecorded_note = unrecorded_note(cells_a if cells_b is cells_a else [*cells_a, *cells_b])
    models_a, models_b = _by_model(cells_a), _by_model(cells_b)
    comparison.only_a = [key for key in models_a if key not in models_b]
    comparison.only_b = [key for key in models_b if key not in models_a]
    for (task, model), seeds_a in models_a.items():
        seeds_b = models_b.get((task, model))
        if seeds_b is None:
            continue
        comparison.models.append(ModelComparison(
            task=task, model=model, seeds_a=len(seeds_a), seeds_b=len(seeds_b),
            metrics_a=seed_mean_metrics(seeds_a, split, settings),
            metrics_b=seed_mean_metrics(seeds_b, split, settings),
            timings_a=seed_mean_timings(seeds_a, split), timings_b=seed_mean_timings(seeds_b, split),
            test=paired_test(seeds_a, seeds_b, split)))
    return comparison


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
