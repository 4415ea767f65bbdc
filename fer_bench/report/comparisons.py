"""The markdown of summary.md's comparison tables: the reference model against each other model, per class
(recall gains with their paired intervals), per task (McNemar tests over the seeds), and every model's largest
confusions. Each function takes the `SectionContext` (fer_bench.report.sections) and returns the section's
markdown; the numbers come from the computed tables (fer_bench.report.tables)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fer_bench.report.markdown import confidence_text, pct, signed_points, spread
from fer_bench.report.seeds import distinct_rows, mean_and_std, several_seeds


def _compared(inputs, tasks) -> list[str]:
    """The models compared with the reference in any of `tasks`: the classic ones first, then the peers."""
    classic = [m for t in tasks for m in inputs.classic_rivals(t)]
    peers = [m for t in tasks for m in inputs.peers(t)]
    return list(dict.fromkeys([*classic, *peers]))


def _rival_headers(inputs, tasks, compared: list[str], prefix: str) -> list[str]:
    """The column headings of the compared models, "(peer)" marking the ones that are not classic."""
    peers = {m for t in tasks for m in inputs.peers(t)}
    return [f"{prefix}{m}" + (" (peer)" if m in peers else "") for m in compared]


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
                                *_rival_headers(inputs, tasks, compared, "− ")]) + " |",
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
    lines = [f"Exact McNemar test of the reference model (A) against each other model (B, a column) on the same "
             f"{split} images, one test per seed; p adjusted by Holm's method over the task's comparisons (all of "
             "A's tests of that task and seed). Each cell: A − B in accuracy points"
             + (" (mean ± seed sd)" if several_seeds(inputs.cells) else "") + "; in how many of the seeds both "
             "have the test is significant (Holm), adjusted p < 0.05; in how many A is more accurate; the largest "
             f"adjusted p. Every test, with its seed, raw p and the {inputs.settings.selection_split} split's: "
             "`significance.csv`.", "",
             "| " + " | ".join(["task", "A", *_rival_headers(inputs, tasks, compared, "A − ")]) + " |",
             "|" + "---|" * (2 + len(compared))]
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
