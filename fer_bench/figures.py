"""Analysis figures for `fer-bench report`: ROC curves, confusion matrices, where the CNN gains, calibration and
saliency, written as PNGs under `<out>/figures/` and embedded in summary.md.

`report_sections(report)` is called by the report. Every figure shows the headline split (PrivateTest) and the
first (lowest) seed of each (task, model). Figures made from the stored predictions are always made. Figures that
need the images (face grids) or the fitted models (`<cell>/model/`: saliency, logistic-regression templates, HOG)
are made when the data set can be re-loaded with the fingerprint the cells were computed on and the models are
present; otherwise the section says why and PNGs of an earlier report are left in place.

Figures are rendered in memory with matplotlib's Agg canvas (no pyplot state), encoded as PNG without any
timestamp or version text, and written atomically, so re-running the report gives identical files.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from sklearn import metrics as skm

from fer_bench import saliency
from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.metrics import (
    BOOTSTRAP_RESAMPLES,
    ECE_BINS,
    bootstrap_recall_intervals,
    confusion,
    expected_calibration_error,
    per_class_auc,
    reliability_curve,
    roc_auc,
    row_normalise,
)
from fer_bench.report import HEADLINE_SPLIT, REFERENCE_MODEL, ReportSection
from fer_bench.storage import StoredCell, atomic_write_bytes

FIGURES_DIR = "figures"
DPI = 100
#: PNGs above this size are re-encoded with a 256-colour palette
MAX_PNG_BYTES = 250_000
TOP_PAIRS = 5
#: face grids: rows x columns of one group of faces
FACE_GRID = (2, 8)
#: faces per class averaged in the class-average occlusion maps: at most CLASS_SALIENCY_FACES, fewer (down to
#: MIN_CLASS_SALIENCY_FACES) when the models' stored predict throughput says the occlusion maps of a task would
#: take more than OCCLUSION_SECONDS_PER_TASK (slow models, slow machine)
CLASS_SALIENCY_FACES = 12
MIN_CLASS_SALIENCY_FACES = 4
OCCLUSION_SECONDS_PER_TASK = 40.0
#: misclassified faces shown with their saliency
ERROR_FACES = 6
#: example faces in the saliency comparison: one per class, at least this many in all
SALIENCY_FACES = 6
HOG_MODEL = "hog_svm"
LOGREG_MODEL = "logreg"
MODELS_MISSING = "models not present: run `fer-bench run` on this machine"

_INTROS = {
    "confusion": "Colour: share of the true class (rows sum to 1); numbers: images. In the difference matrices "
                 "(CNN minus a baseline, percentage points of the true class), red on the diagonal is a class the "
                 "CNN recognises more often; off the diagonal, blue is a confusion the CNN removes and red one it "
                 "adds.",
    "gain": "Recall intervals: 95% percentile bootstrap over the images. Gain intervals: paired bootstrap (the same "
            "resampled images score both models), so an interval that excludes 0 is a clear per-class gain or "
            "loss. Confusions are ranked by count, as in `confusions.csv`; the bars give the share of the true "
            "class and the numbers the images. Face grids show the most confident mistakes, classes in turn, with "
            "the true label and the wrong predictions above each face.",
    "calibration": f"Accuracy against mean top-label confidence in {ECE_BINS} equal-width bins (the ECE of "
                   "`metrics.csv`); "
                   "the lower panel shows the share of images in each bin.",
    "saliency": f"*Occlusion* (all models, through `predict_proba`): a gray {saliency.OCCLUSION_PATCH}x"
                f"{saliency.OCCLUSION_PATCH} patch slides over the face in steps of {saliency.OCCLUSION_STRIDE} "
                "pixels; each pixel shows the mean drop of the true-class probability over the patches "
                "covering it. Red: hiding the area lowers the probability (the model relies on it); blue: hiding it "
                "raises it. One colour scale per row, so faces compare within a model. *Gradient* and *SmoothGrad* "
                f"({saliency.SMOOTHGRAD_SAMPLES} noisy copies, noise {saliency.SMOOTHGRAD_NOISE:.0%} of the pixel "
                "range): magnitude of the derivative of the CNN's logit "
                "for the class w.r.t. each pixel, each map scaled to its own 99th percentile. *Grad-CAM*: the "
                "CNN's last convolution block weighted by the logit's mean gradient, rectified and scaled to 0..1.",
}

_SECTIONS = {
    "roc": (f"Figures: ROC curves ({HEADLINE_SPLIT})", 60),
    "confusion": (f"Figures: confusion matrices ({HEADLINE_SPLIT})", 63),
    "gain": (f"Figures: where the CNN gains ({HEADLINE_SPLIT})", 66),
    "calibration": (f"Figures: calibration ({HEADLINE_SPLIT})", 69),
    "saliency": (f"Figures: what the models look at ({HEADLINE_SPLIT})", 72),
    "training": ("Figures: CNN training curves (PublicTest: model selection only)", 57),
}

# Loaded data sets by fingerprint: a second report in the same process (or a caller that already holds the data
# set, see remember_dataset) does not load it again.
_DATASETS: dict[str, Dataset] = {}


def remember_dataset(dataset: Dataset) -> None:
    """Make `dataset` available to the figures that need images, for results computed on it (matched by
    fingerprint); useful when results come from `run_grid(dataset=...)` with data that cannot be re-loaded."""
    _DATASETS[dataset.fingerprint] = dataset


# --- what the figures are made from -----------------------------------------------------------------------------

@dataclass
class TaskResults:
    """The PrivateTest predictions of every model on one task (first seed of each), on the same images."""

    task: str
    class_names: list[str]
    cells: dict[str, StoredCell]  # model -> cell, in report order
    ids: np.ndarray
    labels: np.ndarray
    proba: dict[str, np.ndarray]

    @property
    def models(self) -> list[str]:
        return list(self.cells)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def reference(self) -> str | None:
        return REFERENCE_MODEL if REFERENCE_MODEL in self.cells else None

    @property
    def baselines(self) -> list[str]:
        return [m for m in self.models if m != REFERENCE_MODEL]

    def pred(self, model: str) -> np.ndarray:
        return self.proba[model].argmax(axis=1)

    def seeds_text(self) -> str:
        seeds = sorted({c.seed for c in self.cells.values()})
        return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))


def task_results(cells: list[StoredCell]) -> list[TaskResults]:
    """Group cells (already in report order: task, model, seed) by task, keeping each model's first seed."""
    by_task: dict[str, dict[str, StoredCell]] = defaultdict(dict)
    for cell in cells:
        by_task[cell.task].setdefault(cell.model, cell)
    results = []
    for task, by_model in by_task.items():
        first = next(iter(by_model.values()))
        ids, labels, _ = first.split(HEADLINE_SPLIT)
        proba = {}
        for model, cell in by_model.items():
            cell_ids, cell_labels, cell_proba = cell.split(HEADLINE_SPLIT)
            if not (np.array_equal(cell_ids, ids) and np.array_equal(cell_labels, labels)):
                raise FerBenchError(f"{cell.path} and {first.path} hold predictions for different "
                                    f"{HEADLINE_SPLIT} images")
            proba[model] = cell_proba
        results.append(TaskResults(task, first.class_names, dict(by_model), ids, labels, proba))
    return results


# --- rendering --------------------------------------------------------------------------------------------------

def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg alone (no pyplot, so nothing global changes and nothing leaks between reports)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of `fig` without metadata text, so the same figure always gives the same bytes: grayscale when
    the figure has no colour (lossless, a third of RGB), otherwise RGB, palette-encoded when large."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return _encode_png(Image.fromarray(np.ascontiguousarray(rgb[..., 0])))
    image = Image.fromarray(rgb)
    data = _encode_png(image)
    if len(data) > MAX_PNG_BYTES:
        data = _encode_png(image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE))
    return data


def _encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=6, dpi=(DPI, DPI))
    return buf.getvalue()


def _model_colors(models: list[str]) -> dict[str, tuple]:
    palette = matplotlib.colormaps["tab10"]
    return {m: palette(i % 10) for i, m in enumerate(models)}


def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


class _Writer:
    """Writes PNGs under <out>/figures and collects each section's markdown."""

    def __init__(self, out: Path):
        self.dir = Path(out) / FIGURES_DIR
        self.parts: dict[str, list[str]] = defaultdict(list)
        self.written: list[Path] = []
        self.findings: list[str] = []  # sentences for the report's findings section

    def figure(self, section: str, fig: Figure, name: str, alt: str, caption: str) -> None:
        """Write `fig` as <name>.png and embed it in `section` with `alt` text and a one-line caption below."""
        path = self.dir / f"{name}.png"
        try:
            atomic_write_bytes(path, figure_png(fig))
        except OSError as exc:
            raise FerBenchError(f"cannot write figure {path}: {exc.strerror or exc}") from None
        self.written.append(path)
        self.parts[section].append(f"![{alt}]({FIGURES_DIR}/{name}.png)\n*{caption}*")

    def skipped(self, section: str, names: list[str], reason: str) -> None:
        """One line saying why; PNGs of an earlier report are left in place and still linked."""
        kept = [n for n in names if (self.dir / f"{n}.png").is_file()]
        line = f"*Skipped: {reason}.*"
        if kept:
            line += " PNGs from an earlier report, left in place:"
            line += "".join(f"\n\n![{n} (earlier report)]({FIGURES_DIR}/{n}.png)" for n in kept)
        self.parts[section].append(line)

    def note(self, section: str, text: str) -> None:
        self.parts[section].append(text)


# --- ROC ----------------------------------------------------------------------------------------------------------

def _roc_points(positive: np.ndarray, score: np.ndarray):
    fpr, tpr, _ = skm.roc_curve(positive, score)
    return fpr, tpr


def _macro_roc(labels: np.ndarray, proba: np.ndarray, n_classes: int):
    """Macro one-vs-rest ROC curve: each present class's TPR interpolated on the union of FPRs, averaged."""
    curves = [_roc_points(labels == c, proba[:, c]) for c in range(n_classes) if 0 < (labels == c).sum() < len(labels)]
    if not curves:  # a single class in the split: no ROC curve exists
        return np.array([]), np.array([])
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
    return grid, tpr


def roc_figure(tr: TaskResults, colors) -> Figure:
    fig = new_figure(5.2, 4.6)
    ax = fig.add_subplot()
    for model in tr.models:
        proba = tr.proba[model]
        auc = roc_auc(tr.labels, proba, tr.n_classes)["roc_auc_macro"]
        if tr.n_classes == 2:
            fpr, tpr = _roc_points(tr.labels == 1, proba[:, 1])
            label = f"{model} (AUC {auc:.3f})"
        else:
            fpr, tpr = _macro_roc(tr.labels, proba, tr.n_classes)
            label = f"{model} (macro AUC {auc:.3f})"
        ax.plot(fpr, tpr, color=colors[model], lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    kind = f"{tr.class_names[1]} vs {tr.class_names[0]}" if tr.n_classes == 2 else "macro one-vs-rest"
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=f"{tr.task}: ROC, {kind}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def roc_per_class_figure(tr: TaskResults, colors) -> Figure:
    ncols = 4 if tr.n_classes > 6 else 3
    nrows = int(np.ceil(tr.n_classes / ncols))
    fig = new_figure(2.6 * ncols, 2.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    aucs = {m: per_class_auc(tr.labels, tr.proba[m], tr.n_classes) for m in tr.models}
    for c, name in enumerate(tr.class_names):
        ax = axes.flat[c]
        positive = tr.labels == c
        if 0 < positive.sum() < len(positive):
            for model in tr.models:
                fpr, tpr = _roc_points(positive, tr.proba[model][:, c])
                ax.plot(fpr, tpr, color=colors[model], lw=1.3, label=f"{model} {aucs[model][c]:.3f}")
            ax.legend(loc="lower right", fontsize=6.5, title="AUC", title_fontsize=6.5)
        else:
            ax.text(0.5, 0.5, "class absent", ha="center", va="center", fontsize=8)
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
        ax.set_title(f"{name} (n={int(positive.sum())})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[tr.n_classes:]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("false positive rate", fontsize=8)
    for c in range(max(tr.n_classes - ncols, 0), tr.n_classes):  # panels above an empty one keep their x axis
        if c // ncols < nrows - 1:
            axes.flat[c].set_xlabel("false positive rate", fontsize=8)
            axes.flat[c].tick_params(labelbottom=True)
    fig.suptitle(f"{tr.task}: one-vs-rest ROC per class", fontsize=10)
    return fig


# --- confusion matrices ---------------------------------------------------------------------------------------

def _annotated_matrix(ax, values, texts, cmap, vmin, vmax, class_names, title, *, ylabel=True):
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    span = vmax - vmin
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            strong = abs(values[i, j] - (vmin + vmax) / 2) > 0.3 * span if vmin < 0 else values[i, j] > 0.55 * vmax
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7 if len(values) > 5 else 8,
                    color="white" if strong else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=7.5)
    ax.set_yticks(ticks, class_names if ylabel else [""] * len(ticks), fontsize=7.5)
    ax.set_xlabel("predicted", fontsize=8)
    if ylabel:
        ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    return image


def confusion_figure(tr: TaskResults) -> Figure:
    fig = new_figure(0.4 + 3.2 * len(tr.models), 3.9)
    axes = fig.subplots(1, len(tr.models), squeeze=False)[0]
    image = None
    for k, (ax, model) in enumerate(zip(axes, tr.models, strict=True)):
        cm = confusion(tr.labels, tr.pred(model), tr.n_classes)
        texts = [[str(v) for v in row] for row in cm]
        acc = np.trace(cm) / max(cm.sum(), 1)
        image = _annotated_matrix(ax, row_normalise(cm), texts, "Blues", 0.0, 1.0, tr.class_names,
                                  f"{model} (accuracy {_pct(acc)}%)", ylabel=k == 0)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class")
    fig.suptitle(f"{tr.task}: confusion matrices (colour: row-normalised; numbers: image counts)", fontsize=10)
    return fig


def confusion_difference_figure(tr: TaskResults) -> Figure:
    ref_rates = row_normalise(confusion(tr.labels, tr.pred(tr.reference), tr.n_classes))
    diffs = {b: 100 * (ref_rates - row_normalise(confusion(tr.labels, tr.pred(b), tr.n_classes)))
             for b in tr.baselines}
    limit = max(5.0, max(float(np.abs(d).max()) for d in diffs.values()))
    fig = new_figure(0.4 + 3.2 * len(diffs), 3.9)
    axes = fig.subplots(1, len(diffs), squeeze=False)[0]
    image = None
    for k, (ax, (baseline, diff)) in enumerate(zip(axes, diffs.items(), strict=True)):
        texts = [[f"{v:+.0f}" if abs(v) >= 0.5 else "0" for v in row] for row in diff]
        image = _annotated_matrix(ax, diff, texts, "RdBu_r", -limit, limit, tr.class_names,
                                  f"{tr.reference} − {baseline}", ylabel=k == 0)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="difference (percentage points of the true class)")
    fig.suptitle(f"{tr.task}: where the CNN's confusion matrix differs", fontsize=10)
    return fig


# --- where the CNN gains ----------------------------------------------------------------------------------------

def paired_recall_gain(labels, pred_a, pred_b, n_classes: int, *, n_resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, level: float = 0.95):
    """Per-class recall of model a minus model b, and its paired percentile bootstrap interval (the same
    resampled images score both models). Returns (gain (k,), interval (k, 2)); NaN for absent classes."""
    labels = np.asarray(labels)
    difference = (pred_a == labels).astype(np.float64) - (pred_b == labels)
    support = np.bincount(labels, minlength=n_classes)
    gain = np.divide(np.bincount(labels, weights=difference, minlength=n_classes), support,
                     out=np.full(n_classes, np.nan), where=support > 0)
    rng = np.random.default_rng(seed)
    n = len(labels)
    sums = np.zeros((n_resamples, n_classes))
    counts = np.zeros((n_resamples, n_classes))
    chunk = max(1, 2_000_000 // max(n, 1))  # resamples per step: bounds the index array's memory
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        index = rng.integers(0, n, (stop - start, n))
        key = (np.arange(stop - start)[:, None] * n_classes + labels[index]).ravel()
        size = (stop - start) * n_classes
        sums[start:stop] = np.bincount(key, weights=difference[index].ravel(), minlength=size).reshape(-1, n_classes)
        counts[start:stop] = np.bincount(key, minlength=size).reshape(-1, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = sums / counts
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    interval = np.full((n_classes, 2), np.nan)
    for c in np.flatnonzero(support):
        interval[c] = np.nanpercentile(gains[:, c], [lo, hi])
    return gain, interval


def _bar_positions(n_groups: int, n_bars: int, width: float = 0.8):
    bar = width / n_bars
    return [np.arange(n_groups) - width / 2 + bar * (k + 0.5) for k in range(n_bars)], bar


def recall_figure(tr: TaskResults, colors) -> Figure:
    fig = new_figure(max(5.0, 0.9 * tr.n_classes + 2.2), 3.6)
    ax = fig.add_subplot()
    positions, bar = _bar_positions(tr.n_classes, len(tr.models))
    for x, model in zip(positions, tr.models, strict=True):
        pred = tr.pred(model)
        support = np.bincount(tr.labels, minlength=tr.n_classes)
        recall = np.divide(np.bincount(tr.labels, weights=pred == tr.labels, minlength=tr.n_classes), support,
                           out=np.full(tr.n_classes, np.nan), where=support > 0)
        interval = bootstrap_recall_intervals(tr.labels, pred, tr.n_classes, seed=tr.cells[model].seed)
        errors = np.abs(np.stack([recall - interval[:, 0], interval[:, 1] - recall])) * 100
        ax.bar(x, 100 * recall, bar, color=colors[model], label=model, yerr=errors, capsize=2,
               error_kw={"lw": 0.8})
    ax.set_xticks(np.arange(tr.n_classes), tr.class_names, fontsize=8)
    ax.set(ylim=(0, 105), ylabel="recall % (95% bootstrap CI)", title=f"{tr.task}: per-class recall")
    ax.legend(fontsize=8, ncols=len(tr.models), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)
    return fig


def gain_figure(tr: TaskResults, colors) -> Figure:
    fig = new_figure(max(5.0, 0.8 * tr.n_classes + 2.2), 3.4)
    ax = fig.add_subplot()
    positions, bar = _bar_positions(tr.n_classes, len(tr.baselines))
    for x, baseline in zip(positions, tr.baselines, strict=True):
        gain, interval = paired_recall_gain(tr.labels, tr.pred(tr.reference), tr.pred(baseline), tr.n_classes,
                                            seed=tr.cells[tr.reference].seed)
        errors = np.abs(np.stack([gain - interval[:, 0], interval[:, 1] - gain])) * 100
        ax.bar(x, 100 * gain, bar, color=colors[baseline], label=f"{tr.reference} − {baseline}", yerr=errors,
               capsize=2, error_kw={"lw": 0.8})
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(tr.n_classes), tr.class_names, fontsize=8)
    ax.set(ylabel="recall gain, points (95% paired CI)", title=f"{tr.task}: per-class recall gain of the CNN")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def top_confusions(labels, pred, n_classes: int, top: int = TOP_PAIRS):
    """The most frequent (true, predicted) off-diagonal pairs as (true, predicted, count, share of the true
    class), ranked by count like the report's confusions.csv."""
    cm = confusion(labels, pred, n_classes)
    rates = row_normalise(cm)
    pairs = [(int(cm[i, j]), i, j) for i in range(n_classes) for j in range(n_classes) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [(i, j, count, float(rates[i, j])) for count, i, j in pairs[:top]]


def confused_pairs_figure(tr: TaskResults, colors) -> Figure:
    fig = new_figure(0.6 + 2.9 * len(tr.models), 2.6)
    axes = fig.subplots(1, len(tr.models), squeeze=False, sharex=True)[0]
    largest = 0.0
    for ax, model in zip(axes, tr.models, strict=True):
        pairs = top_confusions(tr.labels, tr.pred(model), tr.n_classes)
        names = [f"{tr.class_names[i]}→{tr.class_names[j]}" for i, j, _, _ in pairs]
        shares = [100 * share for _, _, _, share in pairs]
        y = np.arange(len(pairs))
        ax.barh(y, shares, color=colors[model])
        for yi, (_, _, count, share) in zip(y, pairs, strict=True):
            ax.text(100 * share, yi, f" {count}", va="center", fontsize=7)
        ax.set_yticks(y, names, fontsize=7.5)
        ax.invert_yaxis()
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("% of the true class", fontsize=8)
        largest = max([largest, *shares])
    axes[0].set_xlim(0, max(10.0, largest * 1.25))
    fig.suptitle(f"{tr.task}: top {TOP_PAIRS} confusions (true→predicted; number: images)", fontsize=10)
    return fig


# --- image mosaics: faces and saliency maps -------------------------------------------------------------------
# Grids of faces are composed as one RGB image per tile and placed pixel for pixel with figimage (no resampling,
# no Axes per face), which keeps them sharp, small and fast to draw.

#: 48x48 faces are drawn 2x enlarged, as 96x96 pixel tiles
TILE_SCALE = 2
TILE = 48 * TILE_SCALE
_GAP = 6
_LINE = 11  # pixels per text line at 7 pt and 100 dpi
_TITLE_BAND = 30
_HEADING_BAND = 24


@dataclass
class MosaicBlock:
    """A grid of tiles under an optional heading: tiles[r][c] is an RGB uint8 (TILE, TILE, 3) array or None."""

    tiles: list[list[np.ndarray | None]]
    titles: list[list[str]] | None = None  # text above each tile ("\n" for several lines)
    row_labels: list[str] | None = None
    heading: str = ""


def gray_tile(image) -> np.ndarray:
    """A 0..255 gray image as an RGB float image in [0, 1]."""
    gray = np.clip(np.asarray(image, dtype=np.float64) / 255.0, 0, 1)
    return np.repeat(gray[..., None], 3, axis=-1)


def heat_tile(image, heat, cmap: str, vmin: float, vmax: float, *, strength: float = 0.8,
              signed: bool = False) -> np.ndarray:
    """The face in gray with `heat` painted over it in `cmap`; the paint's opacity grows with |heat| (relative to
    the colour range), so pixels without saliency show the plain face."""
    heat = np.asarray(heat, dtype=np.float64)
    span = max(vmax - vmin, 1e-12)
    scaled = np.clip((heat - vmin) / span, 0, 1)
    colour = matplotlib.colormaps[cmap](scaled)[..., :3]
    weight = np.abs(2 * scaled - 1) if signed else scaled
    alpha = strength * weight[..., None]
    return (1 - alpha) * gray_tile(image) + alpha * colour


def colour_tile(values, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    scaled = np.clip((np.asarray(values, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return matplotlib.colormaps[cmap](scaled)[..., :3]


def to_tile(rgb: np.ndarray) -> np.ndarray:
    """RGB float [0, 1] 48x48 image -> uint8 tile, each pixel drawn as a TILE_SCALE x TILE_SCALE block (sharp,
    and repeated pixels cost almost nothing in the PNG)."""
    pixels = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return np.repeat(np.repeat(pixels, TILE_SCALE, axis=0), TILE_SCALE, axis=1)


def mosaic_figure(title: str, blocks: list[MosaicBlock], *, label_width: int = 0) -> Figure:
    """Blocks of tiles stacked under a title, each tile placed pixel for pixel; rows get room for their titles."""

    def title_of(block: MosaicBlock, r: int, c: int) -> str:
        titles = block.titles or []
        return titles[r][c] if r < len(titles) and c < len(titles[r]) else ""

    def row_title_height(block: MosaicBlock, r: int) -> int:
        texts = [title_of(block, r, c) for c in range(len(block.tiles[r]))]
        return max((t.count("\n") + 1 for t in texts if t), default=0) * _LINE

    # Pixel rows from the top: (block, heading top or None, [(row index, tile top)]).
    layout, y = [], _TITLE_BAND
    for block in blocks:
        heading_top = y if block.heading else None
        y += _HEADING_BAND if block.heading else 0
        rows = []
        for r in range(len(block.tiles)):
            y += row_title_height(block, r)
            rows.append((r, y))
            y += TILE + _GAP
        layout.append((block, heading_top, rows))
    height = y + _GAP
    width = label_width + max(len(row) for block in blocks for row in block.tiles) * (TILE + _GAP) + _GAP
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)

    def text(x: float, y_top: float, value: str, **kwargs) -> None:
        fig.text(x / width, 1 - y_top / height, value, **kwargs)

    text(width / 2, _TITLE_BAND / 2, title, ha="center", va="center", fontsize=9.5)
    for block, heading_top, rows in layout:
        if heading_top is not None:
            text(width / 2, heading_top + _HEADING_BAND / 2, block.heading, ha="center", va="center", fontsize=9,
                 fontweight="bold")
        for r, top in rows:
            if block.row_labels:
                text(label_width - 6, top + TILE / 2, block.row_labels[r], ha="right", va="center", fontsize=7.5)
            for c, tile in enumerate(block.tiles[r]):
                left = label_width + _GAP + c * (TILE + _GAP)
                if tile is not None:
                    fig.figimage(tile, xo=left, yo=height - top - TILE, origin="upper")
                if title_of(block, r, c):
                    text(left + TILE / 2, top - 2, title_of(block, r, c), ha="center", va="bottom", fontsize=7,
                         linespacing=1.05)
    return fig


def _pick(candidates: np.ndarray, labels: np.ndarray, score: np.ndarray, limit: int) -> np.ndarray:
    """Up to `limit` of the candidate indices, classes taken in turn, highest score first within a class."""
    by_class = []
    for c in np.unique(labels[candidates]):
        members = candidates[labels[candidates] == c]
        by_class.append(list(members[np.lexsort((members, -score[members]))]))
    picked = []
    while len(picked) < limit and any(by_class):
        for members in by_class:
            if members and len(picked) < limit:
                picked.append(members.pop(0))
    return np.array(picked, dtype=np.int64)


def _rows_of(items: list, n_cols: int) -> list[list]:
    return [items[i:i + n_cols] for i in range(0, len(items), n_cols)] or [[]]


def face_grid_figure(tr: TaskResults, baseline: str, faces: np.ndarray) -> Figure:
    """PrivateTest faces the CNN gets right and `baseline` wrong, the reverse, and both wrong."""
    ref, names = tr.reference, tr.class_names
    right = {m: tr.pred(m) == tr.labels for m in (ref, baseline)}
    confidence = {m: tr.proba[m].max(axis=1) for m in (ref, baseline)}
    groups = [
        (f"{ref} right, {baseline} wrong", right[ref] & ~right[baseline], confidence[baseline], [baseline]),
        (f"{baseline} right, {ref} wrong", ~right[ref] & right[baseline], confidence[ref], [ref]),
        ("both wrong", ~right[ref] & ~right[baseline], confidence[ref] + confidence[baseline], [ref, baseline]),
    ]
    rows, cols = FACE_GRID
    blocks = []
    for heading, mask, score, wrong in groups:
        chosen = _pick(np.flatnonzero(mask), tr.labels, score, rows * cols)
        tiles = [to_tile(gray_tile(faces[i])) for i in chosen]
        titles = ["\n".join([f"true {names[tr.labels[i]]}"] + [f"{m}: {names[tr.pred(m)[i]]}" for m in wrong])
                  for i in chosen]
        shown = f"; the {len(chosen)} most confident mistakes" if len(chosen) < mask.sum() else ""
        blocks.append(MosaicBlock(_rows_of(tiles, cols), _rows_of(titles, cols),
                                  heading=f"{heading}: {int(mask.sum())} of {len(mask)} images{shown}"))
    return mosaic_figure(f"{tr.task}: {HEADLINE_SPLIT} faces, {ref} vs {baseline}", blocks)


# --- calibration ------------------------------------------------------------------------------------------------

def reliability_figure(tr: TaskResults, colors) -> Figure:
    fig = new_figure(5.0, 5.6)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for model in tr.models:
        centres, mean_conf, accuracy, counts = reliability_curve(tr.labels, tr.proba[model])
        ece = expected_calibration_error(tr.labels, tr.proba[model])
        used = counts > 0
        top.plot(mean_conf[used], accuracy[used], marker="o", ms=3.5, lw=1.4, color=colors[model],
                 label=f"{model} (ECE {ece:.3f})")
        bottom.step(centres, counts / counts.sum(), where="mid", color=colors[model], lw=1.2)
    top.set(ylim=(0, 1.02), ylabel="accuracy", title=f"{tr.task}: reliability (top-label confidence)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.set(xlim=(0, 1), xlabel="top-label confidence", ylabel="share of images")
    bottom.grid(alpha=0.3)
    return fig


# --- images and models ------------------------------------------------------------------------------------------

def _synthetic_seed(source: str) -> int:
    match = re.search(r"seed=(\d+)", source or "")
    return int(match.group(1)) if match else 0


def load_results_dataset(info: dict) -> tuple[Dataset | None, str]:
    """The data set a cell's manifest names, re-loaded and checked against its fingerprint, or (None, why not)."""
    fingerprint = info.get("fingerprint")
    if fingerprint in _DATASETS:
        return _DATASETS[fingerprint], ""
    name, source = info.get("name"), info.get("source") or ""
    try:
        if name == "synthetic":
            from fer_bench.data.synthetic import make_synthetic

            dataset = make_synthetic(seed=_synthetic_seed(source))
        else:
            if not source or not Path(source).exists():
                return None, f"images not available: the data set {source or '(no source recorded)'} is not found"
            from fer_bench.data import load_path

            dataset = load_path(source)
    except (FerBenchError, OSError) as exc:
        return None, f"images not available: cannot re-load {source or name} ({exc})"
    if dataset.fingerprint != fingerprint:
        where = "the default synthetic data" if name == "synthetic" else source
        return None, (f"images not available: {where} has fingerprint {dataset.fingerprint}, the results were "
                      f"computed on {fingerprint}")
    _DATASETS[fingerprint] = dataset
    return dataset, ""


def load_fitted_model(cell: StoredCell):
    """(model, "") from `<cell>/model/`, or (None, why not)."""
    from fer_bench.models.base import load_model

    directory = cell.path / "model"
    if not (directory / "estimator.json").is_file():
        return None, MODELS_MISSING
    try:
        return load_model(directory), ""
    except ImportError as exc:
        return None, f"{cell.model} model cannot be loaded here (needs {exc.name or exc})"
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"{cell.model} model in {directory} cannot be loaded ({type(exc).__name__}: {exc})"


def _face_images(dataset: Dataset, ids: np.ndarray) -> np.ndarray:
    part = dataset.split(HEADLINE_SPLIT)
    position = {image_id: k for k, image_id in enumerate(part.ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise FerBenchError(f"{HEADLINE_SPLIT} image {missing[0]} of the stored predictions is not in "
                            f"{dataset.source}")
    return part.images[[position[i] for i in ids]]


def _keras_parts(model):
    """(keras model, last conv layer name) of a fer-bench CNN, or None when the model is not one."""
    keras_model = getattr(model, "keras_model_", None)
    if keras_model is None:
        return None
    conv = getattr(model, "last_conv_layer_name_", None) or saliency.last_conv_layer_name(keras_model)
    return keras_model, conv


def _class_faces(labels: np.ndarray, n_classes: int, per_class: int) -> np.ndarray:
    """Evenly spaced (deterministic) PrivateTest indices of each class, up to `per_class` each."""
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen.append(members[np.unique(np.linspace(0, len(members) - 1, min(per_class, len(members)))
                                            .round().astype(int))])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def class_faces_per_class(tr: TaskResults, models: list[str], n_other_faces: int) -> int:
    """How many faces per class the class-average occlusion maps can afford: the occlusion maps of `models` on
    n_other_faces + n_classes * k faces should take at most OCCLUSION_SECONDS_PER_TASK at the predict throughput
    stored in the cells' timings.json (so the choice is the same every time the report is made)."""
    seconds_per_image = 0.0
    for model in models:
        rate = tr.cells[model].timings.get(f"predict_images_per_s_{HEADLINE_SPLIT}")
        if rate:
            seconds_per_image += 1.0 / rate
    if seconds_per_image == 0:
        return CLASS_SALIENCY_FACES
    affordable_faces = OCCLUSION_SECONDS_PER_TASK / (seconds_per_image * saliency.occlusion_positions())
    per_class = int((affordable_faces - n_other_faces) // tr.n_classes)
    return int(np.clip(per_class, MIN_CLASS_SALIENCY_FACES, CLASS_SALIENCY_FACES))


def _example_faces(tr: TaskResults, models: list[str]) -> np.ndarray:
    """Per class, the faces every loaded model classifies right with the highest mean true-class probability
    (falling back to all faces of the class)."""
    per_class = max(1, int(np.ceil(SALIENCY_FACES / tr.n_classes)))
    true_proba = np.mean([tr.proba[m][np.arange(len(tr.labels)), tr.labels] for m in models], axis=0)
    all_right = np.all([tr.pred(m) == tr.labels for m in models], axis=0)
    chosen = []
    for c in range(tr.n_classes):
        members = np.flatnonzero((tr.labels == c) & all_right)
        if not len(members):
            members = np.flatnonzero(tr.labels == c)
        chosen.extend(members[np.lexsort((members, -true_proba[members]))][:per_class])
    return np.array(chosen, dtype=np.int64)


def _occlusion_limit(maps: np.ndarray) -> float:
    """Symmetric colour limit of a set of occlusion maps (robust maximum, never 0)."""
    value = float(np.percentile(np.abs(maps), 99.5)) if maps.size else 0.0
    return value if value > 1e-6 else 1e-6


def _occlusion_tiles(faces, maps) -> list[np.ndarray]:
    """Occlusion maps over their faces, red where hiding the area lowers the class probability, blue where it
    raises it; one colour scale for the whole row so the faces can be compared."""
    limit = _occlusion_limit(maps)
    return [to_tile(heat_tile(face, m, "RdBu_r", -limit, limit, signed=True)) for face, m in zip(faces, maps,
                                                                                                  strict=True)]


def saliency_figure(tr: TaskResults, faces, occlusion, cnn_maps) -> Figure:
    """Columns: example faces; rows: the face, the CNN's gradient maps, each model's occlusion map."""
    tiles = [[to_tile(gray_tile(face)) for face in faces]]
    labels = ["face"]
    if cnn_maps is not None:
        for key, label in (("gradient", "CNN gradient"), ("smoothgrad", "CNN SmoothGrad")):
            tiles.append([to_tile(colour_tile(m, "magma", 0, 1)) for m in saliency.normalise_map(cnn_maps[key])])
            labels.append(label)
        tiles.append([to_tile(heat_tile(face, cam, "jet", 0, 1)) for face, cam in zip(faces, cnn_maps["gradcam"],
                                                                                       strict=True)])
        labels.append("CNN Grad-CAM")
    for model, maps in occlusion.items():
        tiles.append(_occlusion_tiles(faces, maps))
        labels.append(f"occlusion: {model}")
    titles = [[tr.class_names[c] for c in cnn_maps["targets"]]] if cnn_maps is not None else None
    return mosaic_figure(f"{tr.task}: saliency for the true class", [MosaicBlock(tiles, titles, labels)],
                         label_width=110)


def class_saliency_figure(tr: TaskResults, faces, labels, occlusion) -> Figure:
    """Columns: classes; rows: the mean face, then each model's mean occlusion map over the class's faces."""
    classes = [c for c in range(tr.n_classes) if (labels == c).any()]
    mean_faces = [faces[labels == c].mean(axis=0) for c in classes]
    tiles = [[to_tile(gray_tile(face)) for face in mean_faces]]
    row_labels = ["mean face"]
    for model, maps in occlusion.items():
        tiles.append(_occlusion_tiles(mean_faces, np.stack([maps[labels == c].mean(axis=0) for c in classes])))
        row_labels.append(f"{model}")
    titles = [[f"{tr.class_names[c]} (n={int((labels == c).sum())})" for c in classes]] + \
        [[""] * len(classes)] * len(occlusion)
    return mosaic_figure(f"{tr.task}: class-average occlusion map per model",
                         [MosaicBlock(tiles, titles, row_labels)], label_width=80)


def error_saliency_figure(tr: TaskResults, faces, labels, predicted, reference: str, occlusion, cams) -> Figure:
    names = tr.class_names
    tiles = [[to_tile(gray_tile(face)) for face in faces]]
    row_labels = ["face"]
    titles = [[f"true {names[t]}\n{reference}: {names[p]}" for t, p in zip(labels, predicted, strict=True)]]
    if cams is not None:
        for key, label in (("predicted", "CNN Grad-CAM, predicted"), ("true", "CNN Grad-CAM, true")):
            tiles.append([to_tile(heat_tile(face, cam, "jet", 0, 1)) for face, cam in zip(faces, cams[key],
                                                                                           strict=True)])
            row_labels.append(label)
    for model, maps in occlusion.items():
        tiles.append(_occlusion_tiles(faces, maps))
        row_labels.append(f"occlusion: {model}")
    titles += [[""] * len(faces)] * (len(tiles) - 1)
    if not len(faces):
        tiles, titles = [[None]], [[f"{reference} makes no mistakes"]]
        row_labels = [""]
    return mosaic_figure(f"{tr.task}: saliency on {reference}'s most confident mistakes (occlusion: true class)",
                         [MosaicBlock(tiles, titles, row_labels)], label_width=150)


def logreg_templates_figure(templates: dict[str, tuple[list[str], np.ndarray]]) -> Figure:
    ncols = max(len(names) for names, _ in templates.values())
    fig = new_figure(1.2 + 1.15 * ncols, 0.5 + 1.35 * len(templates))
    axes = fig.subplots(len(templates), ncols, squeeze=False)
    for row, (task, (names, weights)) in enumerate(templates.items()):
        limit = float(np.percentile(np.abs(weights), 99.5)) or 1.0
        image = None
        for col in range(ncols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(weights):
                ax.set_axis_off()
                continue
            image = ax.imshow(weights[col], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(names[col], fontsize=8)
        axes[row, 0].set_ylabel(task, fontsize=9)
        fig.colorbar(image, ax=axes[row, :].tolist(), shrink=0.8, pad=0.01, label="weight")
    fig.suptitle("logistic regression: per-class pixel weights (red: brighter pixels raise the class score)",
                 fontsize=9)
    return fig


def hog_figure(faces, titles, visualisations) -> Figure:
    tiles = [[to_tile(gray_tile(face)) for face in faces]]
    # square root: skimage draws weak orientations very dim
    tiles.append([to_tile(colour_tile(np.sqrt(v), "gray", 0, max(float(np.sqrt(v).max()), 1e-12)))
                  for v in visualisations])
    return mosaic_figure("HOG+SVM: the gradient-orientation histograms the SVM sees",
                         [MosaicBlock(tiles, [titles, [""] * len(titles)], ["face", "HOG"])], label_width=50)


# --- the sections -------------------------------------------------------------------------------------------

def _prediction_figures(writer: _Writer, tr: TaskResults, colors) -> None:
    where = f"({HEADLINE_SPLIT}, {tr.seeds_text()}, n={len(tr.labels)})"
    t = tr.task
    kind = "ROC curve" if tr.n_classes == 2 else "macro one-vs-rest ROC curve"
    writer.figure("roc", roc_figure(tr, colors), f"roc_{t}", f"{t} ROC",
                  f"{t}: {kind} of every model, AUC in the legend {where}.")
    if tr.n_classes > 2:
        writer.figure("roc", roc_per_class_figure(tr, colors), f"roc_per_class_{t}", f"{t} ROC per class",
                      f"{t}: one-vs-rest ROC curve of each class, every model, per-class AUC in the legends {where}.")
    writer.figure("confusion", confusion_figure(tr), f"confusion_{t}", f"{t} confusion matrices",
                  f"{t}: confusion matrices of the models side by side {where}.")
    if tr.reference and tr.baselines:
        writer.figure("confusion", confusion_difference_figure(tr), f"confusion_diff_{t}",
                      f"{t} confusion difference", f"{t}: {tr.reference} minus each baseline, row-normalised "
                      f"confusion matrices in percentage points {where}.")
    writer.figure("gain", recall_figure(tr, colors), f"recall_{t}", f"{t} per-class recall",
                  f"{t}: per-class recall of each model, 95% bootstrap intervals {where}.")
    if tr.reference and tr.baselines:
        writer.figure("gain", gain_figure(tr, colors), f"recall_gain_{t}", f"{t} per-class recall gain",
                      f"{t}: per-class recall gain of {tr.reference} over each baseline, paired 95% bootstrap "
                      f"intervals {where}.")
    writer.figure("gain", confused_pairs_figure(tr, colors), f"confused_pairs_{t}", f"{t} top confusions",
                  f"{t}: each model's {TOP_PAIRS} most frequent confusions (true→predicted) {where}.")
    writer.figure("calibration", reliability_figure(tr, colors), f"reliability_{t}", f"{t} reliability diagram",
                  f"{t}: reliability diagram of every model, ECE in the legend {where}.")


def training_history(cell: StoredCell) -> list[dict] | None:
    """The CNN's per-epoch history of a cell: from params.json (runs since it is stored there), else from the
    saved model's cnn_params.json (git-ignored, so only on the machine that ran the cell); None if neither."""
    history = cell.params.get("history")
    if history:
        return history
    saved = Path(cell.path) / "model" / "cnn_params.json"
    try:
        return json.loads(saved.read_text()).get("history") or None
    except (OSError, ValueError):
        return None


def training_curves_figure(histories: dict[str, list[dict]]) -> Figure:
    """Per task: PublicTest and training accuracy after each epoch against cumulative training minutes."""
    fig = new_figure(4.2 * len(histories), 3.4)
    axes = fig.subplots(1, len(histories), squeeze=False)[0]
    for ax, (task, history) in zip(axes, histories.items(), strict=True):
        minutes = np.cumsum([r["seconds"] for r in history]) / 60
        validation = np.array([r.get("val_accuracy") or np.nan for r in history], dtype=float)
        ax.plot(minutes, 100 * np.array([r["accuracy"] for r in history], dtype=float), color="0.6",
                label="training (augmented)")
        ax.plot(minutes, 100 * validation, color="tab:blue", marker=".", label="PublicTest")
        if np.isfinite(validation).any():
            best = int(np.nanargmax(validation))
            ax.plot(minutes[best], 100 * validation[best], "o", color="tab:red",
                    label=f"kept: epoch {best + 1}, {100 * validation[best]:.1f}%")
        ax.set(title=f"{task}: {len(history)} epochs, {minutes[-1]:.0f} min", xlabel="training minutes",
               ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def _training_curves(writer: _Writer, results: list[TaskResults]) -> None:
    histories = {}
    for tr in results:
        if tr.reference:
            history = training_history(tr.cells[tr.reference])
            if history:
                histories[tr.task] = history
    if histories:
        writer.figure("training", training_curves_figure(histories), "cnn_training_curves", "CNN training curves",
                      f"The {REFERENCE_MODEL}'s accuracy after each epoch against cumulative training minutes "
                      "(epoch time includes the PublicTest evaluation); the red dot is the epoch whose weights "
                      "were kept. A point at minute m is not what an m-minute schedule would reach: the learning "
                      "rate follows the full schedule.")
    elif any(tr.reference for tr in results):
        writer.skipped("training", ["cnn_training_curves"], "CNN training curves: no per-epoch history stored")


def _face_grid_names(tr: TaskResults) -> list[str]:
    return [f"faces_{tr.task}_{b}" for b in tr.baselines] if tr.reference else []


def _saliency_names(tr: TaskResults) -> list[str]:
    return [f"saliency_{tr.task}", f"class_saliency_{tr.task}", f"saliency_errors_{tr.task}"]


def _face_grids(writer: _Writer, tr: TaskResults, faces) -> None:
    for baseline, name in zip(tr.baselines, _face_grid_names(tr), strict=True):
        writer.figure("gain", face_grid_figure(tr, baseline, faces), name, f"{tr.task} faces, {tr.reference} vs "
                      f"{baseline}", f"{tr.task}: {HEADLINE_SPLIT} faces {tr.reference} gets right and {baseline} "
                      f"wrong, the reverse, and both wrong ({tr.seeds_text()}).")


def _saliency_figures(writer: _Writer, tr: TaskResults, faces, models: dict) -> None:
    names = list(models)
    examples = _example_faces(tr, names)
    reference = tr.reference if tr.reference in models else names[0]
    predicted = tr.pred(reference)
    errors = _pick(np.flatnonzero(predicted != tr.labels), tr.labels, tr.proba[reference].max(axis=1), ERROR_FACES)
    per_class = class_faces_per_class(tr, names, len(examples) + len(errors))
    class_index = _class_faces(tr.labels, tr.n_classes, per_class)

    # One occlusion pass per model over every face any of the figures needs (always for the true class).
    needed = np.unique(np.concatenate([examples, class_index, errors]))
    occlusion = {m: saliency.occlusion_map(models[m].predict_proba, faces[needed], tr.labels[needed])
                 for m in names}
    row_of = {int(index): k for k, index in enumerate(needed)}

    def maps_of(index):
        rows = np.array([row_of[int(i)] for i in index], dtype=np.int64)
        return {m: maps[rows] for m, maps in occlusion.items()}

    cnn = _keras_parts(models[REFERENCE_MODEL]) if REFERENCE_MODEL in models else None
    cnn_maps = cams = None
    if cnn is not None:
        keras_model, conv = cnn
        targets = tr.labels[examples]
        cnn_maps = {"targets": targets,
                    "gradient": saliency.input_gradients(keras_model, faces[examples], targets),
                    "smoothgrad": saliency.smoothgrad(keras_model, faces[examples], targets, seed=0),
                    "gradcam": saliency.grad_cam(keras_model, faces[examples], targets, conv_layer_name=conv)}
        if reference == REFERENCE_MODEL:
            cams = {"predicted": saliency.grad_cam(keras_model, faces[errors], predicted[errors],
                                                   conv_layer_name=conv),
                    "true": saliency.grad_cam(keras_model, faces[errors], tr.labels[errors], conv_layer_name=conv)}

    if not writer.findings:  # the first task's maps (the headline task) are summarised in the findings
        writer.findings.append(lower_face_finding(tr, tr.labels[class_index], maps_of(class_index), reference))
    saliency_name, class_name, errors_name = _saliency_names(tr)
    t = tr.task
    cnn_text = "the CNN's vanilla gradient, SmoothGrad and Grad-CAM, then " if cnn else ""
    writer.figure("saliency", saliency_figure(tr, faces[examples], maps_of(examples), cnn_maps), saliency_name,
                  f"{t} saliency", f"{t}: {len(examples) // max(tr.n_classes, 1)} {HEADLINE_SPLIT} "
                  f"{'face' if len(examples) <= tr.n_classes else 'faces'} per class (ones every model gets right, "
                  f"where there are any): {cnn_text}each model's occlusion map, for the true class.")
    writer.figure("saliency", class_saliency_figure(tr, faces[class_index], tr.labels[class_index],
                                                    maps_of(class_index)), class_name, f"{t} class-average saliency",
                  f"{t}: where each class is decided: each model's occlusion map averaged over up to "
                  f"{per_class} {HEADLINE_SPLIT} faces of the class, drawn on their mean face.")
    writer.figure("saliency", error_saliency_figure(tr, faces[errors], tr.labels[errors], predicted[errors],
                                                    reference, maps_of(errors), cams), errors_name,
                  f"{t} saliency on mistakes", f"{t}: {reference}'s most confident {HEADLINE_SPLIT} mistakes: "
                  + ("the CNN's Grad-CAM for the predicted and for the true class, " if cams else "")
                  + "each model's occlusion map for the true class.")


def lower_face_share(maps: np.ndarray) -> float:
    """Share of the positive occlusion evidence (areas whose hiding lowers the true-class probability) that lies
    in the lower half of the face (rows 24-47 of 48: mouth and chin; the upper half holds brows and eyes)."""
    positive = np.clip(np.asarray(maps, dtype=float), 0, None)
    total = positive.sum()
    return float(positive[:, positive.shape[1] // 2:].sum() / total) if total > 0 else float("nan")


def lower_face_finding(tr: TaskResults, labels: np.ndarray, occlusion: dict, reference: str) -> str:
    """One sentence: where on the face each model's evidence lies (class-average faces), and for the reference
    model the classes decided most by the mouth and most by the eyes."""
    shares = ", ".join(f"{m} {_pct(lower_face_share(maps))}%" for m, maps in occlusion.items())
    by_class = [(lower_face_share(occlusion[reference][labels == k]), tr.class_names[k])
                for k in range(tr.n_classes) if np.any(labels == k)]
    by_class = sorted((share, name) for share, name in by_class if np.isfinite(share))
    text = (f"Saliency ({tr.task}, occlusion maps of the class-average faces): the share of each model's evidence "
            f"in the lower half of the face (mouth) is {shares}")
    if len(by_class) >= 2:
        text += (f"; for the {reference} it is highest for {by_class[-1][1]} ({_pct(by_class[-1][0])}%) and lowest "
                 f"for {by_class[0][1]} ({_pct(by_class[0][0])}%, decided more by brows and eyes)")
    return text + "."


def _load_models(tr: TaskResults, names: list[str]) -> tuple[dict, dict]:
    """The fitted models `names` of a task that can be loaded, and why the others cannot."""
    models, missing = {}, {}
    for name in names:
        model, why = load_fitted_model(tr.cells[name])
        if model is None:
            missing[name] = why
        else:
            models[name] = model
    return models, missing


def _model_figures(writer: _Writer, results: list[TaskResults]) -> None:
    """Face grids and saliency per task; logistic-regression templates and HOG once for all tasks."""
    templates: dict[str, tuple[list[str], np.ndarray]] = {}
    templates_reason = hog_reason = MODELS_MISSING
    hog_faces = None
    for tr in results:
        dataset, data_reason = load_results_dataset(next(iter(tr.cells.values())).manifest["dataset"])
        faces = _face_images(dataset, tr.ids) if dataset is not None else None
        if faces is None:
            hog_reason = data_reason
            if tr.reference and tr.baselines:
                writer.skipped("gain", _face_grid_names(tr), f"{tr.task} face grids: {data_reason}")
        elif tr.reference and tr.baselines:
            _face_grids(writer, tr, faces)
        # Without the images only the logistic-regression templates can be drawn: load no other model (the CNN
        # alone takes seconds to import and load).
        models, missing = _load_models(tr, tr.models if faces is not None else
                                       [m for m in tr.models if m == LOGREG_MODEL])
        if faces is not None and hog_faces is None and HOG_MODEL in models:
            hog_faces = (tr, faces, models[HOG_MODEL])
        elif HOG_MODEL in missing:
            hog_reason = missing[HOG_MODEL]
        if LOGREG_MODEL in models and getattr(models[LOGREG_MODEL], "coef_images_", None) is not None:
            templates[tr.task] = (tr.class_names, np.asarray(models[LOGREG_MODEL].coef_images_, dtype=float))
        elif LOGREG_MODEL in missing:
            templates_reason = missing[LOGREG_MODEL]
        if faces is None or not models:
            why = data_reason if faces is None else "; ".join(dict.fromkeys(missing.values()))
            writer.skipped("saliency", _saliency_names(tr), f"{tr.task} saliency: {why}")
            continue
        if missing:
            writer.note("saliency", f"*{tr.task}: no saliency maps of " + "; ".join(
                f"{m} ({why})" for m, why in missing.items()) + ".*")
        _saliency_figures(writer, tr, faces, models)

    if templates:
        writer.figure("saliency", logreg_templates_figure(templates), "logreg_templates",
                      "logistic-regression templates", "Logistic regression: each class's pixel weights as a "
                      "48x48 image, one row per task (red: a brighter pixel raises the class score).")
    elif any(LOGREG_MODEL in tr.cells for tr in results):
        writer.skipped("saliency", ["logreg_templates"], f"logistic-regression templates: {templates_reason}")
    if hog_faces is not None:
        _hog(writer, *hog_faces)
    elif any(HOG_MODEL in tr.cells for tr in results):
        writer.skipped("saliency", ["hog_svm_hog"], f"HOG visualisation: {hog_reason}")


def _hog(writer: _Writer, tr: TaskResults, faces, model) -> None:
    """One face per class and its HOG picture, drawn with the fitted model's HOG settings."""
    try:
        from fer_bench.baselines.features import hog_visualisation
    except ImportError as exc:
        writer.skipped("saliency", ["hog_svm_hog"], f"HOG visualisation: cannot import it ({exc})")
        return
    settings = model.hog_settings() if hasattr(model, "hog_settings") else {}
    picked = _class_faces(tr.labels, tr.n_classes, 1)
    visualisations = [np.asarray(hog_visualisation(face, **settings), dtype=float) for face in faces[picked]]
    cell = settings.get("cell_sizes", (None,))[0]
    writer.figure("saliency", hog_figure(faces[picked], [tr.class_names[tr.labels[i]] for i in picked],
                                         visualisations), "hog_svm_hog", "HOG visualisation",
                  f"HOG+SVM: one {HEADLINE_SPLIT} face per class ({tr.task}) and its HOG picture: the gradient "
                  f"orientations of each {f'{cell}x{cell} ' if cell else ''}cell, the features the SVM sees.")


def report_sections(report) -> None:
    """Write every figure under `<report.out>/figures/` and add the figure sections to `report.sections`."""
    results = task_results(report.cells)
    if not results:
        return
    colors = _model_colors(list(dict.fromkeys(m for tr in results for m in tr.models)))
    writer = _Writer(report.out)
    for tr in results:
        _prediction_figures(writer, tr, colors)
        if not tr.reference:
            writer.note("gain", f"*{tr.task}: no {REFERENCE_MODEL} cells, so no comparison with the CNN.*")
    _training_curves(writer, results)
    _model_figures(writer, results)
    report.findings.extend(writer.findings)
    for key, (title, order) in _SECTIONS.items():
        if writer.parts.get(key):
            parts = ([_INTROS[key]] if key in _INTROS else []) + writer.parts[key]
            report.sections.append(ReportSection(title, "\n\n".join(parts), order=order))
    print(f"report: {len(writer.written)} figures written to {writer.dir}", file=sys.stderr)
