"""summary.md's findings: the answer first (the reference model, by default the CNN, against the best classic
model per task, where it gains and loses most per class, which confusions every model shares and which it
removes, its lead on the clean subset and under corruptions), then its peers (models that are not classic), its
cost and its saliency, in at most MAX_FINDINGS sentences made from the computed tables.

"Classic" is what the model registry says (fer_bench.models.ModelSpec.family, through ReportInputs.classic_rivals):
a pretrained outside network is a peer, never the CNN's classic rival.
"""

from __future__ import annotations

import numpy as np

from fer_bench.models import NETWORK, PRETRAINED, model_family
from fer_bench.provenance import machine_label
from fer_bench.report.comparisons import gain_text, top_rates
from fer_bench.report.markdown import (
    confidence_text,
    joined,
    metric_rows_by_model,
    pct,
    signed_points,
    spread,
)
from fer_bench.report.robustness_section import robustness_sentence
from fer_bench.report.seeds import distinct_rows, is_ensemble, several_seeds
from fer_bench.settings import REFERENCE_MODEL

#: the most bullets the findings hold (the summary opens with the headline table and these)
MAX_FINDINGS = 8
#: a confusion the reference "removes": its share of the true class is at most this fraction of every classic
#: model's
REMOVED_FRACTION = 0.5
#: confusions per model compared (its largest shares of the true class)
TOP_CONFUSIONS = 5


def findings_markdown(ctx) -> str:
    """At most MAX_FINDINGS bullets the tables support, then one line of notes on the numbers' notation."""
    settings = ctx.inputs.settings
    private = {key: rows for key, rows in metric_rows_by_model(ctx.tables.metric_rows, settings.headline_split)
               .items() if not is_ensemble(rows[0])}
    tasks = list(dict.fromkeys(task for task, _ in private))
    compared = [t for t in tasks if ctx.inputs.reference(t) and (t, ctx.inputs.reference(t)) in private
                and len(ctx.inputs.task_models(t)) > 1]
    if not compared:
        ref = settings.reference_model or "reference model"
        return f"*No findings: they compare the {ref} with the other models, and the grid lacks one side.*"
    answer = Answer(ctx, private)
    # the peers (not classic) close the accuracy bullet: beside the answer, not a bullet of their own
    bullets = [" ".join(filter(None, [answer.accuracy_sentence(compared), answer.peer_sentence(compared)]))]
    bullets += answer.class_sentences(compared)
    bullets += [answer.confusion_sentence(compared[0]), answer.clean_sentence(compared),
                robustness_sentence(ctx.inputs, ctx.tables, compared[0]), answer.cost_sentence(compared[0])]
    bullets += ctx.figures.findings
    bullets = [b for b in bullets if b][:MAX_FINDINGS]
    return "\n".join(f"- {b}" for b in bullets) + "\n\n" + answer.notes()


class Answer:
    """The sentences of the findings, from the report's tables."""

    def __init__(self, ctx, private: dict):
        self.ctx, self.inputs, self.private = ctx, ctx.inputs, private
        self.split = ctx.inputs.settings.headline_split

    # --- numbers ------------------------------------------------------------------------------------------------

    def rows(self, task: str, model: str) -> list[dict]:
        return distinct_rows(self.private[(task, model)], self.inputs.is_deterministic(task, model))

    def accuracy(self, task: str, model: str) -> float:
        return 100 * float(np.mean([r["accuracy"] for r in self.private[(task, model)]]))

    def accuracy_text(self, task: str, model: str) -> str:
        return f"{spread(r['accuracy'] for r in self.rows(task, model))}%"

    def rivals(self, task: str) -> list[str]:
        """The classic models of the task, the reference's rivals in the answer; every other model when the
        registry names none classic (the answer then says so)."""
        return self.inputs.classic_rivals(task) or self.inputs.peers(task)

    def best_rival(self, task: str) -> str:
        return max(self.rivals(task), key=lambda m: (self.accuracy(task, m), -self.rivals(task).index(m)))

    def rival_kind(self, task: str) -> str:
        return "classic model" if self.inputs.classic_rivals(task) else "other model (none is registered classic)"

    def tests(self, task: str, other: str) -> list[dict]:
        return [r for r in self.ctx.tables.significance_rows
                if r["task"] == task and r["model_b"] == other and r["split"] == self.split]

    def paired_leads(self, task: str, other: str, subset: str = "all") -> list[float]:
        """The reference's accuracy minus `other`'s in points, one per seed both have (the paired comparison the
        McNemar tests make), on all images of the headline split or its clean subset."""
        rows = metric_rows_by_model(self.ctx.tables.metric_rows, self.split, subset)
        ref = self.inputs.reference(task)
        accuracy = {model: {r["seed"]: r["accuracy"] for r in rows.get((task, model), []) if not is_ensemble(r)}
                    for model in (ref, other)}
        return [100 * (accuracy[ref][seed] - accuracy[other][seed]) for seed in accuracy[ref]
                if seed in accuracy[other]]

    def lead_text(self, task: str, other: str, subset: str = "all") -> str:
        """The reference's accuracy lead over `other` in points, mean ± seed sd over the seeds both have."""
        leads = self.paired_leads(task, other, subset)
        if len(leads) > 1:
            return f"{signed_points(np.mean(leads))} ± {np.std(leads, ddof=1):.1f}"
        return signed_points(leads[0]) if leads else "–"

    def significance_text(self, task: str, other: str) -> str:
        tests = self.tests(task, other)
        if not tests:
            return ""
        n = len(tests)
        return f"{sum(bool(r['significant_holm_0.05']) for r in tests)}/{n} seed{'s' if n > 1 else ''}"

    def gains(self, task: str, other: str) -> list[dict]:
        return [r for r in self.ctx.tables.class_gain_rows if r["task"] == task and r["model_b"] == other]

    # --- sentences ----------------------------------------------------------------------------------------------

    def accuracy_sentence(self, tasks: list[str]) -> str:
        """The answer's first line: per task, the reference's accuracy lead over the best classic model."""
        parts, significant = [], []
        for task in tasks:
            ref, best = self.inputs.reference(task), self.best_rival(task)
            parts.append(f"{task} {self.lead_text(task, best)} vs {best} "
                         f"({self.accuracy_text(task, ref)} vs {self.accuracy_text(task, best)})")
            if text := self.significance_text(task, best):
                significant.append(f"{task} {text}")
        ref = self.inputs.reference(tasks[0])
        who = ref if all(self.inputs.reference(t) == ref for t in tasks) else "reference model"
        return (f"**Accuracy** ({self.split}), the {who} minus the best {self.rival_kind(tasks[0])} in points: "
                + "; ".join(parts) + "."
                + (f" Significant after Holm's correction in {', '.join(significant)}." if significant else ""))

    def class_sentences(self, tasks: list[str]) -> list[str]:
        """Where the gap is largest and smallest per class: on the first task against each classic model, on
        the others against the best one."""
        sentences = [self._class_sentence(tasks[0], self.rivals(tasks[0]))]
        rest = [part for task in tasks[1:] if (part := self._class_parts(task, [self.best_rival(task)]))]
        if rest:
            sentences.append("**Per class, other tasks**: " + "; ".join(rest) + ".")
        return [s for s in sentences if s]

    def _class_sentence(self, task: str, rivals: list[str]) -> str:
        parts = self._class_parts(task, rivals, with_task=False)
        if not parts:
            return ""
        level = confidence_text(self.inputs.settings)
        spread_word = ", ± seed sd" if several_seeds(self.inputs.cells) else ""
        return (f"**Per class, {task}** (recall points, {self.inputs.reference(task)} − rival{spread_word}, paired "
                f"{level} interval over the images; *every seed*: each seed's interval excludes 0): {parts}.")

    def _class_parts(self, task: str, rivals: list[str], with_task: bool = True) -> str:
        parts = []
        for other in rivals:
            rows = self.gains(task, other)
            if not rows:
                continue
            ordered = sorted(rows, key=lambda r: (-r["gain_mean"], r["class"]))
            largest, smallest = ordered[0], ordered[-1]
            high_word = "largest gain" if largest["gain_mean"] >= 0 else "smallest loss"
            low_word = "largest loss" if smallest["gain_mean"] < 0 else "smallest gain"
            text = (f"vs {other} {high_word} {self._class_gain(largest)}, {low_word} "
                    f"{self._class_gain(smallest)}")
            other_losses = [r["class"] for r in ordered if r["holds"] == "loss" and r not in (largest, smallest)]
            if other_losses:
                text += f", also losses in every seed on {joined(other_losses)}"
            parts.append(text)
        if not parts:
            return ""
        return (f"{task} " if with_task else "") + "; ".join(parts)

    @staticmethod
    def _class_gain(row: dict) -> str:
        held = {"gain": ", every seed", "loss": ", every seed"}.get(row["holds"], "")
        return (f"{row['class']} {gain_text(row)} [{signed_points(100 * row['ci_low'])}, "
                f"{signed_points(100 * row['ci_high'])}{held}]")

    def confusion_sentence(self, task: str) -> str:
        """Which confusions every model of the task shares (among each one's largest), and which the classic
        models share and the reference removes."""
        rates = self.ctx.tables.confusion_rates
        ref, classic = self.inputs.reference(task), self.inputs.classic_rivals(task)
        models = [m for m in self.inputs.task_models(task) if (task, m) in rates]
        if ref not in models or len(models) < 2:
            return ""
        names = rates[(task, ref)][0]
        tops = {m: {(t, p) for t, p, _ in top_rates(names, rates[(task, m)][1], TOP_CONFUSIONS)} for m in models}

        def share(model, pair):
            return rates[(task, model)][1][names.index(pair[0]), names.index(pair[1])]

        def pair_text(pair, who):
            return f"{pair[0]}→{pair[1]} (" + ", ".join(f"{m} {pct(share(m, pair))}%" for m in who) + ")"

        # sets of names: sorted with the pair as tie-break, so the text does not follow the hash seed
        shared = sorted(set.intersection(*tops.values()), key=lambda pair: (-share(ref, pair), pair))
        text = (f"**Confusions** ({task}, share of the true class, mean over seeds; each model's "
                f"{TOP_CONFUSIONS} largest): ")
        text += ("every model shares " + "; ".join(pair_text(pair, models) for pair in shared) if shared else
                 "no confusion is among every model's largest")
        classic_common = set.intersection(*(tops[m] for m in classic)) if classic else set()
        if classic_common:
            def reduction(pair):
                return min(share(m, pair) for m in classic) - share(ref, pair)

            removed = sorted((pair for pair in classic_common
                              if share(ref, pair) <= REMOVED_FRACTION * min(share(m, pair) for m in classic)),
                             key=lambda pair: (-reduction(pair), pair))
            if removed:
                text += (f"; the {ref} removes (at most {REMOVED_FRACTION:.0%} of every classic model's share) "
                         + "; ".join(pair_text(pair, [ref, *classic]) for pair in removed))
            else:
                best = max(sorted(classic_common), key=reduction)
                text += (f"; of the classic models' shared ones the {ref} removes none (none falls to "
                         f"{REMOVED_FRACTION:.0%} of their share) and reduces {pair_text(best, [ref, *classic])} most")
        return text + "."

    def clean_sentence(self, tasks: list[str]) -> str:
        """The reference's lead over the best classic model on the clean subset (no near-copy in Training or the
        other test split, from the data audit) against all images."""
        clean = metric_rows_by_model(self.ctx.tables.metric_rows, self.split, "clean")
        parts = []
        for task in tasks:
            ref, best = self.inputs.reference(task), self.best_rival(task)
            if (task, ref) not in clean or (task, best) not in clean:
                continue

            def clean_accuracy(model, task=task):
                return 100 * float(np.mean([r["accuracy"] for r in clean[(task, model)]]))

            parts.append(f"{task} {self.lead_text(task, best, 'clean')} vs {best} on "
                         f"{clean[(task, ref)][0]['n']} clean images, {self.lead_text(task, best)} on all ({ref} "
                         f"{clean_accuracy(ref):.1f}% vs {self.accuracy(task, ref):.1f}%)")
        if not parts:
            return ""
        ref = self.inputs.reference(tasks[0])
        return (f"**Clean subset** ({self.split} images without an exact or near copy in Training or the other "
                f"test split, from the data audit; mean over seeds), the {ref} minus the best classic model in "
                "points: " + "; ".join(parts) + ".")

    def peer_sentence(self, tasks: list[str]) -> str:
        """The models that are not classic, beside the answer: what they are and the reference's lead."""
        if not any(self.inputs.classic_rivals(t) for t in tasks):
            return ""  # the answer already compared every model
        parts = []
        for task in tasks:
            for peer in self.inputs.peers(task):
                significant = self.significance_text(task, peer)
                parts.append(f"{task} {self.lead_text(task, peer)} vs {peer} ({self.accuracy_text(task, peer)}"
                             + (f"; significant in {significant}" if significant else "") + ")")
        if not parts:
            return ""
        peers = list(dict.fromkeys(p for t in tasks for p in self.inputs.peers(t)))
        kinds = ", ".join(f"{p}: {_family_text(p)}" for p in peers)
        ref = self.inputs.reference(tasks[0])
        return f"**Peers, not classic** ({kinds}), the {ref} minus each in points: " + "; ".join(parts) + "."

    def cost_sentence(self, task: str) -> str:
        """Fit time and batch prediction speed per model on the first task, naming the machine(s) they ran on."""
        models = [m for m in self.inputs.task_models(task) if (task, m) in self.private]
        machines = sorted({machine_label(c.manifest.machine) for c in self.inputs.cells if c.task == task})
        where = (f"on {machines[0]}" if len(machines) == 1 else
                 f"cells on {len(machines)} different machines, so compare with care; each row's machine is in "
                 "`timing.csv`")

        def mean_of(model, key):
            values = [r[key] for r in self.private[(task, model)] if r[key] is not None]
            return float(np.mean(values)) if values else float("nan")

        # a fit whose machine's load exceeded its cores shared the CPUs: its time is no measure of the model
        shared = {r["model"] for r in self.ctx.tables.timing_rows if r["task"] == task and r.get("fit_shared")}
        costs = ", ".join(f"{m} {mean_of(m, 'fit_seconds') / 60:.1f} min" + (" †" if m in shared else "")
                          for m in models)
        speeds = ", ".join(f"{m} {mean_of(m, 'predict_images_per_s'):,.0f}" for m in models)
        note = " (†: a seed's fit shared the CPUs with other work, by the load average it recorded)" if shared else ""
        return (f"**Cost** ({task}, {where}): fit time {costs}{note}; batch prediction {speeds} images/s (details in "
                "the timing section).")

    def notes(self) -> str:
        """One line: what the numbers' signs mean, which models are deterministic and which model is the
        reference when it is not the default."""
        level = confidence_text(self.inputs.settings)
        if several_seeds(self.inputs.cells):
            text = (f"*Leads: paired, over the seeds both models have. ±: standard deviation over seeds (n − 1); "
                    f"brackets: paired bootstrap {level} interval over the {self.split} images (the mean of the "
                    "seeds' bounds); significance: exact McNemar test per seed, Holm-corrected over the task's "
                    "comparisons, adjusted p < 0.05.")
        else:
            text = (f"*Brackets: paired bootstrap {level} interval over the {self.split} images; significance: "
                    "exact McNemar test, Holm-corrected over the task's comparisons, adjusted p < 0.05.")
        deterministic = [f"{task} {model} ({len(rows)})" for (task, model), rows in self.private.items()
                         if (task, model) in self.inputs.identical_seeds]
        if deterministic:
            text += (" Deterministic (seeds identical, shown once; how many seeds): " + ", ".join(deterministic)
                     + ".")
        if not self.inputs.reference_is_default:
            settings = self.inputs.settings
            why = ("named with --reference" if settings.reference_model else
                   f"no {REFERENCE_MODEL} cells: the most accurate model on {settings.selection_split}")
            per_task = ", ".join(f"{t} {self.inputs.reference(t) or '(none)'}" for t in self.inputs.references)
            text += f" Comparisons are against a reference model ({why}): {per_task}."
        return text + "*"


def _family_text(model: str) -> str:
    family = model_family(model)
    return {PRETRAINED: "pretrained elsewhere", NETWORK: "a network trained here"}.get(
        family, "no family registered")
