"""What the models look at: occlusion maps of every model, the gradient maps of a model that offers a network
(`saliency_network()`), class-average maps and maps on mistakes; pictures of what a model learned
(`learned_pictures()`: logistic-regression templates, HOG settings).

These figures need the images (re-loaded from the data set the cells name, or the caller's) and the fitted
models (`<cell>/model/`, git-ignored); without them the section says why and leaves PNGs of an earlier report in
place. The maps are computed first (`saliency_maps_of_task`), then drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from fer_bench import saliency as saliency_maps
from fer_bench.figures.data import FigureContext, FigureOutput, TaskResults, figure
from fer_bench.figures.mosaics import MosaicBlock, colour_tile, gray_tile, heat_tile, mosaic_figure, pick, to_tile
from fer_bench.figures.png import new_figure, pct
from fer_bench.models.capabilities import offered
from fer_bench.settings import HEADLINE_SPLIT

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
HOG_FIGURE = "hog_svm_hog"
TEMPLATES_FIGURE = "logreg_templates"

INTRO = (f"*Occlusion* (all models, through `predict_proba`): a gray {saliency_maps.OCCLUSION_PATCH}x"
         f"{saliency_maps.OCCLUSION_PATCH} patch slides over the face in steps of {saliency_maps.OCCLUSION_STRIDE} "
         "pixels; each pixel shows the mean drop of the true-class probability over the patches "
         "covering it. Red: hiding the area lowers the probability (the model relies on it); blue: hiding it "
         "raises it. One colour scale per row, so faces compare within a model. *Gradient* and *SmoothGrad* "
         f"({saliency_maps.SMOOTHGRAD_SAMPLES} noisy copies, noise {saliency_maps.SMOOTHGRAD_NOISE:.0%} of the pixel "
         "range): magnitude of the derivative of the CNN's logit "
         "for the class w.r.t. each pixel, each map scaled to its own 99th percentile. *Grad-CAM*: the "
         "CNN's last convolution block weighted by the logit's mean gradient, rectified and scaled to 0..1.")


def class_faces(labels: np.ndarray, n_classes: int, per_class: int) -> np.ndarray:
    """Evenly spaced (deterministic) PrivateTest indices of each class, up to `per_class` each."""
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen.append(members[np.unique(np.linspace(0, len(members) - 1, min(per_class, len(members)))
                                            .round().astype(int))])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def class_faces_per_class(tr: TaskResults, models: list[str], n_other_faces: int,
                          split: str = HEADLINE_SPLIT) -> int:
    """How many faces per class the class-average occlusion maps can afford: the occlusion maps of `models` on
    n_other_faces + n_classes * k faces should take at most OCCLUSION_SECONDS_PER_TASK at the predict throughput
    stored in the cells' timings.json (so the choice is the same every time the report is made)."""
    seconds_per_image = 0.0
    for model in models:
        rate = tr.cells[model].timings.get(f"predict_images_per_s_{split}")
        if rate:
            seconds_per_image += 1.0 / rate
    if seconds_per_image == 0:
        return CLASS_SALIENCY_FACES
    affordable_faces = OCCLUSION_SECONDS_PER_TASK / (seconds_per_image * saliency_maps.occlusion_positions())
    per_class = int((affordable_faces - n_other_faces) // tr.n_classes)
    return int(np.clip(per_class, MIN_CLASS_SALIENCY_FACES, CLASS_SALIENCY_FACES))


def example_faces(tr: TaskResults, models: list[str]) -> np.ndarray:
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
            tiles.append([to_tile(colour_tile(m, "magma", 0, 1)) for m in saliency_maps.normalise_map(cnn_maps[key])])
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



def lower_face_share(maps: np.ndarray) -> float:
    """Share of the positive occlusion evidence (areas whose hiding lowers the true-class probability) that lies
    in the lower half of the face (rows 24-47 of 48: mouth and chin; the upper half holds brows and eyes)."""
    positive = np.clip(np.asarray(maps, dtype=float), 0, None)
    total = positive.sum()
    return float(positive[:, positive.shape[1] // 2:].sum() / total) if total > 0 else float("nan")


def lower_face_finding(tr: TaskResults, labels: np.ndarray, occlusion: dict, reference: str) -> str:
    """One sentence: where on the face each model's evidence lies (class-average faces), and for the reference
    model the classes decided most by the mouth and most by the eyes."""
    shares = ", ".join(f"{m} {pct(lower_face_share(maps))}%" for m, maps in occlusion.items())
    by_class = [(lower_face_share(occlusion[reference][labels == k]), tr.class_names[k])
                for k in range(tr.n_classes) if np.any(labels == k)]
    by_class = sorted((share, name) for share, name in by_class if np.isfinite(share))
    text = (f"Saliency ({tr.task}, occlusion maps of the class-average faces): the share of each model's evidence "
            f"in the lower half of the face (mouth) is {shares}")
    if len(by_class) >= 2:
        text += (f"; for the {reference} it is highest for {by_class[-1][1]} ({pct(by_class[-1][0])}%) and lowest "
                 f"for {by_class[0][1]} ({pct(by_class[0][0])}%, decided more by brows and eyes)")
    return text + "."



# --- computing the maps ----------------------------------------------------------------------------------------

@dataclass
class TaskSaliency:
    """The faces the saliency figures show (indices into the task's headline-split images) and their maps."""

    examples: np.ndarray
    class_index: np.ndarray
    errors: np.ndarray
    per_class: int
    reference: str  # whose mistakes are shown
    predicted: np.ndarray  # the reference's predictions
    occlusion: dict[str, np.ndarray]  # model -> maps of `needed`, in order
    needed: np.ndarray
    gradients: dict | None  # the network model's maps of the examples: targets, gradient, smoothgrad, gradcam
    error_cams: dict | None  # its Grad-CAM of the errors for the predicted and the true class

    def maps_of(self, index) -> dict[str, np.ndarray]:
        row_of = {int(i): k for k, i in enumerate(self.needed)}
        rows = np.array([row_of[int(i)] for i in index], dtype=np.int64)
        return {m: maps[rows] for m, maps in self.occlusion.items()}


def saliency_maps_of_task(tr: TaskResults, faces: np.ndarray, models: dict, split: str) -> TaskSaliency:
    """Every map the task's saliency figures draw: one occlusion pass per model over every face any figure needs
    (always for the true class), and the gradient maps of the first model that offers a saliency network."""
    names = list(models)
    examples = example_faces(tr, names)
    # the first model offering a network for gradient maps (built once: the CNN's is a new Keras model)
    network_model, network = next(((m, parts) for m in names
                                   if (parts := offered(models[m], "saliency_network")) is not None), (None, None))
    reference = tr.reference if tr.reference in models else names[0]
    predicted = tr.pred(reference)
    errors = pick(np.flatnonzero(predicted != tr.labels), tr.labels, tr.proba[reference].max(axis=1), ERROR_FACES)
    per_class = class_faces_per_class(tr, names, len(examples) + len(errors), split)
    class_index = class_faces(tr.labels, tr.n_classes, per_class)
    needed = np.unique(np.concatenate([examples, class_index, errors]))
    occlusion = {m: saliency_maps.occlusion_map(models[m].predict_proba, faces[needed], tr.labels[needed])
                 for m in names}
    gradients = error_cams = None
    if network_model is not None:
        keras_model, conv = network
        targets = tr.labels[examples]
        gradients = {"targets": targets,
                     "gradient": saliency_maps.input_gradients(keras_model, faces[examples], targets),
                     "smoothgrad": saliency_maps.smoothgrad(keras_model, faces[examples], targets, seed=0),
                     "gradcam": saliency_maps.grad_cam(keras_model, faces[examples], targets, conv_layer_name=conv)}
        if reference == network_model:
            error_cams = {kind: saliency_maps.grad_cam(keras_model, faces[errors], classes[errors],
                                                       conv_layer_name=conv)
                          for kind, classes in (("predicted", predicted), ("true", tr.labels))}
    return TaskSaliency(examples, class_index, errors, per_class, reference, predicted, occlusion, needed, gradients,
                        error_cams)


# --- registered figures -------------------------------------------------------------------------------------------

def saliency_names(tr: TaskResults) -> list[str]:
    return [f"saliency_{tr.task}", f"class_saliency_{tr.task}", f"saliency_errors_{tr.task}"]


def draw_saliency(output: FigureOutput, ctx: FigureContext, tr: TaskResults) -> None:
    """The three saliency figures of a task, and (for the first task drawn) the lower-face finding."""
    faces, why = ctx.faces(tr)
    models, missing = ctx.models(tr, tr.models) if faces is not None else ({}, {})
    if faces is None or not models:
        why = why or "; ".join(dict.fromkeys(missing.values()))
        output.skipped("saliency", saliency_names(tr), f"{tr.task} saliency: {why}")
        return
    if missing:
        output.note("saliency", f"*{tr.task}: no saliency maps of " + "; ".join(
            f"{m} ({reason})" for m, reason in missing.items()) + ".*")
    split = ctx.settings.headline_split
    s = saliency_maps_of_task(tr, faces, models, split)
    if not output.findings:  # the first task's maps (the headline task) are summarised in the findings
        output.findings.append(lower_face_finding(tr, tr.labels[s.class_index], s.maps_of(s.class_index),
                                                  s.reference))
    saliency_name, class_name, errors_name = saliency_names(tr)
    t = tr.task
    cnn_text = "the CNN's vanilla gradient, SmoothGrad and Grad-CAM, then " if s.gradients else ""
    output.figure("saliency", saliency_figure(tr, faces[s.examples], s.maps_of(s.examples), s.gradients),
                  saliency_name, f"{t} saliency", f"{t}: {len(s.examples) // max(tr.n_classes, 1)} {split} "
                  f"{'face' if len(s.examples) <= tr.n_classes else 'faces'} per class (ones every model gets right, "
                  f"where there are any): {cnn_text}each model's occlusion map, for the true class.")
    output.figure("saliency", class_saliency_figure(tr, faces[s.class_index], tr.labels[s.class_index],
                                                    s.maps_of(s.class_index)), class_name,
                  f"{t} class-average saliency", f"{t}: where each class is decided: each model's occlusion map "
                  f"averaged over up to {s.per_class} {split} faces of the class, drawn on their mean face.")
    output.figure("saliency", error_saliency_figure(tr, faces[s.errors], tr.labels[s.errors], s.predicted[s.errors],
                                                    s.reference, s.maps_of(s.errors), s.error_cams), errors_name,
                  f"{t} saliency on mistakes", f"{t}: {s.reference}'s most confident {split} mistakes: "
                  + ("the CNN's Grad-CAM for the predicted and for the true class, " if s.error_cams else "")
                  + "each model's occlusion map for the true class.")


def draw_templates(output: FigureOutput, ctx: FigureContext) -> None:
    """Pixel templates (learned_pictures()["templates"]) of every model offering them, one row per task."""
    templates, reason = {}, None
    for tr in ctx.results:
        for name in tr.models:
            model, why = ctx.model(tr.cells[name])
            if model is None:
                reason = why
            elif "templates" in (pictures := offered(model, "learned_pictures") or {}):
                templates[tr.task] = (tr.class_names, np.asarray(pictures["templates"], dtype=float))
    if templates:
        output.figure("saliency", logreg_templates_figure(templates), TEMPLATES_FIGURE,
                      "logistic-regression templates", "Logistic regression: each class's pixel weights as a "
                      "48x48 image, one row per task (red: a brighter pixel raises the class score).")
    elif reason is not None:
        output.skipped("saliency", [TEMPLATES_FIGURE], f"logistic-regression templates: {reason}")


def draw_hog(output: FigureOutput, ctx: FigureContext) -> None:
    """One face per class and its HOG picture, drawn with the settings of the first model offering them
    (learned_pictures()["hog_settings"]), on the first task with images."""
    reason = None
    for tr in ctx.results:
        faces, why = ctx.faces(tr)
        if faces is None:
            reason = why
            continue
        for name in tr.models:
            model, why = ctx.model(tr.cells[name])
            if model is None:
                reason = why
            elif "hog_settings" in (pictures := offered(model, "learned_pictures") or {}):
                _draw_hog(output, tr, faces, pictures["hog_settings"], ctx.settings)
                return
    if reason is not None:
        output.skipped("saliency", [HOG_FIGURE], f"HOG visualisation: {reason}")


def _draw_hog(output: FigureOutput, tr: TaskResults, faces, settings: dict, report_settings) -> None:
    try:
        from fer_bench.baselines.features import hog_visualisation
    except ImportError as exc:
        output.skipped("saliency", [HOG_FIGURE], f"HOG visualisation: cannot import it ({exc})")
        return
    picked = class_faces(tr.labels, tr.n_classes, 1)
    visualisations = [np.asarray(hog_visualisation(face, **settings), dtype=float) for face in faces[picked]]
    cell = settings.get("cell_sizes", (None,))[0]
    output.figure("saliency", hog_figure(faces[picked], [tr.class_names[tr.labels[i]] for i in picked],
                                         visualisations), HOG_FIGURE, "HOG visualisation",
                  f"HOG+SVM: one {report_settings.headline_split} face per class ({tr.task}) and its HOG picture: the "
                  f"gradient orientations of each {f'{cell}x{cell} ' if cell else ''}cell, the features the SVM sees.")


SALIENCY = figure("saliency", "saliency", "images models", draw_saliency)
TEMPLATES = figure("logreg_templates", "saliency", "models", draw_templates, scope="grid")
HOG = figure("hog", "saliency", "images models", draw_hog, scope="grid")

#: this module's figures, in the order their markdown appears within a section
FIGURES = (SALIENCY, TEMPLATES, HOG,)
