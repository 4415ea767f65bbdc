"""The markdown of summary.md's table sections, made from the computed tables (fer_bench.report.tables).

Every function takes the `SectionContext` (inputs, tables, figures) and returns the section's markdown, or None
when the section has nothing to say; fer_bench.report.sections lists them in order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_bench import __version__
from fer_bench.errors import FerBenchError
from fer_bench.metrics import Metric, headline_metrics
from fer_bench.models import model_description
from fer_bench.report.inputs import cell_provenance
from fer_bench.report.seeds import cells_by_model, ensemble_of, is_ensemble, mean_and_std, several_seeds


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


def _seeds_cell(rows: list[dict]) -> str:
    """The seeds column of a multi-seed table: how many seeds a row summarises, or averages (an ensemble)."""
    if ensemble := ensemble_of(rows[0]):
        return f"{len(ensemble.seeds)} averaged"
    return str(len(rows))


def _fit_text(rows: list[dict]) -> str:
    """Fit time: mean ± std over seeds; a seed ensemble's is the total of its seeds' fits."""
    values = [r["fit_seconds"] for r in rows]
    if ensemble := ensemble_of(rows[0]):
        total = rows[0]["fit_seconds"]
        return "–" if total is None else f"{total:.1f} s ({len(ensemble.seeds)} fits)"
    return f"{spread(values, _one_decimal)} s"


def seeds_note(cells, settings) -> str:
    """The headline's sentence on the seeds: how many per (task, model), and what the spreads and ensembles are."""
    counts = sorted({len(group) for group in cells_by_model(cells).values()})
    seeds = ", ".join(str(seed) for seed in sorted({cell.seed for cell in cells}))
    how_many = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} seeds (column seeds)"
    with_interval = [metric.label for metric in headline_metrics() if metric.interval]
    intervals = (f"one seed's and a seed ensemble's {joined(with_interval)} have their "
                 f"{confidence_text(settings)} bootstrap interval in brackets. " if with_interval else "")
    return (f"**{how_many}** per task and model (seeds {seeds}). With several seeds a number is the mean ± "
            "standard deviation over seeds (n − 1; each seed's bootstrap interval is in `metrics.csv`); "
            f"{intervals}A row *model (seed ensemble, n)* scores the average of the n seeds' stored probabilities "
            "(nothing is trained; its fit time is the n fits together); `metrics.csv` holds it with seed "
            "`ensemble`.")


def _headline_row(task: str, model: str, rows: list[dict], public_rows: list[dict], several: bool) -> str:
    values = [*(metric_text(rows, metric, with_count=False) for metric in headline_metrics()),
              spread(r["accuracy"] for r in public_rows), _fit_text(rows)]
    return "| " + " | ".join([task, model, *([_seeds_cell(rows)] if several else []), *values]) + " |"


def _headline_header(settings, several: bool) -> list[str]:
    """The headline table's heading lines: one column per headline metric (with "[95% CI]" where one seed's
    interval is shown), then the selection split's accuracy and the fit time."""
    interval = f" [{confidence_text(settings)} CI]"
    metrics = [metric.header + (interval if metric.interval and not several else "")
               for metric in headline_metrics()]
    columns = ["task", "model", *(["seeds"] if several else []), *metrics,
               f"{settings.selection_split} acc %", "fit time"]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


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


def headline_markdown(ctx) -> str:
    split = ctx.inputs.settings.headline_split
    several = several_seeds(ctx.inputs.cells)
    private = metric_rows_by_model(ctx.tables.metric_rows, split)
    public = metric_rows_by_model(ctx.tables.metric_rows, ctx.inputs.settings.selection_split)
    lines = [seeds_note(ctx.inputs.cells, ctx.inputs.settings), ""] if several else []
    lines += _headline_header(ctx.inputs.settings, several)
    for (task, model), rows in private.items():
        lines.append(_headline_row(task, model, rows, public[(task, model)], several))
    floor_text = "; ".join(
        f"{r['task']}: majority ({r['majority_class']}) {pct(r['majority_accuracy'])}%, chance "
        f"{pct(r['chance_accuracy'])}%" for r in ctx.tables.floor_rows if r["split"] == split)
    lines += ["", f"Floors on {split}: {floor_text}."]
    notes = _model_notes(model for (_, model), rows in private.items() if not is_ensemble(rows[0]))
    if notes:
        lines += ["", *notes]
    clean = metric_rows_by_model(ctx.tables.metric_rows, split, "clean")
    if clean:
        lines += ["", f"**Leakage check.** {split} accuracy on the *clean* subset (test images with no "
                  "duplicate in Training or in the other test split, from `fer-bench data audit`) vs all images"
                  + (" (means over seeds)" if several else "") + ":"]
        parts = []
        for (task, model), rows in clean.items():
            parts.append(f"{task}/{model} {pct(np.mean([r['accuracy'] for r in rows]))}% on {rows[0]['n']} clean "
                         f"vs {pct(np.mean([r['accuracy'] for r in private[(task, model)]]))}% on all")
        lines.append("; ".join(parts) + ".")
    return "\n".join(lines)


def _seed_counts_text(counts: dict[str, int]) -> str:
    """"3 seeds" when every model has as many, else "seeds: cnn 3, hog_svm 2"."""
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values()))} seeds"
    return "seeds: " + ", ".join(f"{model} {n}" for model, n in counts.items())


def per_class_markdown(ctx) -> str:
    split = ctx.inputs.settings.headline_split
    several = several_seeds(ctx.inputs.cells)
    per_class_rows = ctx.tables.per_class_rows
    blocks = []
    tasks = list(dict.fromkeys(r["task"] for r in per_class_rows))
    for task in tasks:
        rows = [r for r in per_class_rows if r["task"] == task and r["split"] == split]
        models = list(dict.fromkeys(r["model"] for r in rows))
        classes = list(dict.fromkeys(r["class"] for r in rows))
        header = "| class | support | " + " | ".join(f"{m} recall | {m} F1" for m in models) + " |"
        if several:
            counts = {m: len({r["seed"] for r in rows if r["model"] == m}) for m in models}
            caption = f"**{task}** ({split}; recall and F1 in %, mean ± std over {_seed_counts_text(counts)})"
        else:
            caption = f"**{task}** ({split}; recall and F1 in %, mean over seeds)"
        lines = [caption, "", header, "|---|---|" + "---|---|" * len(models)]
        for cls in classes:
            cells = []
            support = next(r["support"] for r in rows if r["class"] == cls)
            for m in models:
                sel = [r for r in rows if r["class"] == cls and r["model"] == m]
                cells.append(f"{spread(r['recall'] for r in sel)} | {spread(r['f1'] for r in sel)}")
            lines.append(f"| {cls} | {int(support)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def significance_summary_markdown(summary_rows: list[dict], headline: str) -> str:
    """The seed-level table of the exact McNemar tests: the headline split first, then the selection split."""
    ordered = sorted(summary_rows, key=lambda r: r["split"] != headline)
    lines = ["Over seeds: in how many seeds the exact McNemar test finds the difference significant (p < 0.05), in "
             "how many model A is the more accurate, the largest p of the seeds, and A − B in accuracy points "
             "(mean ± std over seeds). The selection split is listed too, for reference; each seed's test is "
             "below and in `significance.csv`.", "",
             "| task | split | comparison | seeds | significant (p < 0.05) | A more accurate | A − B (points) | "
             "largest p |", "|---|---|---|---|---|---|---|---|"]
    for r in ordered:
        n = len(r["seeds"])
        lines.append(f"| {r['task']} | {r['split']} | {r['model_a']} vs {r['model_b']} | "
                     f"{', '.join(map(str, r['seeds']))} | {r['n_significant']}/{n} | {r['n_a_better']}/{n} | "
                     f"{signed_points(100 * r['difference_mean'])} ± {100 * r['difference_std']:.1f} | "
                     f"{r['max_p_value']:.2g} |")
    return "\n".join(lines)


def significance_markdown(ctx) -> str:
    split = ctx.inputs.settings.headline_split
    rows = [r for r in ctx.tables.significance_rows if r["split"] == split]
    if not rows:
        return f"No {ctx.inputs.settings.reference_model or 'reference model'} cells to compare against."
    lines = []
    if ctx.tables.significance_summary_rows:
        lines += [significance_summary_markdown(ctx.tables.significance_summary_rows, split), "",
                  f"Per seed ({split}):", ""]
    lines += ["| task | seed | comparison | acc A % | acc B % | A right, B wrong | A wrong, B right | "
              "p (exact McNemar) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seed']} | {r['model_a']} vs {r['model_b']} | {pct(r['accuracy_a'])} | "
                     f"{pct(r['accuracy_b'])} | {r['a_right_b_wrong']} | {r['a_wrong_b_right']} | "
                     f"{r['p_value']:.2g} |")
    return "\n".join(lines)


def gain_text(row: dict) -> str:
    """A per-class gain over seeds in points: "+12.1 ± 1.0"."""
    return f"{signed_points(100 * row['gain_mean'])} ± {100 * row['gain_std']:.1f}"


def class_gains_markdown(ctx) -> str | None:
    """The reference's per-class recall gain over each other model across seeds (None with one seed)."""
    rows = ctx.tables.class_gain_rows
    if not rows:
        return None
    lines = [f"The reference model's recall minus the other model's, per class, on {ctx.inputs.settings.headline_split}"
             ", in points: mean ± std over the seeds both models have, and each seed's value. A gain (or loss) "
             f"*holds in every seed* when each seed's paired bootstrap {confidence_text(ctx.inputs.settings)} "
             "interval (the same resampled images score both models) excludes 0 on the same side.", "",
             "| task | comparison | class | seeds | recall gain (points) | per seed | holds in every seed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        holds = f"yes, {r['holds']}" if r["holds"] else "no"
        lines.append(f"| {r['task']} | {r['model_a']} vs {r['model_b']} | {r['class']} | "
                     f"{', '.join(map(str, r['seeds']))} | {gain_text(r)} | "
                     f"{', '.join(signed_points(100 * g) for g in r['gains'])} | {holds} |")
    return "\n".join(lines)


def confusions_markdown(ctx) -> str:
    rows = [r for r in ctx.tables.confusion_rows if r["split"] == ctx.inputs.settings.headline_split
            and r["rank"] <= 3]
    grouped = defaultdict(list)
    for r in rows:
        grouped[(r["task"], r["model"], r["seed"])].append(f"{r['true']}→{r['predicted']} {pct(r['rate_of_true'])}%")
    lines = ["| task | model | seed | top confusions (true→predicted, % of the true class) |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {s} | {', '.join(v)} |" for (t, m, s), v in grouped.items()]
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


def selection_markdown(ctx) -> str:
    """One line per cell: the hyper-parameters, epoch and test-time views it chose on PublicTest, and their
    PublicTest accuracy (PrivateTest played no part)."""
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
    lines = [legend + ".", "",
             "| task | model | seed | chosen on PublicTest | PublicTest accuracy (%) |", "|---|---|---|---|---|"]
    for cell in ctx.inputs.cells:
        selected = (cell.params or {}).get("selected") or {}
        accuracy = stored_validation_accuracy(cell.params or {})
        lines.append(f"| {cell.task} | {cell.model} | {cell.seed} | {_selection_text(selected) or '–'} | "
                     f"{pct(accuracy) if accuracy is not None else '–'} |")
    return "\n".join(lines)


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
    "`significance.csv`, `floors.csv`, `timing.csv`, `summary.tex`, `figures/`, `audit.md` and `audit.csv` "
    "(from `fer-bench data audit`), `runs/<task>/<model>/seed<k>/` (stored predictions, chosen "
    "parameters, timings, saliency maps, manifest).")
