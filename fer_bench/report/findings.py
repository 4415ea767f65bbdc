"""summary.md's findings: the reference model's accuracy against every other model, seed ensembles, where it gains
and what it still confuses, its cost and its saliency, in sentences made from the computed tables."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_bench.report.markdown import (
    confidence_text,
    gain_text,
    metric_rows_by_model,
    p_value_text,
    pct,
    signed_points,
    spread,
)
from fer_bench.report.seeds import ensemble_of, is_ensemble, several_seeds
from fer_bench.settings import REFERENCE_MODEL


def findings_markdown(ctx) -> str:
    """A few sentences that the tables support, generated from them: the reference model's accuracy gain over
    each other model per task (with the exact McNemar test, per seed or summarised over seeds), what averaging
    the seeds buys, the classes where it gains most and least, the confusions that remain, what each model costs
    to fit, and what the figures add (the saliency maps)."""
    settings = ctx.inputs.settings
    all_rows = metric_rows_by_model(ctx.tables.metric_rows, settings.headline_split)
    private = {key: rows for key, rows in all_rows.items() if not is_ensemble(rows[0])}
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
    sentences += _ensemble_sentences(all_rows, accuracy)
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


def _test_text(ctx, task: str, other: str, first_seed) -> str:
    """The exact McNemar test of the reference against `other`: over seeds when they share several, else the
    first seed's p."""
    split = ctx.inputs.settings.headline_split
    over_seeds = [r for r in ctx.tables.significance_summary_rows
                  if r["task"] == task and r["model_b"] == other and r["split"] == split]
    if over_seeds:
        r, n = over_seeds[0], len(over_seeds[0]["seeds"])
        direction = "" if r["n_a_better"] == n else f", the {r['model_a']} more accurate in {r['n_a_better']}/{n}"
        return f" (significant in {r['n_significant']}/{n} seeds{direction}, largest {p_value_text(r['max_p_value'])})"
    tests = [r for r in ctx.tables.significance_rows if r["task"] == task and r["model_b"] == other
             and r["split"] == split and r["seed"] == first_seed]
    return f" ({p_value_text(tests[0]['p_value'])})" if tests else ""


def _accuracy_sentences(ctx, private, models, accuracy) -> list[str]:
    """Per task: the reference's accuracy and its gain over each other model, with the McNemar test (± std over
    seeds where a model has several)."""
    split = ctx.inputs.settings.headline_split
    significance_rows = ctx.tables.significance_rows
    first_seed = min(r["seed"] for r in significance_rows) if significance_rows else None

    def accuracy_text(task, model):
        return f"{spread(r['accuracy'] for r in private[(task, model)])}%"

    def gain_text(task, ref, other):
        over_seeds = [r for r in ctx.tables.significance_summary_rows
                      if r["task"] == task and r["model_b"] == other and r["split"] == split]
        gain = signed_points(accuracy(task, ref) - accuracy(task, other))
        return gain + (f" ± {100 * over_seeds[0]['difference_std']:.1f}" if over_seeds else "")

    sentences = []
    for task in dict.fromkeys(task for task, _ in private):
        ref = ctx.inputs.reference(task)
        if (task, ref) not in private:
            continue
        parts = [f"{gain_text(task, ref, b)} points over {b} ({accuracy_text(task, b)})"
                 f"{_test_text(ctx, task, b, first_seed)}"
                 for b in models if b != ref and (task, b) in private]
        if parts:
            sentences.append(f"**{task}**: the {ref} reaches {accuracy_text(task, ref)} "
                             f"{split} accuracy, " + " and ".join(parts) + ".")
    if ctx.tables.significance_summary_rows:
        sentences.append(f"(p: exact McNemar test on the same {split} images, one test per seed, significant: "
                         "p < 0.05; ±: standard deviation over seeds.)")
    elif significance_rows:
        sentences.append(f"(p: exact McNemar test on the same {split} images, seed {first_seed}.)")
    return sentences


def _ensemble_sentences(rows_by_model: dict, accuracy) -> list[str]:
    """What averaging each model's seeds buys: the seed ensemble's accuracy against the mean of its seeds."""
    parts = defaultdict(list)
    for (task, _), rows in rows_by_model.items():
        if ensemble := ensemble_of(rows[0]):
            model = ensemble.model
            parts[task].append(f"{model} {pct(rows[0]['accuracy'])}% "
                               f"({signed_points(100 * rows[0]['accuracy'] - accuracy(task, model))})")
    if not parts:
        return []
    text = "; ".join(f"{task} " + ", ".join(items) for task, items in parts.items())
    return [f"Seed ensembles (the average of a model's seeds' stored probabilities, no training; accuracy, and in "
            f"points against the mean of its seeds): {text}."]


def _mean_recall_gains(ctx, task: str, ref: str, strongest: str) -> list[tuple[float, str]] | None:
    """(gain in points, class) of the reference's mean recall over the strongest model's, None if either lacks
    the task."""
    split = ctx.inputs.settings.headline_split
    recall = defaultdict(list)
    for r in ctx.tables.per_class_rows:
        if r["task"] == task and r["split"] == split:
            recall[(r["model"], r["class"])].append(r["recall"])
    classes = list(dict.fromkeys(c for _, c in recall))
    if (ref, classes[0]) not in recall or (strongest, classes[0]) not in recall:
        return None
    return [(100 * (np.mean(recall[(ref, c)]) - np.mean(recall[(strongest, c)])), c) for c in classes]


def _seed_gain_sentences(gain_rows: list[dict], task: str, ref: str, strongest: str, level: str) -> list[str]:
    """Per-class gains over seeds: most and least (mean ± std), and those that hold in every seed."""
    ordered = sorted(gain_rows, key=lambda r: (r["gain_mean"], r["class"]), reverse=True)
    best = ", ".join(f"{r['class']} ({gain_text(r)})" for r in ordered[:3])
    worst = ", ".join(f"{r['class']} ({gain_text(r)})" for r in ordered[-2:][::-1])
    held = {side: ", ".join(f"{r['class']} ({gain_text(r)})" for r in ordered if r["holds"] == side) or "none"
            for side in ("gain", "loss")}
    n = len(gain_rows[0]["seeds"])
    return [f"Where the {ref} gains ({task}, recall vs {strongest}, the strongest baseline, in points, mean ± std "
            f"over {n} seeds): most on {best}; least on {worst}.",
            f"Per-class differences that hold in every seed (each of the {n} seeds' paired bootstrap {level} interval "
            f"excludes 0 on the same side): gains on {held['gain']}; losses on {held['loss']}."]


def _gain_sentences(ctx, task: str, ref: str, strongest: str) -> list[str]:
    """Where the reference gains most and least in recall over the strongest other model (over seeds when they
    share several), and its remaining confusions, on the headline task."""
    split = ctx.inputs.settings.headline_split
    gain_rows = [r for r in ctx.tables.class_gain_rows
                 if r["task"] == task and r["model_a"] == ref and r["model_b"] == strongest]
    sentences = []
    if gain_rows:
        sentences += _seed_gain_sentences(gain_rows, task, ref, strongest, confidence_text(ctx.inputs.settings))
    elif (mean_gains := _mean_recall_gains(ctx, task, ref, strongest)) is not None:
        gains = sorted(mean_gains, reverse=True)
        best = ", ".join(f"{c} ({signed_points(g)})" for g, c in gains[:3])
        worst = ", ".join(f"{c} ({signed_points(g)})" for g, c in gains[-2:][::-1])
        sentences.append(f"Where the {ref} gains ({task}, recall vs {strongest}, the "
                         f"strongest baseline, in points): most on {best}; least on {worst}.")
    confusion_rows = ctx.tables.confusion_rows
    first_seed = min(r["seed"] for r in confusion_rows) if confusion_rows else None
    confusions = [r for r in confusion_rows if r["task"] == task and r["model"] == ref
                  and r["split"] == split and r["seed"] == first_seed]
    if confusions:
        pairs = ", ".join(f"{r['true']}→{r['predicted']} ({pct(r['rate_of_true'])}% of {r['true']})"
                          for r in confusions[:3])
        where = f"{task}, seed {first_seed}" if several_seeds(ctx.inputs.cells) else task
        sentences.append(f"Confusions that remain for the {ref} ({where}): {pairs}.")
    return sentences
