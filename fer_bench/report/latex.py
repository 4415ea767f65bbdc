"""summary.tex: the headline table for a paper, from the same metric rows as summary.md."""

from __future__ import annotations

import numpy as np

from fer_bench.metrics import Metric, brief_metrics
from fer_bench.report.markdown import confidence_text, joined, metric_rows_by_model, metric_text
from fer_bench.report.seeds import distinct_rows, ensemble_of, several_seeds
from fer_bench.report.timing import FIT_MARK_MEANINGS, MIXED_MACHINES_MARK, SHARED_FIT_MARK, fit_time_marks

#: the fit-time marks of summary.md as LaTeX superscripts
LATEX_MARKS = {SHARED_FIT_MARK: r"$^\dagger$", MIXED_MACHINES_MARK: r"$^\ddagger$"}

#: characters LaTeX treats as commands, in a user's data set, task or model name (hog_svm has one)
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    """`text` as LaTeX that prints it literally."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def latex_cell(rows: list[dict], metric: Metric) -> str:
    """A metric with an interval: the headline's text (interval, or mean ± std over seeds with their count);
    without one, the narrow column holds the mean."""
    if metric.interval:
        return latex_escape(metric_text(rows, metric)).replace("±", r"$\pm$")
    return metric.format(np.mean([r[metric.name] for r in rows]))


def latex_headline(inputs, tables) -> str:
    split = inputs.settings.headline_split
    private = metric_rows_by_model(tables.metric_rows, split)
    metrics = brief_metrics()
    level = latex_escape(confidence_text(inputs.settings))
    how = (rf"{level} bootstrap CI for one seed, a deterministic model (its seeds identical) or a seed ensemble (the "
           r"average of the seeds' probabilities; fit: the seeds' fits together), mean $\pm$ std over several seeds"
           if several_seeds(inputs.cells)
           else rf"{level} bootstrap CI")
    in_percent = joined(metric.label for metric in metrics if metric.percent)
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(inputs.cells[0].manifest.dataset.name)}: {split} results "
             rf"({latex_escape(in_percent)} in \%, {how}).}}",
             rf"\begin{{tabular}}{{ll{'r' * (len(metrics) + 1)}}}", r"\toprule",
             " & ".join(["Task", "Model", *(latex_escape(_capitalised(m.short_label)) for m in metrics), "Fit (s)"])
             + r" \\", r"\midrule"]
    fit_marks = fit_time_marks(tables.timing_rows)
    used = set()
    for (task, model), rows in private.items():
        shown = distinct_rows(rows, inputs.is_deterministic(task, model))  # identical seeds: one value, no "± 0"
        ensemble = ensemble_of(rows[0])
        marks = fit_marks.get((task, ensemble.model if ensemble else model), "")  # an ensemble: its seeds' fits
        used.update(marks)
        cells = [latex_escape(task), latex_escape(model), *(latex_cell(shown, metric) for metric in metrics),
                 f"{np.mean([r['fit_seconds'] for r in rows]):.1f}" + "".join(LATEX_MARKS[m] for m in marks)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if used:
        lines.append(r"\par\smallskip{\footnotesize Fit: " + "; ".join(
            LATEX_MARKS[mark] + latex_escape(text) for mark, text in FIT_MARK_MEANINGS.items() if mark in used) + ".}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)
