"""What the models look at: occlusion maps of every model, the gradient maps of a model that offers a network
(`saliency_network()`), class-average maps and maps on mistakes; pictures of what a model learned
(`learned_pictures()`: logistic-regression templates, HOG settings).

Every map comes from the cells' maps.npz (computed with the cell, fer_bench/cell_maps.py, for faces chosen from
what a cell knows); the faces are the data set's, re-loaded or the caller's. No figure loads a fitted model.
Without the images the figures are named in one line; a cell without maps.npz is left out of them, said once.
The faces each figure shows are chosen first (`task_saliency`), then drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.cell_maps import EXAMPLE_FACES, SALIENCY_FACES_PER_CLASS, CellMaps, class_faces
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, Scope, SectionOutput, TaskResults
from fer_bench.figures.mosaics import MosaicBlock, colour_tile, gray_tile, heat_tile, mosaic_figure, to_tile
from fer_bench.figures.png import new_figure, pct

HOG_FIGURE = "hog_svm_hog"
TEMPLATES_FIGURE = "logreg_templates"


def examples_per_class(n_classes: int) -> int:
    """Example faces shown per class: one, or more so that there are at least EXAMPLE_FACES in all."""
    return max(1, int(np.ceil(EXAMPLE_FACES / n_classes)))


def example_faces(tr: TaskResults, models: list[str], candidates: np.ndarray) -> np.ndarray:
    """Per class, among the `candidates` (indices of the cells' example candidates), the faces every model with
    maps classifies right with the highest mean true-class probability (falling back to the class's candidates)."""
    per_class = examples_per_class(tr.n_classes)
    true_proba = np.mean([tr.proba[m][np.arange(len(tr.labels)), tr.labels] for m in models], axis=0)
    all_right = np.all([tr.pred(m) == tr.labels for m in models], axis=0)
    chosen = []
    for c in range(tr.n_classes):
        members = candidates[(tr.labels[candidates] == c) & all_right[candidates]]
        if not len(members):
            members = candidates[tr.labels[candidates] == c]
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


def saliency_figure(tr: TaskResults, faces, occlusion, network_maps, network: str | None = None) -> Figure:
    """Columns: example faces; rows: the face, the gradient maps of the network model `network` (when one has
    them), each model's occlusion map. Every row is labelled with the model it comes from."""
    tiles = [[to_tile(gray_tile(face)) for face in faces]]
    labels = ["face"]
    if network_maps is not None:
        for key, label in (("gradient", "gradient"), ("smoothgrad", "SmoothGrad")):
            tiles.append([to_tile(colour_tile(m, "magma", 0, 1)) for m in network_maps[key]])
            labels.append(f"{network}: {label}")
        tiles.append([to_tile(heat_tile(face, cam, "jet", 0, 1)) for face, cam in zip(faces, network_maps["gradcam"],
                                                                                       strict=True)])
        labels.append(f"{network}: Grad-CAM")
    for model, maps in occlusion.items():
        tiles.append(_occlusion_tiles(faces, maps))
        labels.append(f"occlusion: {model}")
    titles = [[tr.class_names[c] for c in network_maps["targets"]]] if network_maps is not None else None
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


def error_saliency_figure(tr: TaskResults, faces, labels, predicted, reference: str, occlusion: dict,
                          cams: dict | None) -> Figure:
    """Columns: the reference's most confident mistakes; rows: the face, its Grad-CAM for the predicted and the
    true class (with a network), its occlusion maps for the true and the predicted class."""
    names = tr.class_names
    tiles = [[to_tile(gray_tile(face)) for face in faces]]
    row_labels = ["face"]
    titles = [[f"true {names[t]}\n{reference}: {names[p]}" for t, p in zip(labels, predicted, strict=True)]]
    if cams is not None:
        for key, label in (("predicted", "Grad-CAM, predicted"), ("true", "Grad-CAM, true")):
            tiles.append([to_tile(heat_tile(face, cam, "jet", 0, 1)) for face, cam in zip(faces, cams[key],
                                                                                           strict=True)])
            row_labels.append(label)
    for key in ("true", "predicted"):
        tiles.append(_occlusion_tiles(faces, occlusion[key]))
        row_labels.append(f"occlusion, {key}")
    titles += [[""] * len(faces)] * (len(tiles) - 1)
    if not len(faces):
        tiles, titles = [[None]], [[f"{reference} makes no mistakes"]]
        row_labels = [""]
    return mosaic_figure(f"{tr.task}: saliency on {reference}'s most confident mistakes",
                         [MosaicBlock(tiles, titles, row_labels)], label_width=130)


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
    text = (f"**Saliency** ({tr.task}, occlusion maps of the class-average faces): the share of each model's evidence "
            f"in the lower half of the face (mouth) is {shares}")
    if len(by_class) >= 2:
        text += (f"; for the {reference} it is highest for {by_class[-1][1]} ({pct(by_class[-1][0])}%) and lowest "
                 f"for {by_class[0][1]} ({pct(by_class[0][0])}%, decided more by brows and eyes)")
    return text + "."



# --- choosing the faces --------------------------------------------------------------------------------------

@dataclass
class TaskSaliency:
    """The faces the saliency figures show (indices into the task's headline-split predictions) and their maps,
    taken from the cells' maps.npz."""

    examples: np.ndarray  # chosen among the example candidates
    class_index: np.ndarray  # the saliency faces every cell of the task maps
    occlusion: dict[str, np.ndarray]  # model -> occlusion maps of class_index, in order
    gradients: dict | None  # the network model's maps of the examples: targets, gradient, smoothgrad, gradcam
    gradients_model: str | None  # whose they are: the reference when it has network maps, else the first that has
    reference: str  # whose mistakes are shown
    errors: np.ndarray  # the reference's most confident mistakes
    error_predicted: np.ndarray
    error_occlusion: dict[str, np.ndarray]  # "true" / "predicted" class -> the reference's maps of the errors
    error_cams: dict[str, np.ndarray] | None  # the same for its Grad-CAM, when it has a network

    def maps_of(self, index) -> dict[str, np.ndarray]:
        rows = _rows_in(self.class_index, index)
        return {m: maps[rows] for m, maps in self.occlusion.items()}


def _rows_in(index: np.ndarray, wanted) -> np.ndarray:
    position = {int(i): k for k, i in enumerate(index)}
    return np.array([position[int(i)] for i in wanted], dtype=np.int64)


def _unit(stored: np.ndarray | None) -> np.ndarray | None:
    """Maps stored as uint8 0..255 back on 0..1."""
    return None if stored is None else stored.astype(np.float64) / 255.0


def usable_maps(tr: TaskResults, maps: dict[str, CellMaps], missing: dict[str, str]) -> tuple[dict, dict]:
    """The maps drawn together: those of the same saliency faces as the first model's, all among the task's
    predictions; the others join `missing` with the reason."""
    missing = dict(missing)
    known = set(tr.ids.tolist())
    usable = {}
    for name, cell_maps in maps.items():
        ids = [*cell_maps.saliency_ids.tolist(), *cell_maps.error_ids.tolist()]
        first = next(iter(usable.values()), cell_maps)
        if not known.issuperset(ids):
            missing[name] = f"its maps.npz names {tr.task} images that are not among its predictions"
        elif not (np.array_equal(cell_maps.saliency_ids, first.saliency_ids)
                  and np.array_equal(cell_maps.example_ids, first.example_ids)):
            missing[name] = "its maps.npz maps other faces (made by another fer-bench: rerun `fer-bench maps --force`)"
        else:
            usable[name] = cell_maps
    return usable, missing


def task_saliency(tr: TaskResults, maps: dict[str, CellMaps]) -> TaskSaliency:
    """Which stored maps each saliency figure of a task shows: the example faces (chosen among the saliency
    faces from every model's stored predictions), the class faces, and the reference's stored mistakes."""
    names = list(maps)
    position = {image_id: k for k, image_id in enumerate(tr.ids.tolist())}
    class_index = np.array([position[i] for i in maps[names[0]].saliency_ids.tolist()], dtype=np.int64)
    candidates = np.array([position[i] for i in maps[names[0]].example_ids.tolist()], dtype=np.int64)
    examples = example_faces(tr, names, candidates)
    with_network = [m for m in names if maps[m].has_network_maps]
    network = tr.reference if tr.reference in with_network else next(iter(with_network), None)
    gradients = None
    if network is not None:
        rows = _rows_in(candidates, examples)
        gradients = {"targets": tr.labels[examples], **{key: _unit(getattr(maps[network], key))[rows]
                                                       for key in ("gradient", "smoothgrad", "gradcam")}}
    reference = tr.reference if tr.reference in maps else names[0]
    ref = maps[reference]
    cams = {"predicted": _unit(ref.error_gradcam_predicted), "true": _unit(ref.error_gradcam_true)}
    return TaskSaliency(examples, class_index, {m: maps[m].occlusion.astype(np.float64) for m in names}, gradients,
                        network, reference, np.array([position[i] for i in ref.error_ids.tolist()], dtype=np.int64),
                        ref.error_predicted, {"true": ref.error_occlusion_true.astype(np.float64),
                                              "predicted": ref.error_occlusion_predicted.astype(np.float64)},
                        cams if ref.has_network_maps else None)


# --- registered figures -------------------------------------------------------------------------------------------

def saliency_names(tr: TaskResults) -> list[str]:
    return [f"saliency_{tr.task}", f"class_saliency_{tr.task}", f"saliency_errors_{tr.task}"]


def draw_saliency(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    """The three saliency figures of a task, and (for the first task drawn) the lower-face finding."""
    maps, missing = usable_maps(tr, *ctx.task_maps(tr))
    if not maps:
        output.skipped(saliency_names(tr), f"{tr.task} saliency: " + "; ".join(
            dict.fromkeys(missing.values())))
        return
    faces, why = ctx.faces(tr)
    if faces is None:
        output.needs_images(saliency_names(tr), why)
        return
    if missing:
        output.note(f"*{tr.task}: no saliency maps of " + "; ".join(
            f"{m} ({reason})" for m, reason in missing.items()) + ".*")
    s = task_saliency(tr, maps)
    if not output.findings:  # the first task's maps (the headline task) are summarised in the findings
        output.findings.append(lower_face_finding(tr, tr.labels[s.class_index], s.occlusion, s.reference))
    _draw_task_saliency(output, tr, faces, s, ctx.settings.headline_split)


def saliency_captions(tr: TaskResults, s: TaskSaliency, split: str) -> tuple[str, str, str]:
    """The captions of a task's three saliency figures, each naming the models and seeds its maps come from."""
    t = tr.task

    def seed_of(model):
        return f"seed {tr.cells[model].seed}"

    occluded = ", ".join(f"{m} ({seed_of(m)})" for m in s.occlusion)
    network_text = (f"{s.gradients_model}'s ({seed_of(s.gradients_model)}) vanilla gradient, SmoothGrad and "
                    "Grad-CAM, then " if s.gradients else "")
    per_class = examples_per_class(tr.n_classes)
    return (f"{t}: up to {per_class} {split} {'face' if per_class == 1 else 'faces'} per class, among a few fixed "
            f"faces of each class (ones every model drawn gets right, where there are any): {network_text}the "
            f"occlusion map of {occluded}, for the true class.",
            f"{t}: where each class is decided: the occlusion map of {occluded}, averaged over up to "
            f"{SALIENCY_FACES_PER_CLASS} {split} faces of the class (evenly spaced in the data set), drawn on their "
            "mean face.",
            f"{t}: {s.reference}'s ({seed_of(s.reference)}) most confident {split} mistakes: "
            + ("its Grad-CAM for the predicted and for the true class, " if s.error_cams else "")
            + "its occlusion maps for the true and for the predicted class.")


def _draw_task_saliency(output: SectionOutput, tr: TaskResults, faces, s: TaskSaliency, split: str) -> None:
    saliency_name, class_name, errors_name = saliency_names(tr)
    t = tr.task
    examples_caption, class_caption, errors_caption = saliency_captions(tr, s, split)
    output.figure(saliency_figure(tr, faces[s.examples], s.maps_of(s.examples), s.gradients, s.gradients_model),
                  saliency_name, f"{t} saliency", examples_caption)
    output.figure(class_saliency_figure(tr, faces[s.class_index], tr.labels[s.class_index],
                                                    s.occlusion), class_name,
                  f"{t} class-average saliency", class_caption)
    output.figure(error_saliency_figure(tr, faces[s.errors], tr.labels[s.errors], s.error_predicted,
                                                    s.reference, s.error_occlusion, s.error_cams), errors_name,
                  f"{t} saliency on mistakes", errors_caption)


def draw_templates(output: SectionOutput, ctx: FigureContext) -> None:
    """Pixel templates (stored from learned_pictures()["templates"]) of the first model offering them, one row
    per task."""
    templates, reason = {}, None
    for tr in ctx.results:
        for cell in tr.cells.values():
            maps, why = ctx.maps(cell)
            if maps is None:
                reason = why
            elif maps.templates is not None:
                templates.setdefault(tr.task, (tr.class_names, maps.templates.astype(np.float64)))
    if templates:
        output.figure(logreg_templates_figure(templates), TEMPLATES_FIGURE,
                      "logistic-regression templates", "Logistic regression: each class's pixel weights as a "
                      "48x48 image, one row per task (red: a brighter pixel raises the class score).")
    elif reason is not None:
        output.skipped([TEMPLATES_FIGURE], f"logistic-regression templates: {reason}")


def draw_hog(output: SectionOutput, ctx: FigureContext) -> None:
    """One face per class and its HOG picture, drawn with the stored settings of the first model offering them
    (learned_pictures()["hog_settings"]), on the first task with such a model."""
    reason = None
    for tr in ctx.results:
        for cell in tr.cells.values():
            maps, why = ctx.maps(cell)
            if maps is None:
                reason = why
            elif maps.hog_settings is not None:
                faces, why = ctx.faces(tr)
                if faces is None:
                    output.needs_images([HOG_FIGURE], why)
                else:
                    _draw_hog(output, tr, faces, maps.hog_settings, ctx.settings)
                return
    if reason is not None:
        output.skipped([HOG_FIGURE], f"HOG visualisation: {reason}")


def _draw_hog(output: SectionOutput, tr: TaskResults, faces, settings: dict, report_settings) -> None:
    try:
        from fer_bench.hog import hog_visualisation
    except ImportError as exc:
        output.skipped([HOG_FIGURE], f"HOG visualisation: cannot import it ({exc})")
        return
    picked = class_faces(tr.labels, tr.n_classes, 1)
    visualisations = [np.asarray(hog_visualisation(face, **settings), dtype=float) for face in faces[picked]]
    cell = settings.get("cell_sizes", (None,))[0]
    output.figure(hog_figure(faces[picked], [tr.class_names[tr.labels[i]] for i in picked],
                                         visualisations), HOG_FIGURE, "HOG visualisation",
                  f"HOG+SVM: one {report_settings.headline_split} face per class ({tr.task}) and its HOG picture: the "
                  f"gradient orientations of each {f'{cell}x{cell} ' if cell else ''}cell, the features the SVM sees.")


SALIENCY = FigureSpec("saliency", outline.SALIENCY_FIGURES, Needs.IMAGES | Needs.MAPS, draw_saliency)
TEMPLATES = FigureSpec("logreg_templates", outline.SALIENCY_FIGURES, Needs.MAPS, draw_templates, scope=Scope.GRID)
HOG = FigureSpec("hog", outline.SALIENCY_FIGURES, Needs.IMAGES | Needs.MAPS, draw_hog, scope=Scope.GRID)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (SALIENCY, TEMPLATES, HOG,)
