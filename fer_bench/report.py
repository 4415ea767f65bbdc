"""`fer-bench report`: every metric, table and figure, recomputed from the stored predictions alone.

Output is deterministic (sorted cells, seeded bootstrap, fixed number formatting), so running it twice gives
byte-identical tables. All files are built in memory first and then written atomically, one by one.
"""

from __future__ import annotations

import csv
import io
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench import __version__
from fer_bench.errors import FerBenchError
from fer_bench.metrics import (
    confusion,
    floors,
    mcnemar_exact,
    per_class_metrics,
    row_normalise,
    summary_metrics,
)
from fer_bench.models import available_models
from fer_bench.storage import (
    PREDICTION_SPLITS,
    StoredCell,
    atomic_write_text,
    check_results_folder,
    list_cells,
    read_cell,
)
from fer_bench.tasks import available_tasks

HEADLINE_SPLIT = "PrivateTest"
#: the model every baseline is compared against in the significance table and the gain figures
REFERENCE_MODEL = "cnn"
TOP_CONFUSIONS = 5

METRIC_COLUMNS = [
    "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy",
    "precision_macro", "recall_macro", "f1_macro", "f1_macro_ci_low", "f1_macro_ci_high",
    "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc_macro", "roc_auc_micro", "log_loss", "ece",
]


@dataclass
class ReportSection:
    """A titled block of markdown for summary.md; extensions (figures, timing, audit) add their own."""

    title: str
    markdown: str
    order: int = 50


@dataclass
class Report:
    out: Path
    cells: list[StoredCell]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    sections: list[ReportSection] = field(default_factory=list)
    metric_rows: list[dict] = field(default_factory=list)
    #: image ids of test images that have a duplicate in Training (from audit.csv); empty if no audit yet
    leaked_ids: frozenset = frozenset()
    #: sentences extensions add to the findings (figures: what the saliency maps show)
    findings: list[str] = field(default_factory=list)


def default_out() -> Path:
    for name in ("fer2013", "synthetic"):
        if (Path("results") / name / "fer-bench.json").exists():
            return Path("results") / name
    raise FerBenchError("no results folder found (results/fer2013 or results/synthetic); "
                        "run `fer-bench run` first or pass --out")


def _order_key(cell: StoredCell):
    tasks, models = available_tasks(), available_models()
    return (tasks.index(cell.task) if cell.task in tasks else len(tasks), cell.task,
            models.index(cell.model) if cell.model in models else len(models), cell.model, cell.seed)


def load_cells(out: Path) -> list[StoredCell]:
    cells = [read_cell(p) for p in list_cells(out)]
    if not cells:
        raise FerBenchError(f"no finished cells under {out / 'runs'}; run `fer-bench run` first")
    return sorted(cells, key=_order_key)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and np.isnan(value):
        return "nan"
    if isinstance(value, (float, np.floating)):
        return f"{value:.6f}"
    return str(value)


def _csv(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_fmt(row.get(h)) for h in header])
    return buf.getvalue()


def _pct(x: float) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f}"


def _leaked_ids(out: Path, cells) -> frozenset:
    """Test image ids with a pixel-identical (or near-identical) image in Training, from `fer-bench data audit`.

    None when not one of them names a stored test image: then audit.csv was made from the other format of the
    data (the CSV's row ids vs the folder's file names) and would call every test image clean."""
    audit = out / "audit.csv"
    if not audit.exists():
        return frozenset()
    with open(audit, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    leaked = frozenset(r["image_id"] for r in rows
                       if r.get("kind") == "train_test_leak" and r.get("split") != "Training")
    if leaked and leaked.isdisjoint(id_ for cell in cells for id_ in cell.image_ids.tolist()):
        print(f"report: {audit} names none of the stored test images (audit made from the other data format?); "
              "the clean subset is left out; rerun `fer-bench data audit` on the data of the runs", file=sys.stderr)
        return frozenset()
    return leaked


# --- tables -----------------------------------------------------------------------------------------------------

def metrics_table(report: Report) -> None:
    rows = []
    for cell in report.cells:
        n_classes = len(cell.class_names)
        for split in PREDICTION_SPLITS:
            ids, y, proba = cell.split(split)
            subsets = [("all", np.ones(len(y), bool))]
            if report.leaked_ids and split == "PrivateTest":
                subsets.append(("clean", ~np.isin(ids, list(report.leaked_ids))))
            for subset, mask in subsets:
                m = summary_metrics(y[mask], proba[mask], n_classes, seed=cell.seed)
                rows.append({"dataset": cell.manifest["dataset"]["name"], "task": cell.task, "model": cell.model,
                             "seed": cell.seed, "split": split, "subset": subset, **m,
                             "fit_seconds": cell.timings.get("fit_seconds"),
                             "predict_images_per_s": cell.timings.get(f"predict_images_per_s_{split}"),
                             "quick": cell.manifest.get("quick", False)})
    report.metric_rows = rows
    header = ["dataset", "task", "model", "seed", "split", "subset", *METRIC_COLUMNS,
              "fit_seconds", "predict_images_per_s", "quick"]
    report.files["metrics.csv"] = _csv(header, rows)


def per_class_table(report: Report) -> list[dict]:
    rows = []
    for cell in report.cells:
        for split in PREDICTION_SPLITS:
            _, y, proba = cell.split(split)
            pc = per_class_metrics(y, proba, len(cell.class_names))
            for k, name in enumerate(cell.class_names):
                rows.append({"task": cell.task, "model": cell.model, "seed": cell.seed, "split": split,
                             "class": name, **{key: pc[key][k] for key in pc}})
    header = ["task", "model", "seed", "split", "class", "precision", "recall", "f1", "support", "roc_auc"]
    report.files["per_class.csv"] = _csv(header, rows)
    return rows


def confusions_table(report: Report) -> list[dict]:
    """The most frequent off-diagonal (true, predicted) pairs per task, model, seed and split."""
    rows = []
    for cell in report.cells:
        for split in PREDICTION_SPLITS:
            _, y, proba = cell.split(split)
            cm = confusion(y, proba.argmax(axis=1), len(cell.class_names))
            rates = row_normalise(cm)
            pairs = [(cm[i, j], rates[i, j], i, j) for i in range(len(cm)) for j in range(len(cm))
                     if i != j and cm[i, j] > 0]
            pairs.sort(key=lambda p: (-p[0], p[2], p[3]))
            for rank, (count, rate, i, j) in enumerate(pairs[:TOP_CONFUSIONS], 1):
                rows.append({"task": cell.task, "model": cell.model, "seed": cell.seed, "split": split,
                             "rank": rank, "true": cell.class_names[i], "predicted": cell.class_names[j],
                             "count": int(count), "rate_of_true": rate})
    header = ["task", "model", "seed", "split", "rank", "true", "predicted", "count", "rate_of_true"]
    report.files["confusions.csv"] = _csv(header, rows)
    return rows


def significance_table(report: Report) -> list[dict]:
    """Exact McNemar test of the reference model (CNN) against each other model, on the same images."""
    by_key = {(c.task, c.model, c.seed): c for c in report.cells}
    rows = []
    for (task, model, seed), ref in by_key.items():
        if model != REFERENCE_MODEL:
            continue
        for (task_b, other, seed_b), cell in by_key.items():
            if task_b != task or seed_b != seed or other == REFERENCE_MODEL:
                continue
            for split in PREDICTION_SPLITS:
                ids_a, y_a, p_a = ref.split(split)
                ids_b, y_b, p_b = cell.split(split)
                if not np.array_equal(ids_a, ids_b):
                    raise FerBenchError(f"{ref.path} and {cell.path} hold predictions for different {split} images")
                test = mcnemar_exact(p_a.argmax(1) == y_a, p_b.argmax(1) == y_b)
                rows.append({"task": task, "seed": seed, "split": split, "model_a": model, "model_b": other,
                             "n": len(y_a), "accuracy_a": float(np.mean(p_a.argmax(1) == y_a)),
                             "accuracy_b": float(np.mean(p_b.argmax(1) == y_b)), **test,
                             "significant_0.05": test["p_value"] < 0.05})
    header = ["task", "seed", "split", "model_a", "model_b", "n", "accuracy_a", "accuracy_b",
              "a_right_b_wrong", "a_wrong_b_right", "p_value", "significant_0.05"]
    # Significant digits, not _fmt's fixed decimals: FER-2013's p-values go far below 1e-6.
    report.files["significance.csv"] = _csv(header, [{**row, "p_value": f"{row['p_value']:.6g}"} for row in rows])
    return rows


def floors_table(report: Report) -> list[dict]:
    rows, seen = [], set()
    for cell in report.cells:
        if cell.task in seen:
            continue
        seen.add(cell.task)
        counts = np.asarray(cell.manifest["train_class_counts"])
        train_labels = np.repeat(np.arange(len(counts)), counts)
        for split in PREDICTION_SPLITS:
            _, y, _ = cell.split(split)
            f = floors(train_labels, y, len(cell.class_names))
            rows.append({"task": cell.task, "split": split, "majority_class": cell.class_names[f["majority_class"]],
                         "majority_accuracy": f["majority_accuracy"], "chance_accuracy": f["chance_accuracy"]})
    report.files["floors.csv"] = _csv(["task", "split", "majority_class", "majority_accuracy", "chance_accuracy"],
                                      rows)
    return rows


# --- summary.md / summary.tex ------------------------------------------------------------------------------------

def _metric_rows(report: Report, split: str, subset: str = "all") -> dict[tuple[str, str], list[dict]]:
    grouped = defaultdict(list)
    for row in report.metric_rows:
        if row["split"] == split and row["subset"] == subset:
            grouped[(row["task"], row["model"])].append(row)
    return grouped


def _mean_std(rows: list[dict], key: str) -> str:
    values = np.array([r[key] for r in rows], dtype=float)
    if len(values) == 1:
        ci = (rows[0].get(f"{key}_ci_low"), rows[0].get(f"{key}_ci_high"))
        if ci[0] is not None:
            return f"{_pct(values[0])} [{_pct(ci[0])}, {_pct(ci[1])}]"
        return _pct(values[0])
    return f"{_pct(values.mean())} ± {_pct(values.std(ddof=1))} ({len(values)} seeds)"


def headline_markdown(report: Report, floor_rows: list[dict]) -> str:
    private = _metric_rows(report, HEADLINE_SPLIT)
    public = _metric_rows(report, "PublicTest")
    lines = [
        "| task | model | accuracy % [95% CI] | macro-F1 % [95% CI] | ROC AUC (macro) | log loss | ECE | "
        "PublicTest acc % | fit time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, model), rows in private.items():
        fit = np.mean([r["fit_seconds"] for r in rows])
        lines.append(
            f"| {task} | {model} | {_mean_std(rows, 'accuracy')} | {_mean_std(rows, 'f1_macro')} | "
            f"{np.mean([r['roc_auc_macro'] for r in rows]):.3f} | {np.mean([r['log_loss'] for r in rows]):.3f} | "
            f"{np.mean([r['ece'] for r in rows]):.3f} | "
            f"{_pct(np.mean([r['accuracy'] for r in public[(task, model)]]))} | {fit:.1f} s |")
    floor_text = "; ".join(
        f"{r['task']}: majority ({r['majority_class']}) {_pct(r['majority_accuracy'])}%, chance "
        f"{_pct(r['chance_accuracy'])}%" for r in floor_rows if r["split"] == HEADLINE_SPLIT)
    lines += ["", f"Floors on {HEADLINE_SPLIT}: {floor_text}."]
    clean = _metric_rows(report, HEADLINE_SPLIT, "clean")
    if clean:
        lines += ["", f"**Leakage check.** {HEADLINE_SPLIT} accuracy on the *clean* subset (test images with no "
                  "duplicate in Training, from `fer-bench data audit`) vs all images:"]
        parts = []
        for (task, model), rows in clean.items():
            parts.append(f"{task}/{model} {_pct(rows[0]['accuracy'])}% on {rows[0]['n']} clean vs "
                         f"{_pct(private[(task, model)][0]['accuracy'])}% on all")
        lines.append("; ".join(parts) + ".")
    return "\n".join(lines)


def per_class_markdown(per_class_rows: list[dict]) -> str:
    blocks = []
    tasks = list(dict.fromkeys(r["task"] for r in per_class_rows))
    for task in tasks:
        rows = [r for r in per_class_rows if r["task"] == task and r["split"] == HEADLINE_SPLIT]
        models = list(dict.fromkeys(r["model"] for r in rows))
        classes = list(dict.fromkeys(r["class"] for r in rows))
        header = "| class | support | " + " | ".join(f"{m} recall | {m} F1" for m in models) + " |"
        lines = [f"**{task}** ({HEADLINE_SPLIT}; recall and F1 in %, mean over seeds)", "", header,
                 "|---|---|" + "---|---|" * len(models)]
        for cls in classes:
            cells = []
            support = next(r["support"] for r in rows if r["class"] == cls)
            for m in models:
                sel = [r for r in rows if r["class"] == cls and r["model"] == m]
                cells.append(f"{_pct(np.mean([r['recall'] for r in sel]))} | {_pct(np.mean([r['f1'] for r in sel]))}")
            lines.append(f"| {cls} | {int(support)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def significance_markdown(rows: list[dict]) -> str:
    rows = [r for r in rows if r["split"] == HEADLINE_SPLIT]
    if not rows:
        return f"No {REFERENCE_MODEL} cells to compare against."
    lines = ["| task | seed | comparison | acc A % | acc B % | A right, B wrong | A wrong, B right | "
             "p (exact McNemar) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seed']} | {r['model_a']} vs {r['model_b']} | {_pct(r['accuracy_a'])} | "
                     f"{_pct(r['accuracy_b'])} | {r['a_right_b_wrong']} | {r['a_wrong_b_right']} | "
                     f"{r['p_value']:.2g} |")
    return "\n".join(lines)


def confusions_markdown(rows: list[dict]) -> str:
    rows = [r for r in rows if r["split"] == HEADLINE_SPLIT and r["rank"] <= 3]
    grouped = defaultdict(list)
    for r in rows:
        grouped[(r["task"], r["model"], r["seed"])].append(
            f"{r['true']}→{r['predicted']} {_pct(r['rate_of_true'])}%")
    lines = ["| task | model | seed | top confusions (true→predicted, % of the true class) |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {s} | {', '.join(v)} |" for (t, m, s), v in grouped.items()]
    return "\n".join(lines)


def _signed(points: float) -> str:
    return f"{points:+.1f}"


def _p_text(p: float) -> str:
    return "p < 1e-6" if p < 1e-6 else f"p = {p:.2g}"


def findings_markdown(report: Report, per_class_rows: list[dict], significance_rows: list[dict],
                      confusion_rows: list[dict]) -> str:
    """A few sentences that the tables support, generated from them: the CNN's accuracy gain over each baseline
    per task (with the exact McNemar test), the classes where it gains most and least, the confusions that
    remain, what each model costs to fit, and what extensions add (the saliency maps)."""
    private = _metric_rows(report, HEADLINE_SPLIT)
    tasks = list(dict.fromkeys(task for task, _ in private))
    models = list(dict.fromkeys(model for _, model in private))
    baselines = [m for m in models if m != REFERENCE_MODEL]
    if REFERENCE_MODEL not in models or not baselines:
        return f"*No findings: they compare the {REFERENCE_MODEL} with the baselines, and the grid lacks one side.*"

    def accuracy(task, model):
        return 100 * float(np.mean([r["accuracy"] for r in private[(task, model)]]))

    sentences = []
    first_seed = min(r["seed"] for r in significance_rows) if significance_rows else None
    for task in tasks:
        if (task, REFERENCE_MODEL) not in private:
            continue
        parts = []
        for b in baselines:
            if (task, b) not in private:
                continue
            tests = [r for r in significance_rows if r["task"] == task and r["model_b"] == b
                     and r["split"] == HEADLINE_SPLIT and r["seed"] == first_seed]
            test = f" ({_p_text(tests[0]['p_value'])})" if tests else ""
            parts.append(f"{_signed(accuracy(task, REFERENCE_MODEL) - accuracy(task, b))} points over {b} "
                         f"({accuracy(task, b):.1f}%){test}")
        sentences.append(f"**{task}**: the {REFERENCE_MODEL} reaches {accuracy(task, REFERENCE_MODEL):.1f}% "
                         f"{HEADLINE_SPLIT} accuracy, " + " and ".join(parts) + ".")
    if significance_rows:
        sentences.append(f"(p: exact McNemar test on the same {HEADLINE_SPLIT} images, seed {first_seed}.)")

    headline_task = tasks[0]
    recall = defaultdict(list)
    for r in per_class_rows:
        if r["task"] == headline_task and r["split"] == HEADLINE_SPLIT:
            recall[(r["model"], r["class"])].append(r["recall"])
    classes = list(dict.fromkeys(c for _, c in recall))
    strongest = max(baselines, key=lambda b: accuracy(headline_task, b) if (headline_task, b) in private else -1)
    if (REFERENCE_MODEL, classes[0]) in recall and (strongest, classes[0]) in recall:
        gains = sorted(((100 * (np.mean(recall[(REFERENCE_MODEL, c)]) - np.mean(recall[(strongest, c)])), c)
                        for c in classes), reverse=True)
        best = ", ".join(f"{c} ({_signed(g)})" for g, c in gains[:3])
        worst = ", ".join(f"{c} ({_signed(g)})" for g, c in gains[-2:][::-1])
        sentences.append(f"Where the {REFERENCE_MODEL} gains ({headline_task}, recall vs {strongest}, the "
                         f"strongest baseline, in points): most on {best}; least on {worst}.")
    confusions = [r for r in confusion_rows if r["task"] == headline_task and r["model"] == REFERENCE_MODEL
                  and r["split"] == HEADLINE_SPLIT and r["seed"] == min(r["seed"] for r in confusion_rows)]
    if confusions:
        pairs = ", ".join(f"{r['true']}→{r['predicted']} ({_pct(r['rate_of_true'])}% of {r['true']})"
                          for r in confusions[:3])
        sentences.append(f"Confusions that remain for the {REFERENCE_MODEL} ({headline_task}): {pairs}.")
    costs = ", ".join(f"{m} {np.mean([r['fit_seconds'] for r in private[(headline_task, m)]]) / 60:.1f} min"
                      for m in models if (headline_task, m) in private)
    speeds = ", ".join(f"{m} {np.mean([r['predict_images_per_s'] for r in private[(headline_task, m)]]):,.0f}"
                       for m in models if (headline_task, m) in private)
    sentences.append(f"Cost ({headline_task}, this machine): fit time {costs}; batch prediction {speeds} "
                     "images/s (details in the timing section).")
    sentences += report.findings
    return "\n".join(f"- {s}" for s in sentences)


#: what a model chose on PublicTest, as stored in params.json "selected": key -> label in the summary. Keys a model
#: does not store are left out, so a user's model shows whichever of these it records.
SELECTION_LABELS = {"C": "C", "gamma_scale": "gamma scale", "best_epoch": "epoch", "tta": "flip TTA"}


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


def _validation_accuracy(selected: dict):
    """PublicTest accuracy of what predicts: with flip TTA when it was chosen on."""
    if selected.get("tta") and selected.get("val_accuracy_with_tta") is not None:
        return selected["val_accuracy_with_tta"]
    for key in ("validation_accuracy", "best_val_accuracy"):
        if selected.get(key) is not None:
            return selected[key]
    return None


def selection_markdown(report: Report) -> str:
    """One line per cell: the hyper-parameters, epoch and TTA it chose on PublicTest, and their PublicTest
    accuracy (PrivateTest played no part)."""
    lines = ["Gamma scale s means gamma = s / (n_features × feature variance), scikit-learn's \"scale\" times s; "
             "epoch k/n: the CNN's weights after epoch k of n; flip TTA: averaging each image's and its mirror "
             "image's probabilities (off by default; on with tta=True, or with tta=\"auto\" when it raised "
             "PublicTest accuracy).", "",
             "| task | model | seed | chosen on PublicTest | PublicTest accuracy (%) |", "|---|---|---|---|---|"]
    for cell in report.cells:
        selected = (cell.params or {}).get("selected") or {}
        accuracy = _validation_accuracy(selected)
        lines.append(f"| {cell.task} | {cell.model} | {cell.seed} | {_selection_text(selected) or '–'} | "
                     f"{_pct(accuracy) if accuracy is not None else '–'} |")
    return "\n".join(lines)


def provenance_markdown(report: Report) -> str:
    commits = sorted({(c.manifest["code"]["commit"][:10], bool(c.manifest["code"].get("dirty")))
                      for c in report.cells})
    machines = sorted({f"{c.manifest['machine']['cpu']} ({c.manifest['machine']['cores']} cores)"
                       for c in report.cells})
    finished = sorted(c.manifest["finished"] for c in report.cells)
    dataset = report.cells[0].manifest["dataset"]
    commit_text = ", ".join(f"`{c}`" + (" (uncommitted changes)" if dirty else "") for c, dirty in commits)
    quick = any(c.manifest.get("quick") for c in report.cells)
    return (f"Data: **{dataset['name']}** (fingerprint `{dataset['fingerprint']}`). "
            f"Cells computed by fer-bench at commit {commit_text} on {', '.join(machines)}, "
            f"finished between {finished[0]} and {finished[-1]} (UTC)"
            + (", in **--quick** mode (smoke-check configuration, not the benchmark)" if quick else "")
            + f". Tables written by `fer-bench report` {__version__} from the stored predictions in `runs/`.")


#: characters LaTeX treats as commands, in a user's data set, task or model name (hog_svm has one)
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    """`text` as LaTeX that prints it literally."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


def latex_headline(report: Report) -> str:
    private = _metric_rows(report, HEADLINE_SPLIT)
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(report.cells[0].manifest['dataset']['name'])}: {HEADLINE_SPLIT} results "
             r"(accuracy and macro-F1 in \%, 95\% bootstrap CI).}",
             r"\begin{tabular}{llrrrr}", r"\toprule",
             r"Task & Model & Accuracy & Macro-F1 & AUC & Fit (s) \\", r"\midrule"]
    for (task, model), rows in private.items():
        acc = _mean_std(rows, "accuracy").replace("±", r"$\pm$")
        f1 = _mean_std(rows, "f1_macro").replace("±", r"$\pm$")
        lines.append(f"{latex_escape(task)} & {latex_escape(model)} & {acc} & {f1} & "
                     f"{np.mean([r['roc_auc_macro'] for r in rows]):.3f} & "
                     f"{np.mean([r['fit_seconds'] for r in rows]):.1f} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _extension_sections(report: Report) -> None:
    """Figures, timing and audit sections, when their modules are available (matplotlib for figures)."""
    for module_name in ("fer_bench.figures", "fer_bench.timing", "fer_bench.audit"):
        try:
            module = __import__(module_name, fromlist=["report_sections"])
        except ImportError as exc:
            if exc.name and exc.name.startswith("fer_bench"):
                continue  # extension not present in this version
            print(f"report: skipping {module_name} ({exc})", file=sys.stderr)
            continue
        if hasattr(module, "report_sections"):
            module.report_sections(report)


def build_report(out: Path) -> Report:
    out = Path(out)
    check_results_folder(out)
    cells = load_cells(out)
    report = Report(out=out, cells=cells, leaked_ids=_leaked_ids(out, cells))
    metrics_table(report)
    per_class_rows = per_class_table(report)
    confusion_rows = confusions_table(report)
    significance_rows = significance_table(report)
    floor_rows = floors_table(report)
    dataset = report.cells[0].manifest["dataset"]["name"]
    report.sections += [
        ReportSection(f"Headline: {HEADLINE_SPLIT} (PublicTest only used for model selection)",
                      headline_markdown(report, floor_rows), order=10),
        ReportSection(f"Per-class recall and F1 ({HEADLINE_SPLIT})", per_class_markdown(per_class_rows), order=20),
        ReportSection(f"Is the CNN's difference significant? ({HEADLINE_SPLIT})",
                      significance_markdown(significance_rows), order=30),
        ReportSection(f"Top confusions ({HEADLINE_SPLIT})", confusions_markdown(confusion_rows), order=40),
        ReportSection("What each model chose on PublicTest", selection_markdown(report), order=45),
    ]
    _extension_sections(report)
    report.sections += [
        ReportSection("Findings", findings_markdown(report, per_class_rows, significance_rows, confusion_rows),
                      order=12),
        ReportSection("Provenance", provenance_markdown(report), order=15),
    ]
    title = f"# fer-bench results: {dataset}\n"
    if dataset == "synthetic":
        title += ("\n> **Synthetic data.** These numbers come from fer-bench's built-in procedural faces, not from "
                  "FER-2013. They show the pipeline works; they say nothing about facial-expression recognition.\n")
    body = [title]
    for section in sorted(report.sections, key=lambda s: s.order):
        body += [f"## {section.title}", "", section.markdown.rstrip(), ""]
    body += ["## Files", "", "Schemas of every file: `docs/results-format.md` in the fer-bench repository. "
             "`metrics.csv` (one row per task × model × seed × split × subset), `per_class.csv`, `confusions.csv`, "
             "`significance.csv`, `floors.csv`, `timing.csv`, `summary.tex`, `figures/`, `audit.md` and `audit.csv` "
             "(from `fer-bench data audit`), `runs/<task>/<model>/seed<k>/` (stored predictions, chosen "
             "parameters, timings, manifest).", ""]
    report.files["summary.md"] = "\n".join(body)
    report.files["summary.tex"] = latex_headline(report)
    return report


def write_report(out=None) -> Path:
    out = Path(out) if out else default_out()
    report = build_report(out)
    try:
        for name, text in sorted(report.files.items()):
            atomic_write_text(out / name, text)
    except OSError as exc:
        raise FerBenchError(f"cannot write the report under {out}: {exc.strerror or exc}") from None
    print(f"report written to {out / 'summary.md'}")
    return out
