"""The markdown of summary.md's table sections, made from the computed tables (fer_bench.report.tables).

Every function takes the `SectionContext` (inputs, tables, figures) and returns the section's markdown, or None
when the section has nothing to say; fer_bench.report.sections lists them in order.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_bench import __version__
from fer_bench.settings import REFERENCE_MODEL


def pct(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def metric_rows_by_model(metric_rows: list[dict], split: str, subset: str = "all") -> dict[tuple, list[dict]]:
    """metrics.csv rows of one split and subset by (task, model), seeds in a list."""
    grouped = defaultdict(list)
    for row in metric_rows:
        if row["split"] == split and row["subset"] == subset:
            grouped[(row["task"], row["model"])].append(row)
    return grouped


def mean_std(rows: list[dict], key: str) -> str:
    """One seed: the value and its bootstrap interval; several: mean ± std over seeds."""
    values = np.array([r[key] for r in rows], dtype=float)
    if len(values) == 1:
        ci = (rows[0].get(f"{key}_ci_low"), rows[0].get(f"{key}_ci_high"))
        if ci[0] is not None:
            return f"{pct(values[0])} [{pct(ci[0])}, {pct(ci[1])}]"
        return pct(values[0])
    return f"{pct(values.mean())} ± {pct(values.std(ddof=1))} ({len(values)} seeds)"


def headline_markdown(ctx) -> str:
    split = ctx.inputs.settings.headline_split
    private = metric_rows_by_model(ctx.tables.metric_rows, split)
    public = metric_rows_by_model(ctx.tables.metric_rows, ctx.inputs.settings.selection_split)
    lines = [
        "| task | model | accuracy % [95% CI] | macro-F1 % [95% CI] | ROC AUC (macro) | log loss | ECE | "
        "PublicTest acc % | fit time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, model), rows in private.items():
        fit = np.mean([r["fit_seconds"] for r in rows])
        lines.append(
            f"| {task} | {model} | {mean_std(rows, 'accuracy')} | {mean_std(rows, 'f1_macro')} | "
            f"{np.mean([r['roc_auc_macro'] for r in rows]):.3f} | {np.mean([r['log_loss'] for r in rows]):.3f} | "
            f"{np.mean([r['ece'] for r in rows]):.3f} | "
            f"{pct(np.mean([r['accuracy'] for r in public[(task, model)]]))} | {fit:.1f} s |")
    floor_text = "; ".join(
        f"{r['task']}: majority ({r['majority_class']}) {pct(r['majority_accuracy'])}%, chance "
        f"{pct(r['chance_accuracy'])}%" for r in ctx.tables.floor_rows if r["split"] == split)
    lines += ["", f"Floors on {split}: {floor_text}."]
    clean = metric_rows_by_model(ctx.tables.metric_rows, split, "clean")
    if clean:
        lines += ["", f"**Leakage check.** {split} accuracy on the *clean* subset (test images with no "
                  "duplicate in Training, from `fer-bench data audit`) vs all images:"]
        parts = []
        for (task, model), rows in clean.items():
            parts.append(f"{task}/{model} {pct(rows[0]['accuracy'])}% on {rows[0]['n']} clean vs "
                         f"{pct(private[(task, model)][0]['accuracy'])}% on all")
        lines.append("; ".join(parts) + ".")
    return "\n".join(lines)


def per_class_markdown(ctx) -> str:
    split = ctx.inputs.settings.headline_split
    per_class_rows = ctx.tables.per_class_rows
    blocks = []
    tasks = list(dict.fromkeys(r["task"] for r in per_class_rows))
    for task in tasks:
        rows = [r for r in per_class_rows if r["task"] == task and r["split"] == split]
        models = list(dict.fromkeys(r["model"] for r in rows))
        classes = list(dict.fromkeys(r["class"] for r in rows))
        header = "| class | support | " + " | ".join(f"{m} recall | {m} F1" for m in models) + " |"
        lines = [f"**{task}** ({split}; recall and F1 in %, mean over seeds)", "", header,
                 "|---|---|" + "---|---|" * len(models)]
        for cls in classes:
            cells = []
            support = next(r["support"] for r in rows if r["class"] == cls)
            for m in models:
                sel = [r for r in rows if r["class"] == cls and r["model"] == m]
                cells.append(f"{pct(np.mean([r['recall'] for r in sel]))} | {pct(np.mean([r['f1'] for r in sel]))}")
            lines.append(f"| {cls} | {int(support)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def significance_markdown(ctx) -> str:
    rows = [r for r in ctx.tables.significance_rows if r["split"] == ctx.inputs.settings.headline_split]
    if not rows:
        return f"No {ctx.inputs.settings.reference_model or 'reference model'} cells to compare against."
    lines = ["| task | seed | comparison | acc A % | acc B % | A right, B wrong | A wrong, B right | "
             "p (exact McNemar) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seed']} | {r['model_a']} vs {r['model_b']} | {pct(r['accuracy_a'])} | "
                     f"{pct(r['accuracy_b'])} | {r['a_right_b_wrong']} | {r['a_wrong_b_right']} | "
                     f"{r['p_value']:.2g} |")
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


# --- findings -------------------------------------------------------------------------------------------------

def _signed(points: float) -> str:
    return f"{points:+.1f}"


def _p_text(p: float) -> str:
    return "p < 1e-6" if p < 1e-6 else f"p = {p:.2g}"


def findings_markdown(ctx) -> str:
    """A few sentences that the tables support, generated from them: the reference model's accuracy gain over
    each other model per task (with the exact McNemar test), the classes where it gains most and least, the
    confusions that remain, what each model costs to fit, and what the figures add (the saliency maps)."""
    settings = ctx.inputs.settings
    private = metric_rows_by_model(ctx.tables.metric_rows, settings.headline_split)
    models = list(dict.fromkeys(model for _, model in private))
    tasks = list(dict.fromkeys(task for task, _ in private))
    compared = [t for t in tasks if ctx.inputs.reference(t) and any(
        (t, m) in private for m in models if m != ctx.inputs.reference(t))]
    if not compared:
        ref = settings.reference_model or "reference model"
        return f"*No findings: they compare the {ref} with the baselines, and the grid lacks one side.*"

    def accuracy(task, model):
        return 100 * float(np.mean([r["accuracy"] for r in private[(task, model)]]))

    sentences = [] if ctx.inputs.reference_is_default else [_reference_sentence(ctx, tasks)]
    sentences += _accuracy_sentences(ctx, private, models, accuracy)
    headline_task = tasks[0]
    ref = ctx.inputs.reference(headline_task)
    others = [m for m in models if m != ref and (headline_task, m) in private]
    if ref and others:
        strongest = max(others, key=lambda b: accuracy(headline_task, b))
        sentences += _gain_sentences(ctx, headline_task, ref, strongest)
    costs = ", ".join(f"{m} {np.mean([r['fit_seconds'] for r in private[(headline_task, m)]]) / 60:.1f} min"
                      for m in models if (headline_task, m) in private)
    speeds = ", ".join(f"{m} {np.mean([r['predict_images_per_s'] for r in private[(headline_task, m)]]):,.0f}"
                       for m in models if (headline_task, m) in private)
    sentences.append(f"Cost ({headline_task}, this machine): fit time {costs}; batch prediction {speeds} "
                     "images/s (details in the timing section).")
    sentences += ctx.figures.findings
    return "\n".join(f"- {s}" for s in sentences)


def _reference_sentence(ctx, tasks: list[str]) -> str:
    """Which model the comparisons are against, per task, and why."""
    settings = ctx.inputs.settings
    why = ("named with --reference" if settings.reference_model else
           f"no {REFERENCE_MODEL} cells: the most accurate model on {settings.selection_split}")
    per_task = ", ".join(f"{t} {ctx.inputs.reference(t) or '(none)'}" for t in tasks)
    return f"Comparisons are against a reference model ({why}): {per_task}."


def _accuracy_sentences(ctx, private, models, accuracy) -> list[str]:
    """Per task: the reference's accuracy and its gain over each other model, with the McNemar p-value."""
    split = ctx.inputs.settings.headline_split
    significance_rows = ctx.tables.significance_rows
    first_seed = min(r["seed"] for r in significance_rows) if significance_rows else None
    sentences = []
    for task in dict.fromkeys(task for task, _ in private):
        ref = ctx.inputs.reference(task)
        if (task, ref) not in private:
            continue
        parts = []
        for b in models:
            if b == ref or (task, b) not in private:
                continue
            tests = [r for r in significance_rows if r["task"] == task and r["model_b"] == b
                     and r["split"] == split and r["seed"] == first_seed]
            test = f" ({_p_text(tests[0]['p_value'])})" if tests else ""
            parts.append(f"{_signed(accuracy(task, ref) - accuracy(task, b))} points over {b} "
                         f"({accuracy(task, b):.1f}%){test}")
        if parts:
            sentences.append(f"**{task}**: the {ref} reaches {accuracy(task, ref):.1f}% "
                             f"{split} accuracy, " + " and ".join(parts) + ".")
    if significance_rows:
        sentences.append(f"(p: exact McNemar test on the same {split} images, seed {first_seed}.)")
    return sentences


def _gain_sentences(ctx, task: str, ref: str, strongest: str) -> list[str]:
    """Where the reference gains most and least in recall over the strongest other model, and its remaining
    confusions, on the headline task."""
    split = ctx.inputs.settings.headline_split
    recall = defaultdict(list)
    for r in ctx.tables.per_class_rows:
        if r["task"] == task and r["split"] == split:
            recall[(r["model"], r["class"])].append(r["recall"])
    classes = list(dict.fromkeys(c for _, c in recall))
    sentences = []
    if (ref, classes[0]) in recall and (strongest, classes[0]) in recall:
        gains = sorted(((100 * (np.mean(recall[(ref, c)]) - np.mean(recall[(strongest, c)])), c)
                        for c in classes), reverse=True)
        best = ", ".join(f"{c} ({_signed(g)})" for g, c in gains[:3])
        worst = ", ".join(f"{c} ({_signed(g)})" for g, c in gains[-2:][::-1])
        sentences.append(f"Where the {ref} gains ({task}, recall vs {strongest}, the "
                         f"strongest baseline, in points): most on {best}; least on {worst}.")
    confusion_rows = ctx.tables.confusion_rows
    confusions = [r for r in confusion_rows if r["task"] == task and r["model"] == ref
                  and r["split"] == split and r["seed"] == min(r["seed"] for r in confusion_rows)]
    if confusions:
        pairs = ", ".join(f"{r['true']}→{r['predicted']} ({pct(r['rate_of_true'])}% of {r['true']})"
                          for r in confusions[:3])
        sentences.append(f"Confusions that remain for the {ref} ({task}): {pairs}.")
    return sentences


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
    cells = ctx.inputs.cells
    commits = sorted({(c.manifest["code"]["commit"][:10], bool(c.manifest["code"].get("dirty"))) for c in cells})
    machines = sorted({f"{c.manifest['machine']['cpu']} ({c.manifest['machine']['cores']} cores)" for c in cells})
    finished = sorted(c.manifest["finished"] for c in cells)
    dataset = cells[0].manifest["dataset"]
    commit_text = ", ".join(f"`{c}`" + (" (uncommitted changes)" if dirty else "") for c, dirty in commits)
    quick = any(c.manifest.get("quick") for c in cells)
    return (f"Data: **{dataset['name']}** (fingerprint `{dataset['fingerprint']}`). "
            f"Cells computed by fer-bench at commit {commit_text} on {', '.join(machines)}, "
            f"finished between {finished[0]} and {finished[-1]} (UTC)"
            + (", in **--quick** mode (smoke-check configuration, not the benchmark)" if quick else "")
            + f". Tables written by `fer-bench report` {__version__} from the stored predictions in `runs/`.")


def title_markdown(ctx) -> str:
    dataset = ctx.inputs.cells[0].manifest["dataset"]["name"]
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
    "parameters, timings, manifest).")
