"""summary.tex: the headline table for a paper, from the same metric rows as summary.md."""

from __future__ import annotations

import numpy as np

from fer_bench.report.markdown import mean_std, metric_rows_by_model
from fer_bench.report.seeds import several_seeds

#: characters LaTeX treats as commands, in a user's data set, task or model name (hog_svm has one)
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    """`text` as LaTeX that prints it literally."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


def latex_headline(inputs, metric_rows: list[dict]) -> str:
    split = inputs.settings.headline_split
    private = metric_rows_by_model(metric_rows, split)
    how = (r"95\% bootstrap CI for one seed or a seed ensemble (the average of the seeds' probabilities; fit: "
           r"the seeds' fits together), mean $\pm$ std over several seeds" if several_seeds(inputs.cells)
           else r"95\% bootstrap CI")
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(inputs.cells[0].manifest.dataset.name)}: {split} results "
             rf"(accuracy and macro-F1 in \%, {how}).}}",
             r"\begin{tabular}{llrrrr}", r"\toprule",
             r"Task & Model & Accuracy & Macro-F1 & AUC & Fit (s) \\", r"\midrule"]
    for (task, model), rows in private.items():
        acc = mean_std(rows, "accuracy").replace("±", r"$\pm$")
        f1 = mean_std(rows, "f1_macro").replace("±", r"$\pm$")
        lines.append(f"{latex_escape(task)} & {latex_escape(model)} & {acc} & {f1} & "
                     f"{np.mean([r['roc_auc_macro'] for r in rows]):.3f} & "
                     f"{np.mean([r['fit_seconds'] for r in rows]):.1f} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
