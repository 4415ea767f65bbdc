"""`fer-bench compare A B`: two results folders side by side, per (task, model), on the headline split.

Where the numbers come from: every metric is recomputed from the stored predictions of each folder with the
report's own table code (`fer_bench.report.inputs.load_cells` and `fer_bench.report.tables.metrics_table`, so
the same bootstrap, seeding and settings as metrics.csv), never read from a folder's CSVs: a CSV may be stale
or hand-edited, the predictions are what the cells produced. Fit time and inference images/s come from each
cell's timings.json, through the same table rows.

For each (task, model) present in both folders the comparison shows, on the headline split
(`fer_bench.settings.HEADLINE_SPLIT`, PrivateTest, subset "all"): the metric registry's brief metrics (accuracy,
macro-F1, ROC AUC (macro); `fer_bench.metrics`, printed as the report prints them), fit time (s) and inference
images/s, each for A and B, the difference B - A, the ratio B / A, and whether B is better or worse than A (by
each metric's direction: a lower fit time is better). When a (task, model) has several seeds in a folder, its
values there are the mean over those seeds (n says how many; A and B may have different n), and its accuracy
interval is the mean of the seeds' interval bounds.

An accuracy difference is **flagged** when it falls outside both folders' bootstrap intervals (95% unless the
settings say otherwise): B's accuracy lies outside A's interval and A's accuracy lies outside B's.

Folders holding results for different data (the "fingerprint" of fer-bench.json) are refused unless
`allow_different_data`, in which case the comparison says so in its output. Computing the comparison
(`compare_folders`) is kept apart from writing it (`comparison_text`, `comparison_markdown`,
`comparison_html`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench import __version__
from fer_bench.errors import FerBenchError
from fer_bench.metrics import Metric, brief_metrics, format_number, get_metric
from fer_bench.report.inputs import ReportInputs, load_cells
from fer_bench.report.markdown import confidence_text, metric_rows_by_model
from fer_bench.report.tables import metrics_table
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell, check_results_folder, list_cells, unrecorded_note


@dataclass(frozen=True)
class Timing:
    """A cell timing compared after the registry's brief metrics (a key of a metrics_table row, not a metric):
    printed like a metric, with `decimals`, never in percent."""

    name: str
    label: str
    higher_is_better: bool
    decimals: int = 1

    @property
    def header(self) -> str:
        return self.label

    def format(self, value, *, signed: bool = False) -> str:
        return format_number(value, percent=False, decimals=self.decimals, signed=signed)

    def improves(self, difference: float) -> bool:
        return difference > 0 if self.higher_is_better else difference < 0


TIMINGS: tuple[Timing, ...] = (
    Timing("fit_seconds", "fit time (s)", higher_is_better=False),
    Timing("predict_images_per_s", "inference images/s", higher_is_better=True),
)


def compared_quantities() -> list[Metric | Timing]:
    """What a (task, model) table shows, in order: the registry's brief metrics, then the timings."""
    return [*brief_metrics(), *TIMINGS]


@dataclass
class MetricRow:
    quantity: Metric | Timing
    a: float | None
    b: float | None

    @property
    def key(self) -> str:
        return self.quantity.name

    @property
    def label(self) -> str:
        return self.quantity.header

    @property
    def verdict(self) -> str:
        """B against A in the quantity's direction (higher_is_better): "better", "worse", "same" or "–"."""
        difference = self.difference
        if difference is None or math.isnan(difference):
            return "–"
        if difference == 0:
            return "same"
        return "better" if self.quantity.improves(difference) else "worse"

    @property
    def difference(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a


@dataclass
class CellComparison:
    """One (task, model) present in both folders."""

    task: str
    model: str
    seeds_a: int
    seeds_b: int
    images_a: int
    images_b: int
    rows: list[MetricRow]
    accuracy_ci_a: tuple[float, float]
    accuracy_ci_b: tuple[float, float]

    def row(self, key: str) -> MetricRow:
        return next(r for r in self.rows if r.key == key)

    @property
    def flagged(self) -> bool:
        """The accuracy difference falls outside both 95% intervals (B outside A's and A outside B's)."""
        acc = self.row("accuracy")
        if acc.a is None or acc.b is None:
            return False
        (low_a, high_a), (low_b, high_b) = self.accuracy_ci_a, self.accuracy_ci_b
        bounds = (acc.a, acc.b, low_a, high_a, low_b, high_b)
        if any(v is None or math.isnan(v) for v in bounds):
            return False
        return not (low_a <= acc.b <= high_a) and not (low_b <= acc.a <= high_b)

    @property
    def differs(self) -> bool:
        return any(r.a != r.b for r in self.rows) or self.seeds_a != self.seeds_b or self.images_a != self.images_b


@dataclass
class Comparison:
    a: Path
    b: Path
    info_a: dict
    info_b: dict
    settings: Settings
    cells: list[CellComparison] = field(default_factory=list)
    only_a: list[tuple[str, str]] = field(default_factory=list)
    only_b: list[tuple[str, str]] = field(default_factory=list)
    #: one line naming the cells of A and B stored without integrity records (storage.unrecorded_note), or None
    unrecorded_note: str | None = None

    @property
    def split(self) -> str:
        return self.settings.headline_split

    @property
    def same_data(self) -> bool:
        return self.info_a.get("fingerprint") == self.info_b.get("fingerprint")

    @property
    def differing(self) -> list[CellComparison]:
        return [c for c in self.cells if c.differs]

    @property
    def flagged(self) -> list[CellComparison]:
        return [c for c in self.cells if c.flagged]


# --- computing ---------------------------------------------------------------------------------------------------

def _check_folder(folder: Path, name: str) -> dict:
    if not folder.exists():
        raise FerBenchError(f"compare: {name} folder {folder} does not exist")
    if not folder.is_dir():
        raise FerBenchError(f"compare: {name} = {folder} is not a folder")
    info = check_results_folder(folder)
    if not list_cells(folder):
        raise FerBenchError(f"compare: {folder} holds no finished cells under {folder / 'runs'}")
    return info


def different_data_message(c: Comparison) -> str:
    return (f"{c.a} and {c.b} hold results for different data ({c.info_a.get('dataset')} fingerprint "
            f"{c.info_a.get('fingerprint')} vs {c.info_b.get('dataset')} fingerprint {c.info_b.get('fingerprint')})")


def _headline_rows(folder: Path, settings: Settings) -> tuple[dict[tuple[str, str], list[dict]], list[StoredCell]]:
    """metrics_table rows of the headline split (subset all) by (task, model), in report order, seeds listed; and
    the cells they were computed from."""
    inputs = ReportInputs(out=folder, cells=load_cells(folder), settings=settings)
    return dict(metric_rows_by_model(metrics_table(inputs), settings.headline_split)), inputs.cells


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r.get(key) for r in rows]
    if any(v is None for v in values):
        return None
    return float(np.mean(np.asarray(values, dtype=float)))


def compare_folders(a, b, *, allow_different_data: bool = False, settings: Settings | None = None) -> Comparison:
    """Compare results folders `a` and `b` (see the module docstring). Raises FerBenchError for a missing or
    non-results folder, and for folders of different data fingerprints unless `allow_different_data`."""
    settings = settings or Settings()
    a, b = Path(a), Path(b)
    comparison = Comparison(a, b, _check_folder(a, "A"), _check_folder(b, "B"), settings)
    if not comparison.same_data and not allow_different_data:
        raise FerBenchError(f"compare: {different_data_message(comparison)}; "
                            f"pass --allow-different-data to compare them anyway")
    rows_a, cells_a = _headline_rows(a, settings)
    rows_b, cells_b = (rows_a, []) if a.resolve() == b.resolve() else _headline_rows(b, settings)
    comparison.unrecorded_note = unrecorded_note([*cells_a, *cells_b])
    comparison.only_a = [key for key in rows_a if key not in rows_b]
    comparison.only_b = [key for key in rows_b if key not in rows_a]
    for (task, model), seeds_a in rows_a.items():
        seeds_b = rows_b.get((task, model))
        if seeds_b is None:
            continue
        comparison.cells.append(CellComparison(
            task=task, model=model, seeds_a=len(seeds_a), seeds_b=len(seeds_b),
            images_a=int(seeds_a[0]["n"]), images_b=int(seeds_b[0]["n"]),
            rows=[MetricRow(q, _mean(seeds_a, q.name), _mean(seeds_b, q.name)) for q in compared_quantities()],
            accuracy_ci_a=(_mean(seeds_a, "accuracy_ci_low"), _mean(seeds_a, "accuracy_ci_high")),
            accuracy_ci_b=(_mean(seeds_b, "accuracy_ci_low"), _mean(seeds_b, "accuracy_ci_high"))))
    return comparison


# --- formatting --------------------------------------------------------------------------------------------------

def _difference(row: MetricRow) -> str:
    """Signed; an exact zero is written 0 so that 'no difference' and 'rounds to +0.0' read apart."""
    if row.difference == 0:
        return "0"
    return row.quantity.format(row.difference, signed=True)


def _ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "1" if value == 1 else f"{value:.3f}"


def _ci(ci: tuple[float, float]) -> str:
    accuracy = get_metric("accuracy")
    return f"[{accuracy.format(ci[0])}, {accuracy.format(ci[1])}]"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds (mean)"


COLUMNS = ("metric", "A", "B", "B - A", "B / A", "B is")


def table_rows(cell: CellComparison) -> list[list[str]]:
    """The cells of one (task, model) table, as shown (percentages ×100, differences in points), and whether B is
    better or worse than A by each quantity's direction."""
    return [[r.label, r.quantity.format(r.a), r.quantity.format(r.b), _difference(r), _ratio(r.ratio), r.verdict]
            for r in cell.rows]


def cell_heading(cell: CellComparison) -> str:
    return f"{cell.task} / {cell.model}"


def flag_text(c: Comparison) -> str:
    return f"accuracy difference outside both {confidence_text(c.settings)} intervals"


def cell_note(c: Comparison, cell: CellComparison) -> str:
    n = (f"A: {_seeds(cell.seeds_a)}, {cell.images_a} images; B: {_seeds(cell.seeds_b)}, {cell.images_b} images")
    acc = cell.row("accuracy")
    cis = (f"accuracy {confidence_text(c.settings)} CI A {_ci(cell.accuracy_ci_a)}, "
           f"B {_ci(cell.accuracy_ci_b)}")
    if cell.flagged:
        verdict = (f"FLAG: the accuracy difference ({_difference(acc)} points) falls "
                   f"outside both intervals")
    elif acc.difference == 0:
        verdict = "no accuracy difference"
    else:
        verdict = "the accuracy difference lies within the intervals"
    return f"{n}. {cis}: {verdict}."


def header_lines(c: Comparison) -> list[str]:
    def side(name, folder, info):
        return f"{name} = {folder} ({info.get('dataset')}, fingerprint {info.get('fingerprint')})"

    lines = [side("A", c.a, c.info_a), side("B", c.b, c.info_b)]
    if not c.same_data:
        lines.append(f"WARNING: different data: {different_data_message(c)}; differences may come from the data, "
                     f"not the models (--allow-different-data)")
    lines.append(f"{c.split} (headline split, subset all); metrics recomputed from the stored predictions; "
                 f"difference = B - A (percentage points for %), ratio = B / A")
    return lines


def summary_lines(c: Comparison) -> list[str]:
    lines = []
    if c.only_a:
        lines.append("only in A: " + ", ".join(f"{t} / {m}" for t, m in c.only_a))
    if c.only_b:
        lines.append("only in B: " + ", ".join(f"{t} / {m}" for t, m in c.only_b))
    if not c.cells:
        lines.append("no (task, model) is present in both folders")
    elif not c.differing:
        lines.append(f"no differences: all {len(c.cells)} (task, model) present in both are identical in A and B")
    else:
        lines.append(f"{len(c.differing)} of {len(c.cells)} (task, model) differ: "
                     + ", ".join(cell_heading(x) for x in c.differing))
        lines.append(f"{len(c.flagged)} flagged ({flag_text(c)})"
                     + (": " + ", ".join(cell_heading(x) for x in c.flagged) if c.flagged else ""))
    return lines


def comparison_text(c: Comparison) -> str:
    """Plain text for the terminal: aligned columns, one table per (task, model)."""
    out = ["fer-bench compare", *header_lines(c), ""]
    for cell in c.cells:
        body = [list(COLUMNS), *table_rows(cell)]
        widths = [max(len(r[i]) for r in body) for i in range(len(COLUMNS))]
        flag = f"  [FLAG: {flag_text(c)}]" if cell.flagged else ""
        out.append(f"{cell_heading(cell)}{flag}")
        for r in body:
            out.append("  " + "  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i])
                                        for i in range(len(r))).rstrip())
        out.append("  " + cell_note(c, cell))
        out.append("")
    out.extend(summary_lines(c))
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def comparison_markdown(c: Comparison) -> str:
    out = ["# fer-bench compare", ""]
    out += [f"- {_md_escape(line)}" for line in header_lines(c)] + [""]
    for cell in c.cells:
        flag = f" — **FLAG**: {flag_text(c)}" if cell.flagged else ""
        out += [f"## {_md_escape(cell_heading(cell))}{flag}", "",
                "| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
        out += ["| " + " | ".join(_md_escape(x) for x in r) + " |" for r in table_rows(cell)]
        out += ["", _md_escape(cell_note(c, cell)), ""]
    out += ["## Summary", ""] + [f"- {_md_escape(line)}" for line in summary_lines(c)]
    out += ["", f"Written by fer-bench {__version__}.", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f2f2f2}
.flag{color:#b00020;font-weight:bold}.warning{background:#fff3cd;padding:.5em;border:1px solid #e0c060}
p.note{color:#555;font-size:.9em}"""


def comparison_html(c: Comparison) -> str:
    """A small self-contained page (inline CSS, no scripts, no external assets); every text is escaped."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>fer-bench compare: {e(str(c.a))} vs {e(str(c.b))}</title>", f"<style>{_CSS}</style>",
           "</head>", "<body>", "<h1>fer-bench compare</h1>", "<ul>"]
    for line in header_lines(c):
        css = ' class="warning"' if line.startswith("WARNING") else ""
        out.append(f"<li{css}>{e(line)}</li>")
    out.append("</ul>")
    for cell in c.cells:
        flag = f' <span class="flag">FLAG: {e(flag_text(c))}</span>' if cell.flagged else ""
        out.append(f"<h2>{e(cell_heading(cell))}{flag}</h2>")
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in COLUMNS) + "</tr>")
        for r in table_rows(cell):
            out.append("<tr>" + f"<td>{e(r[0])}</td>" + "".join(f'<td class="num">{e(x)}</td>' for x in r[1:])
                       + "</tr>")
        out.append("</table>")
        out.append(f'<p class="note">{e(cell_note(c, cell))}</p>')
    out.append("<h2>Summary</h2>")
    out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in summary_lines(c)) + "</ul>")
    out.append(f'<p class="note">Written by fer-bench {e(__version__)}.</p>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


#: --out file suffix -> writer
WRITERS = {".md": comparison_markdown, ".html": comparison_html, ".htm": comparison_html}


def writer_for(path) -> Callable[[Comparison], str]:
    """The writer of an --out file, from its suffix (.md, .html or .htm); FerBenchError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise FerBenchError(f"compare: --out {path} must end in .md or .html")
    return WRITERS[suffix]
