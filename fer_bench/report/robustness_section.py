"""summary.md's robustness section and its finding, written from the robustness tables
(fer_bench.report.robustness): a summary per task and model (clean and mean corrupted accuracy, the corruption
error relative to a classic reference), then per corruption on the first compared task: every model's accuracy,
the reference's lead over the best classic model by severity, the class that collapses first and where the
predictions drift. The accuracy-against-severity figures follow the tables (fer_bench.figures.robustness)."""

from __future__ import annotations

import numpy as np

from fer_bench import outline
from fer_bench.cell_robustness import CLEAN, CLEAN_SEVERITY
from fer_bench.figures import section_markdown
from fer_bench.report.robustness import (
    COLLAPSE_SHARE,
    ModelRobustness,
    class_collapses,
    lead,
    model_robustness,
    spread_points,
)
from fer_bench.report.seeds import mean_and_std
from fer_bench.storage import ROBUSTNESS_FILE

#: a lead that moves by less than this many points between the clean faces and the last severity is "held"
LEAD_MOVES = 1.0


class RobustnessView:
    """The robustness tables of one report, arranged for its sentences and tables."""

    def __init__(self, inputs, tables):
        self.inputs, self.tables = inputs, tables
        self.models = model_robustness(tables.robustness_rows, inputs.identical_seeds)
        #: whether some model has several seeds (the tables then show spreads and a seeds column)
        self.several = any(len(m.seeds) > 1 for m in self.models.values())

    def task_models(self, task: str) -> list[ModelRobustness]:
        return [self.models[(task, m)] for m in self.inputs.task_models(task) if (task, m) in self.models]

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(task for task, _ in self.models))

    def best_classic(self, task: str) -> ModelRobustness | None:
        """The most accurate classic rival on the clean faces, among those with robustness results."""
        rivals = [self.models[(task, m)] for m in self.inputs.classic_rivals(task) if (task, m) in self.models]
        return max(rivals, key=lambda r: r.mean(CLEAN, CLEAN_SEVERITY), default=None)

    def error_reference(self, task: str) -> ModelRobustness | None:
        """The model corruption errors are relative to: the settings' robustness reference where the task has its
        results, else the best classic model."""
        named = self.models.get((task, self.inputs.settings.robustness_reference))
        return named or self.best_classic(task)

    def reference(self, task: str) -> ModelRobustness | None:
        return self.models.get((task, self.inputs.reference(task)))

    def without(self) -> list[str]:
        """The cells stored without robustness.npz, as <task>/<model>/seed<k>."""
        return [f"{c.task}/{c.model}/seed{c.seed}" for c in self.inputs.cells
                if not (c.path / ROBUSTNESS_FILE).is_file()]


def _summary_cell(view: RobustnessView, task: str, m: ModelRobustness) -> str:
    """One model on one task: clean -> mean corrupted accuracy, the corruption error against the task's
    reference and the weakest corruption ("69.8 → 45.1 · CE 92 · eye_band 7.3")."""
    text = f"{spread_points(m.clean())} → {spread_points(m.corrupted())}"
    reference = view.error_reference(task)
    if reference is not None:
        errors = m.errors_relative_to(reference)
        mean, std = mean_and_std(errors)
        text += f" · CE {100 * mean:.0f}" + (f" ± {100 * std:.0f}" if len(errors) > 1 else "")
    weakest = min(m.corruptions, key=lambda c: float(np.mean(m.under(c))))
    return text + f" · {weakest} {100 * float(np.mean(m.under(weakest))):.1f}"


def _summary_table(view: RobustnessView) -> list[str]:
    """One row per model, one column per task (a model missing from a task: "–")."""
    tasks = view.tasks()
    models = list(dict.fromkeys(m.model for task in tasks for m in view.task_models(task)))
    references = [view.error_reference(task) for task in tasks]
    header = ["model", *(f"{task}: clean → corrupted acc % · CE vs {r.model if r else '–'} · weakest (acc %)"
                         for task, r in zip(tasks, references, strict=True))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        cells = [model]
        for task in tasks:
            m = view.models.get((task, model))
            cells.append(_summary_cell(view, task, m) if m is not None else "–")
        if view.several:
            # the cells with robustness results per task (a deterministic model's identical seeds count too)
            seeds = sorted({sum(c.task == t and c.model == model and (c.path / ROBUSTNESS_FILE).is_file()
                                for c in view.inputs.cells) for t in tasks if (t, model) in view.models})
            cells[0] += f" ({'/'.join(map(str, seeds))} seed{'s' if seeds[-1] > 1 else ''})"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _collapse_text(collapse) -> str:
    if collapse.collapsed is None:
        return "none"
    return f"{collapse.collapsed} at {collapse.severity}"


def _corruption_table(view: RobustnessView, task: str) -> list[str]:
    models = view.task_models(task)
    reference, rival = view.reference(task), view.best_classic(task)
    pair = reference is not None and rival is not None and reference is not rival
    header = [f"{task}: corruption", *(f"{m.model} acc %" for m in models)]
    if pair:
        severities = reference.severities
        shown = sorted({severities[0], severities[len(severities) // 2], severities[-1]})
        header += [f"{reference.model} − {rival.model} at severity {' / '.join(map(str, shown))}",
                   f"collapses first: {reference.model}; {rival.model}",
                   f"drift at severity {severities[-1]}: {reference.model}; {rival.model}"]
        collapses = {m.model: class_collapses(view.tables.robustness_class_rows, task, m.model, m.seeds)
                     for m in (reference, rival)}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for corruption in models[0].corruptions:
        cells = [corruption, *(spread_points(m.under(corruption)) for m in models)]
        if pair:
            cells.append(" / ".join(f"{lead(reference, rival, corruption, s):+.1f}" for s in shown))
            ours, theirs = collapses[reference.model][corruption], collapses[rival.model][corruption]
            cells.append(f"{_collapse_text(ours)}; {_collapse_text(theirs)}")
            cells.append(f"{ours.drift_to} {ours.drift_points:+.0f}; {theirs.drift_to} {theirs.drift_points:+.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _missing_sentence(view: RobustnessView) -> str:
    """The sentence closing the intro that names the cells stored without robustness.npz ("" when none)."""
    missing = view.without()
    if not missing:
        return ""
    return (f" *Not in these tables, stored without {ROBUSTNESS_FILE} ({len(missing)}): "
            f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}; `fer-bench robustness` adds it where the "
            "cells' model/ folders are.*")


def robustness_markdown(ctx) -> str | None:
    """The section: None when no cell has robustness results."""
    if not ctx.tables.robustness_rows:
        return None
    view = RobustnessView(ctx.inputs, ctx.tables)
    first = view.tasks()[0]
    n_corruptions, n_severities = len(view.task_models(first)[0].corruptions), len(
        view.task_models(first)[0].severities)
    parts = [f"Each model's accuracy on its task's {ctx.inputs.settings.headline_split} faces under {n_corruptions} "
             f"corruptions at {n_severities} severities (docs/robustness.md; the same corrupted faces for every "
             "model, predicted as the clean ones are). The first table, per model and task: the clean accuracy, the "
             "*corrupted acc* (the mean over every corruption and "
             f"severity{', ± seed sd' if view.several else ''}), the *corruption error* (CE; ImageNet-C's mCE, per "
             "corruption the model's errors summed over the severities divided by the reference's (its seeds' "
             "mean), averaged over the corruptions: "
             "100 is as robust as the reference, lower is better) and the corruption the model does worst under. "
             f"The second table, on {first}: each model's "
             "accuracy per corruption (mean over the severities), the lead in points at the severities named, the "
             f"class whose recall first falls below {COLLAPSE_SHARE:.0%} of its clean recall (*collapses first*, "
             "and at which severity) and the class whose share of the predictions grows most (*drift*, in points). "
             "Every cell's numbers: `robustness.csv`; every class's recall and share of the predictions: "
             "`robustness_per_class.csv`." + _missing_sentence(view), "", *_summary_table(view), "",
             *_corruption_table(view, first)]
    figures = section_markdown(ctx.figures, outline.ROBUSTNESS)
    if figures:
        parts += ["", figures]
    return "\n".join(parts)


def robustness_sentence(inputs, tables, task: str) -> str | None:
    """The finding: on `task`, the reference's mean corrupted accuracy against the best classic model's, its
    corruption error relative to that model, and under which corruptions its lead grows, shrinks or reverses."""
    if not tables.robustness_rows:
        return None
    view = RobustnessView(inputs, tables)
    reference, rival = view.reference(task), view.best_classic(task)
    if reference is None or rival is None or reference is rival:
        return None
    ours, theirs = (100 * float(np.mean(m.corrupted())) for m in (reference, rival))
    error = float(np.mean(reference.errors_relative_to(rival)))
    last = reference.severities[-1]
    clean_lead = lead(reference, rival, CLEAN, CLEAN_SEVERITY)
    moves = {c: lead(reference, rival, c, last) - clean_lead for c in reference.corruptions}
    text = (f"**Robustness** ({task}, {len(moves)} corruptions × {len(reference.severities)} severities, mean "
            f"accuracy): {reference.model} {ours:.1f}% vs {rival.model} {theirs:.1f}%, {reference.model} − "
            f"{rival.model} {ours - theirs:+.1f} points ({clean_lead:+.1f} on clean faces); its corruption error is "
            f"{100 * error:.0f}% of {rival.model}'s")
    grows = max(moves, key=moves.get)
    clauses = []
    if moves[grows] >= LEAD_MOVES:
        clauses.append(f"grows most under {grows} ({clean_lead + moves[grows]:+.1f})")
    reversed_ = [c for c in moves if clean_lead > 0 and clean_lead + moves[c] < 0]
    held = {c: m for c, m in moves.items() if c not in reversed_}
    shrinks = min(held, key=held.get) if held else None
    if shrinks is not None and held[shrinks] <= -LEAD_MOVES:
        clauses.append(f"shrinks most under {shrinks} ({clean_lead + moves[shrinks]:+.1f})")
    if reversed_:
        clauses.append("reverses under " + ", ".join(
            f"{c} ({clean_lead + moves[c]:+.1f})" for c in sorted(reversed_, key=moves.get)))
    if clauses:
        text += f"; at severity {last} the difference " + ", ".join(clauses)
    return text + "."
