"""The markdown of summary.md's table sections, made from the computed tables (fer_bench.report.tables).

Every function takes the `SectionContext` (inputs, tables, figures) and returns the section's markdown, or None
when the section has nothing to say; fer_bench.report.sections lists them in order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_bench import __version__
from fer_bench.errors import FerBenchError
from fer_bench.metrics import Metric, brief_metrics, headline_metrics
from fer_bench.models import model_description
from fer_bench.report.inputs import cell_provenance
from fer_bench.report.seeds import (
    cells_by_model,
    distinct_rows,
    ensemble_of,
    is_ensemble,
    mean_and_std,
    several_seeds,
)
from fer_bench.report.timing import FIT_MARK_MEANINGS, fit_time_marks


def pct(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def signed_points(points: float) -> str:
    return f"{points:+.1f}"


def p_value_text(p: float) -> str:
    return "p < 1e-6" if p < 1e-6 else f"p = {p:.2g}"


def metric_rows_by_model(metric_rows: list[dict], split: str, subset: str = "all") -> dict[tuple, list[dict]]:
    """metrics.csv rows of one split and subset by (task, model), seeds in a list (a seed ensemble is a model
    of its own, "m (seed ensemble, n)", with one row marked by its ensemble_of field)."""
    grouped = defaultdict(list)
    for row in metric_rows:
        if row["split"] == split and row["subset"] == subset:
            grouped[(row["task"], row["model"])].append(row)
    return grouped


def confidence_text(settings) -> str:
    """The intervals' confidence level as the tables print it: "95%"."""
    return f"{100 * settings.confidence_level:g}%"


def joined(words) -> str:
    """"a", "a and b", "a, b and c"."""
    words = list(words)
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def metric_text(rows: list[dict], metric: Metric, with_count: bool = True) -> str:
    """One row (one seed, or a seed ensemble): the value, and its bootstrap interval in brackets when the metric
    has one; several (one per seed): mean ± std over seeds (n - 1), and "(n seeds)" unless `with_count` is False
    (for tables with a seeds column)."""
    if len(rows) == 1:
        text = metric.format(rows[0][metric.name])
        low, high = rows[0].get(f"{metric.name}_ci_low"), rows[0].get(f"{metric.name}_ci_high")
        return f"{text} [{metric.format(low)}, {metric.format(high)}]" if low is not None else text
    mean, std = mean_and_std([r[metric.name] for r in rows])
    text = f"{metric.format(mean)} ± {metric.format(std)}"
    return text + f" ({len(rows)} seeds)" if with_count else text


def spread(values, text=pct) -> str:
    """One value: text(value); several (one per seed): "mean ± std" (std over seeds, n - 1)."""
    values = list(values)
    mean, std = mean_and_std(values)
    return text(mean) if len(values) == 1 else f"{text(mean)} ± {text(std)}"


def _one_decimal(x: float) -> str:
    return f"{x:.1f}"


def _seeds_cell(rows: list[dict], deterministic: bool = False) -> str:
    """The seeds column of a multi-seed table: how many seeds a row summarises; a deterministic model's one row
    stands for its identical seeds."""
    if deterministic:
        return deterministic_text(len(rows))
    return str(len(rows))


def deterministic_text(n_seeds: int) -> str:
    return f"{n_seeds}, identical"


def _fit_text(rows: list[dict], marks: str = "") -> str:
    """Fit time: mean ± std over seeds, then its marks (timing.fit_time_marks)."""
    values = [r["fit_seconds"] for r in rows]
    if any(v is None for v in values):
        return "–"
    return f"{spread(values, _one_decimal)} s" + (f" {marks}" if marks else "")


def seeds_note(cells, settings) -> str:
    """The headline's sentence on the seeds: how many per (task, model), and what the spreads, intervals and
    ensembles are."""
    counts = sorted({len(group) for group in cells_by_model(cells).values()})
    seeds = ", ".join(str(seed) for seed in sorted({cell.seed for cell in cells}))
    how_many = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} seeds"
    return (f"**{how_many}** per task and model (seeds {seeds}). *± seed sd*: mean ± standard deviation over the "
            f"seeds (n − 1); *images' {confidence_text(settings)} CI*: percentile bootstrap over the test images "
            "(the mean of the seeds' bounds); *n, identical*: a model whose seeds gave identical predictions, shown "
            "once.")


def _interval_text(rows: list[dict], metric: Metric) -> str:
    """The images' bootstrap interval of a metric: one row's, or the mean of several seeds' bounds."""
    low = [r.get(f"{metric.name}_ci_low") for r in rows]
    high = [r.get(f"{metric.name}_ci_high") for r in rows]
    if any(v is None for v in (*low, *high)):
        return "–"
    return f"[{metric.format(float(np.mean(low)))}, {metric.format(float(np.mean(high)))}]"


def _headline_cells(task: str, model: str, rows: list[dict], public_rows: list[dict], metrics: list[Metric],
                    several: bool, deterministic: bool, fit_marks: str = "") -> list[str]:
    shown = distinct_rows(rows, deterministic)
    if not several:
        values = [metric_text(shown, metric, with_count=False) for metric in metrics]
    else:
        values = []
        for metric in metrics:
            values.append(metric_text(shown, metric, with_count=False) if len(shown) > 1
                          else metric.format(shown[0][metric.name]))
            if metric.interval:
                values.append(_interval_text(shown, metric))
    values += [spread(r["accuracy"] for r in distinct_rows(public_rows, deterministic)), _fit_text(rows, fit_marks)]
    return [task, model, *([_seeds_cell(rows, deterministic)] if several else []), *values]


def _headline_columns(settings, metrics: list[Metric], several: bool) -> list[str]:
    """The headline table's columns: one per metric (one seed: with "[95% CI]" where it has an interval;
    several: its mean ± seed sd, and beside it the images' interval in a column of its own), then the selection
    split's accuracy and the fit time."""
    level = confidence_text(settings)
    columns = []
    for metric in metrics:
        if not several:
            columns.append(metric.header + (f" [{level} CI]" if metric.interval else ""))
            continue
        columns.append(f"{metric.header} ± seed sd")
        if metric.interval:
            columns.append(f"{metric.label} images' {level} CI")
    return ["task", "model", *(["seeds"] if several else []), *columns, f"{settings.selection_split} acc %",
            "fit time"]


def _model_notes(models) -> list[str]:
    """Each headline model's note from register_model(..., description=...) (e.g. that it was pretrained
    elsewhere); none for a model not registered in this process."""
    notes = []
    for model in dict.fromkeys(models):
        try:
            note = model_description(model)
        except FerBenchError:
            note = ""
        if note:
            notes.append(f"**{model}**: {note}.")
    return notes


def headline_table(inputs, tables) -> tuple[list[str], list[list[str]]]:
    """The headline table as text cells: (columns, one row per trained (task, model) of the headline split).

    With several seeds: the brief metrics, the table summary.md and index.html open with and `fer-bench run`
    prints at its end, narrow enough to leave the findings on the first screen (the other headline metrics and
    the seed ensembles: all_metrics_table). One seed has no spreads or ensembles: every headline metric (it
    fits: one column per metric)."""
    several = several_seeds(inputs.cells)
    metrics = brief_metrics() if several else headline_metrics()
    private = metric_rows_by_model(tables.metric_rows, inputs.settings.headline_split)
    public = metric_rows_by_model(tables.metric_rows, inputs.settings.selection_split)
    marks = fit_time_marks(tables.timing_rows)
    rows = [_headline_cells(task, model, rows, public[(task, model)], metrics, several,
                            inputs.is_deterministic(task, model), marks.get((task, model), ""))
            for (task, model), rows in private.items() if not is_ensemble(rows[0])]
    return _headline_columns(inputs.settings, metrics, several), rows


def _table_markdown(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cells) + " |" for cells in rows)]


def headline_markdown(ctx) -> str:
    """The brief headline table, then what its spreads and intervals are, the floors and the models' notes."""
    split = ctx.inputs.settings.headline_split
    private = metric_rows_by_model(ctx.tables.metric_rows, split)
    columns, rows = headline_table(ctx.inputs, ctx.tables)
    lines = _table_markdown(columns, rows)
    floor_text = "; ".join(
        f"{r['task']}: majority ({r['majority_class']}) {pct(r['majority_accuracy'])}%, chance "
        f"{pct(r['chance_accuracy'])}%" for r in ctx.tables.floor_rows if r["split"] == split)
    floors = f"Floors on {split}: {floor_text}." + _fit_marks_note(row[-1] for row in rows)
    # one paragraph: the notes under the headline table keep the findings on the first screen
    lines += ["", (seeds_note(ctx.inputs.cells, ctx.inputs.settings) + " " + floors
                   if several_seeds(ctx.inputs.cells) else floors)]
    notes = _model_notes(model for (_, model), rows in private.items() if not is_ensemble(rows[0]))
    if notes:
        lines += ["", " ".join(notes)]  # one paragraph, one line
    return "\n".join(lines)


def _fit_marks_note(fit_cells) -> str:
    """What the fit-time marks in the headline mean, for those that appear."""
    fit_cells = list(fit_cells)
    notes = [f"{mark}: {text}" for mark, text in FIT_MARK_MEANINGS.items() if any(mark in cell for cell in fit_cells)]
    return f" Fit time {'; '.join(notes)} (per machine: timing section)." if notes else ""


def _value_cells(rows: list[dict], metrics: list[Metric]) -> list[str]:
    """One cell per metric: one row's value, or mean ± seed sd over several (intervals elsewhere)."""
    return [metric_text(rows, metric, with_count=False) if len(rows) > 1 else metric.format(rows[0][metric.name])
            for metric in metrics]


def all_metrics_table(inputs, metric_rows: list[dict]) -> tuple[list[str], list[list[str]]] | None:
    """With several seeds, one row per trained (task, model) of the headline split: the headline metrics the
    brief headline leaves out (mean ± seed sd), then its seed ensemble's every headline metric with the images'
    interval and its selection-split accuracy ("–" where the seeds gave identical predictions: no ensemble).
    None with one seed (the headline is then the full table)."""
    if not several_seeds(inputs.cells):
        return None
    settings = inputs.settings
    brief = {metric.name for metric in brief_metrics()}
    extra = [metric for metric in headline_metrics() if metric.name not in brief]
    every = headline_metrics()
    private = metric_rows_by_model(metric_rows, settings.headline_split)
    public = metric_rows_by_model(metric_rows, settings.selection_split)
    ensembles = {(task, ensemble_of(rows[0]).model): (rows[0], public[(task, name)][0])
                 for (task, name), rows in private.items() if is_ensemble(rows[0])}
    level = confidence_text(settings)
    columns = ["task", "model", "seeds", *(f"{metric.header} ± seed sd" for metric in extra),
               *(f"ensemble {metric.header}" + (f" [{level} CI]" if metric.interval else "") for metric in every),
               f"ensemble {settings.selection_split} acc %"]
    table = []
    for (task, model), rows in private.items():
        if is_ensemble(rows[0]):
            continue
        deterministic = inputs.is_deterministic(task, model)
        shown = distinct_rows(rows, deterministic)
        cells = [task, model, _seeds_cell(rows, deterministic), *_value_cells(shown, extra)]
        if (task, model) in ensembles:
            ensemble, ensemble_public = ensembles[(task, model)]
            cells += [*(metric_text([ensemble], metric) for metric in every), pct(ensemble_public["accuracy"])]
        else:
            cells += ["–"] * (len(every) + 1)
        table.append(cells)
    return columns, table


def all_metrics_markdown(ctx) -> str | None:
    """The headline metrics the headline table leaves out, and the seed ensembles' (see all_metrics_table)."""
    table = all_metrics_table(ctx.inputs, ctx.tables.metric_rows)
    if table is None:
        return None
    level = confidence_text(ctx.inputs.settings)
    lead = ("Per task and model, the headline metrics the headline table leaves out (mean ± seed sd), then its "
            "*seed ensemble*: the average of its seeds' stored probabilities (nothing trained), with every "
            f"headline metric, the images' {level} interval in brackets, and its "
            f"{ctx.inputs.settings.selection_split} accuracy; – where the seeds gave identical predictions. Every "
            "metric of every cell, the ensembles' as seed `ensemble`: `metrics.csv`.")
    return "\n".join([lead, "", *_table_markdown(*table)])


# --- what each model chose, provenance ------------------------------------------------------------------------

#: what a model chose on PublicTest, as stored in params.json "selected": key -> label in the summary. Keys a model
#: does not store are left out, so a user's model shows whichever of these it records.
SELECTION_LABELS = {"C": "C", "gamma_scale": "gamma scale", "best_epoch": "epoch", "tta": "flip TTA",
                    "test_views": "test views"}


def _selection_text(selected: dict) -> str:
    parts = []
    for key, label in SELECTION_LABELS.items():
        value = selected.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif key == "best_epoch" and selected.get("epochs_run"):
            text = f"{value}/{selected['epochs_run']}"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{label} {text}")
    return ", ".join(parts)


def stored_validation_accuracy(params: dict):
    """PublicTest accuracy of the model as it predicts: what its validation_accuracy() offered at run time
    (params.json "validation_accuracy"), else, for cells stored before the model interface had it, the key
    the model recorded in "selected" (flip TTA's when it was on)."""
    if params.get("validation_accuracy") is not None:
        return params["validation_accuracy"]
    selected = params.get("selected") or {}
    if selected.get("tta") and selected.get("val_accuracy_with_tta") is not None:
        return selected["val_accuracy_with_tta"]
    for key in ("validation_accuracy", "best_val_accuracy"):
        if selected.get(key) is not None:
            return selected[key]
    return None


def selection_markdown(ctx) -> str | None:
    """One line per model, one column per task: the hyper-parameters, epoch and test-time views its seeds chose
    on PublicTest, and their PublicTest accuracy (PrivateTest played no part); a model that chose nothing is left
    out, and seeds that chose alike are said once."""
    recorded = {key for cell in ctx.inputs.cells for key in ((cell.params or {}).get("selected") or {})}
    legend = ("Gamma scale s means gamma = s / (n_features × feature variance), scikit-learn's \"scale\" times s; "
              "epoch k/n: the CNN's weights after epoch k of n")
    if "tta" in recorded:
        legend += ("; flip TTA: averaging each image's and its mirror image's probabilities (off by default; on "
                   "with tta=True, or with tta=\"auto\" when it raised PublicTest accuracy)")
    if "test_views" in recorded:
        legend += ("; test views v: the CNN's probabilities averaged over v views of each face (1: the centre "
                   "crop; 2: and its mirror image; 10: the centre and the four corner crops, and their mirror "
                   "images), the number chosen on PublicTest")
    chosen = {}  # (task, model) -> "choice · accuracy", its seeds
    for (task, model), cells in cells_by_model(ctx.inputs.cells).items():
        choices = [_selection_text((cell.params or {}).get("selected") or {}) for cell in cells]
        accuracies = [stored_validation_accuracy(cell.params or {}) for cell in cells]
        if not any(choices) and all(a is None for a in accuracies):
            continue
        accuracy_texts = [pct(a) if a is not None else "–" for a in accuracies]
        chosen[(task, model)] = (f"{_once_or_each(choices) or '–'} · {_once_or_each(accuracy_texts)}",
                                 ", ".join(str(cell.seed) for cell in cells))
    if not chosen:
        return None
    tasks = list(dict.fromkeys(task for task, _ in chosen))
    models = list(dict.fromkeys(model for _, model in chosen))
    lines = [legend + ". Each cell: what the model chose on PublicTest · its PublicTest accuracy in %; per seed, in "
             "seed order, separated by /, said once when every seed chose alike.", "",
             "| " + " | ".join(["model", "seeds", *tasks]) + " |", "|" + "---|" * (2 + len(tasks))]
    for model in models:
        seed_lists = list(dict.fromkeys(seeds for (_, m), (_, seeds) in chosen.items() if m == model))
        cells = []
        for task in tasks:
            text, seeds = chosen.get((task, model), ("–", None))
            cells.append(f"(seeds {seeds}) {text}" if len(seed_lists) > 1 and seeds else text)
        lines.append("| " + " | ".join([model, seed_lists[0] if len(seed_lists) == 1 else "by task", *cells]) + " |")
    return "\n".join(lines)


def _once_or_each(texts: list[str]) -> str:
    """One text when every seed's is the same, else each seed's joined by " / "."""
    return texts[0] if len(set(texts)) == 1 else " / ".join(texts)


def provenance_markdown(ctx) -> str:
    facts = cell_provenance(ctx.inputs.cells)
    dataset, (first, last) = facts["dataset"], facts["finished"]
    commit_text = ", ".join(f"`{c}`" + (" (uncommitted changes)" if dirty else "") for c, dirty in facts["commits"])
    return (f"Data: **{dataset['name']}** (fingerprint `{dataset['fingerprint']}`). "
            f"Cells computed by fer-bench at commit {commit_text} on {', '.join(facts['machines'])}, "
            f"finished between {first} and {last} (UTC)"
            + (", in **--quick** mode (smoke-check configuration, not the benchmark)" if facts["quick"] else "")
            + f". Tables written by `fer-bench report` {__version__} from the stored predictions in `runs/`.")


def title_markdown(ctx) -> str:
    dataset = ctx.inputs.cells[0].manifest.dataset.name
    title = f"# fer-bench results: {dataset}\n"
    if dataset == "synthetic":
        title += ("\n> **Synthetic data.** These numbers come from fer-bench's built-in procedural faces, not from "
                  "FER-2013. They show the pipeline works; they say nothing about facial-expression recognition.\n")
    return title


FILES_MARKDOWN = (
    "Schemas of every file: `docs/results-format.md` in the fer-bench repository. "
    "`metrics.csv` (one row per task × model × seed × split × subset), `per_class.csv`, `confusions.csv`, "
    "`significance.csv`, `class_gains.csv`, `floors.csv`, `timing.csv`, `summary.tex`, `figures/`, `audit.md` "
    "and `audit.csv` (from `fer-bench data audit`), `runs/<task>/<model>/seed<k>/` (stored predictions, chosen "
    "parameters, timings, saliency maps, manifest).")
