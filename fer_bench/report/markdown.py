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


def _fit_text(rows: list[dict]) -> str:
    """Fit time: mean ± std over seeds."""
    values = [r["fit_seconds"] for r in rows]
    if any(v is None for v in values):
        return "–"
    return f"{spread(values, _one_decimal)} s"


def seeds_note(cells, settings) -> str:
    """The headline's sentence on the seeds: how many per (task, model), and what the spreads, intervals and
    ensembles are."""
    counts = sorted({len(group) for group in cells_by_model(cells).values()})
    seeds = ", ".join(str(seed) for seed in sorted({cell.seed for cell in cells}))
    how_many = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} seeds"
    return (f"**{how_many}** per task and model (seeds {seeds}). *± seed sd*: mean ± standard deviation over the "
            f"seeds (n − 1); *images' {confidence_text(settings)} CI*: percentile bootstrap over the test images "
            "(the mean of the seeds' bounds); *n, identical*: a model whose seeds gave identical predictions, shown "
            "once; the seed ensembles: after the findings.")


def _interval_text(rows: list[dict], metric: Metric) -> str:
    """The images' bootstrap interval of a metric: one row's, or the mean of several seeds' bounds."""
    low = [r.get(f"{metric.name}_ci_low") for r in rows]
    high = [r.get(f"{metric.name}_ci_high") for r in rows]
    if any(v is None for v in (*low, *high)):
        return "–"
    return f"[{metric.format(float(np.mean(low)))}, {metric.format(float(np.mean(high)))}]"


def _headline_cells(task: str, model: str, rows: list[dict], public_rows: list[dict], metrics: list[Metric],
                    several: bool, deterministic: bool) -> list[str]:
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
    values += [spread(r["accuracy"] for r in distinct_rows(public_rows, deterministic)), _fit_text(rows)]
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


def headline_table(inputs, metric_rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The headline table as text cells: (columns, one row per trained (task, model) of the headline split).

    With several seeds: the brief metrics, the table summary.md and index.html open with and `fer-bench run`
    prints at its end, narrow enough to leave the findings on the first screen (the other headline metrics and
    the seed ensembles: all_metrics_table). One seed has no spreads or ensembles: every headline metric (it
    fits: one column per metric)."""
    several = several_seeds(inputs.cells)
    metrics = brief_metrics() if several else headline_metrics()
    private = metric_rows_by_model(metric_rows, inputs.settings.headline_split)
    public = metric_rows_by_model(metric_rows, inputs.settings.selection_split)
    rows = [_headline_cells(task, model, rows, public[(task, model)], metrics, several,
                            inputs.is_deterministic(task, model))
            for (task, model), rows in private.items() if not is_ensemble(rows[0])]
    return _headline_columns(inputs.settings, metrics, several), rows


def _table_markdown(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cells) + " |" for cells in rows)]


def headline_markdown(ctx) -> str:
    """The brief headline table, then what its spreads and intervals are, the floors and the models' notes."""
    split = ctx.inputs.settings.headline_split
    private = metric_rows_by_model(ctx.tables.metric_rows, split)
    lines = _table_markdown(*headline_table(ctx.inputs, ctx.tables.metric_rows))
    floor_text = "; ".join(
        f"{r['task']}: majority ({r['majority_class']}) {pct(r['majority_accuracy'])}%, chance "
        f"{pct(r['chance_accuracy'])}%" for r in ctx.tables.floor_rows if r["split"] == split)
    floors = f"Floors on {split}: {floor_text}."
    # one paragraph: the notes under the headline table keep the findings on the first screen
    lines += ["", (seeds_note(ctx.inputs.cells, ctx.inputs.settings) + " " + floors
                   if several_seeds(ctx.inputs.cells) else floors)]
    notes = _model_notes(model for (_, model), rows in private.items() if not is_ensemble(rows[0]))
    if notes:
        lines += ["", " ".join(notes)]  # one paragraph, one line
    return "\n".join(lines)


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


def rival_label(inputs, task: str, model: str) -> str:
    """How a compared model takes part in the CNN-vs-classic answer: "classic" or "peer"."""
    return "classic" if model in inputs.classic_rivals(task) else "peer"


def _compared(inputs, tasks) -> list[str]:
    """The models compared with the reference in any of `tasks`: the classic ones first, then the peers."""
    classic = [m for t in tasks for m in inputs.classic_rivals(t)]
    peers = [m for t in tasks for m in inputs.peers(t)]
    return list(dict.fromkeys([*classic, *peers]))


def _gain_cell(row: dict | None) -> str:
    """A per-class gain: mean ± seed sd (one seed: the value), the paired interval, and whether it holds."""
    if row is None:
        return "–"
    holds = f" **{row['holds']}**" if row["holds"] else ""
    return (f"{gain_text(row)} [{signed_points(100 * row['ci_low'])}, {signed_points(100 * row['ci_high'])}]"
            + holds)


def per_class_markdown(ctx) -> str:
    """One table of every task: the reference's recall per class and its gain over each compared model, classic
    models first; every model's per-class numbers are in per_class.csv and the gains in class_gains.csv."""
    inputs, split = ctx.inputs, ctx.inputs.settings.headline_split
    level = confidence_text(inputs.settings)
    rows = [r for r in ctx.tables.per_class_rows if r["split"] == split]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    references = list(dict.fromkeys(inputs.reference(t) for t in tasks if inputs.reference(t)))
    ref_header = f"{references[0]} recall %" if len(references) == 1 else "reference recall %"
    compared = _compared(inputs, tasks)
    gains = {(r["task"], r["model_b"], r["class"]): r for r in ctx.tables.class_gain_rows}
    peer_columns = {m for t in tasks for m in inputs.peers(t)}
    over_seeds = several_seeds(inputs.cells)
    lines = [f"The reference model's recall per class in % ({split}"
             + ("; mean ± seed sd where its seeds differ" if over_seeds else "")
             + ") and its gain in recall points over each other model (*model* − *other*)"
             + (": mean ± seed sd over the seeds both have, " if over_seeds else ", ")
             + f"the paired bootstrap {level} interval over the images in brackets (the same resampled "
             "images score both models" + ("; with several seeds the mean of the seeds' bounds" if over_seeds else "")
             + "), and **gain** or "
             "**loss** where every seed's interval excludes 0 on that side. Classic models (as registered) "
             "first; a *peer* is not classic. Every model's precision, recall and F1: `per_class.csv`; the gains: "
             "`class_gains.csv`.", "",
             "| " + " | ".join(["task", "class", "support", ref_header,
                                *(f"− {m}" + (" (peer)" if m in peer_columns else "") for m in compared)]) + " |",
             "|" + "---|" * (4 + len(compared))]
    for task in tasks:
        ref = inputs.reference(task)
        task_rows = [r for r in rows if r["task"] == task]
        for cls in dict.fromkeys(r["class"] for r in task_rows):
            support = next(r["support"] for r in task_rows if r["class"] == cls)
            recall = distinct_rows([r for r in task_rows if r["model"] == ref and r["class"] == cls],
                                   inputs.is_deterministic(task, ref))
            cells = [_gain_cell(gains.get((task, m, cls))) for m in compared]
            lines.append("| " + " | ".join([task, cls, str(int(support)),
                                            spread(r["recall"] for r in recall) if recall else "–", *cells]) + " |")
    return "\n".join(lines)


def _significance_groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row["task"], row["model_a"], row["model_b"])].append(row)
    return grouped


def _significance_cell(tests: list[dict] | None) -> str:
    """One comparison over its seeds: A − B in points (mean ± seed sd), how many seeds' tests are significant
    after Holm's correction and in how many A is ahead, and the largest adjusted p."""
    if not tests:
        return "–"
    n = len(tests)
    mean, std = mean_and_std([100 * (r["accuracy_a"] - r["accuracy_b"]) for r in tests])
    difference = signed_points(mean) + ("" if n == 1 else f" ± {std:.1f}")
    significant = sum(bool(r["significant_holm_0.05"]) for r in tests)
    ahead = sum(r["accuracy_a"] > r["accuracy_b"] for r in tests)
    return (f"{difference} · {significant}/{n} significant · {ahead}/{n} ahead · "
            f"p ≤ {max(r['p_holm'] for r in tests):.2g}")


def significance_markdown(ctx) -> str:
    """One row per task and reference model (A), one column per compared model (B), classic ones first as in the
    per-class table: the accuracy difference, in how many seeds the exact McNemar test is significant after
    Holm's correction over the task's comparisons, and the largest adjusted p."""
    inputs, split = ctx.inputs, ctx.inputs.settings.headline_split
    rows = [r for r in ctx.tables.significance_rows if r["split"] == split]
    if not rows:
        return f"No {inputs.settings.reference_model or 'reference model'} cells to compare against."
    groups = _significance_groups(rows)
    tasks = list(dict.fromkeys(task for task, _, _ in groups))
    compared = [m for m in _compared(inputs, tasks) if any(b == m for _, _, b in groups)]
    peers = {m for t in tasks for m in inputs.peers(t)}
    lines = [f"Exact McNemar test of the reference model (A) against each other model (B, a column) on the same "
             f"{split} images, one test per seed; p adjusted by Holm's method over the task's comparisons (all of "
             "A's tests of that task and seed). Each cell: A − B in accuracy points"
             + (" (mean ± seed sd)" if several_seeds(inputs.cells) else "") + "; in how many of the seeds both "
             "have the test is significant (Holm), adjusted p < 0.05; in how many A is more accurate; the largest "
             f"adjusted p. Every test, with its seed, raw p and the {inputs.settings.selection_split} split's: "
             "`significance.csv`.", "",
             "| " + " | ".join(["task", "A", *(f"A − {m}" + (" (peer)" if m in peers else "") for m in compared)])
             + " |", "|" + "---|" * (2 + len(compared))]
    for task, model_a in dict.fromkeys((task, a) for task, a, _ in groups):
        cells = [_significance_cell(groups.get((task, model_a, m))) for m in compared]
        lines.append("| " + " | ".join([task, model_a, *cells]) + " |")
    return "\n".join(lines)


def gain_text(row: dict) -> str:
    """A per-class gain in points: "+12.1 ± 1.0" over seeds, "+12.1" for one seed."""
    if len(row["seeds"]) == 1:
        return signed_points(100 * row["gain_mean"])
    return f"{signed_points(100 * row['gain_mean'])} ± {100 * row['gain_std']:.1f}"


def top_rates(class_names, rates: np.ndarray, top: int) -> list[tuple[str, str, float]]:
    """The `top` largest off-diagonal shares of a row-normalised confusion matrix: (true, predicted, share)."""
    off = [(float(rates[i, j]), i, j) for i in range(len(class_names)) for j in range(len(class_names)) if i != j]
    ranked = sorted(off, key=lambda item: (-item[0], item[1], item[2]))[:top]
    return [(class_names[i], class_names[j], share) for share, i, j in ranked if share > 0]


def _seed_list_text(inputs, task: str, model: str) -> str:
    seeds = [cell.seed for cell in inputs.cells if cell.task == task and cell.model == model]
    text = ", ".join(map(str, seeds))
    return text + " (identical)" if inputs.is_deterministic(task, model) else text


def confusions_markdown(ctx) -> str:
    """Each model's three largest confusions, as shares of the true class averaged over its seeds (one row per
    model: identical seeds are one), for the tasks of more than two classes: a two-class task's only confusions
    are 100% minus each class's recall, in the per-class table. Every seed's ranked counts are in
    confusions.csv."""
    two_class = list(dict.fromkeys(task for (task, _), (names, _) in ctx.tables.confusion_rates.items()
                                   if len(names) == 2))
    lines = ["Share of the true class predicted as another, mean over the model's seeds; every seed's top "
             f"{ctx.inputs.settings.top_confusions} with counts: `confusions.csv`"
             + (f" ({', '.join(two_class)}: two classes, each confused only with the other, 100% minus its recall "
                "in the per-class table)" if two_class else "") + ".", "",
             "| task | model | seeds | top confusions (true→predicted, % of the true class) |", "|---|---|---|---|"]
    for (task, model), (names, rates) in ctx.tables.confusion_rates.items():
        if task in two_class:
            continue
        pairs = ", ".join(f"{t}→{p} {pct(share)}%" for t, p, share in top_rates(names, rates, 3))
        lines.append(f"| {task} | {model} | {_seed_list_text(ctx.inputs, task, model)} | {pairs or '–'} |")
    return "\n".join(lines)


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
