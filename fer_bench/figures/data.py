"""What the figures are made from, and how a figure is registered.

* `TaskResults`: the headline-split predictions of every model of one task (first seed of each), on the same
  images: what every prediction figure draws from.
* `FigureContext`: everything a figure may need, passed by argument: the stored cells grouped by task, the
  report's settings and model colours, and, loaded at most once per report when a figure asks for them, the
  data set's images and the cells' saliency maps (maps.npz, fer_bench.cell_maps; never the fitted models).
* `FigureOutput`: collects the PNGs (in memory: the report writes them with the tables), each section's
  markdown, the sentences figures add to the findings and the figures left out for want of the images.
* `SectionOutput`: what a draw function writes to: the output, placed in the figure's section.
* `FigureSpec`: one registered figure: the section it goes to (a fer_bench.outline Section), what it `Needs`
  (predictions, history, timings, images, maps), whether it is drawn per task or once for the grid, and the
  function that draws it; its `Stage` (when it is drawn) follows from those.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fer_bench.data.dataset import Dataset
from fer_bench.data.reference import load_reference
from fer_bench.errors import FerBenchError
from fer_bench.figures.png import figure_png, model_colors
from fer_bench.outline import Section
from fer_bench.settings import REFERENCE_MODEL, Settings
from fer_bench.storage import StoredCell

FIGURES_DIR = "figures"
#: how a figure starts in summary.md: an item of a list of figures, one line each
FIGURE_ITEM = "- !"
MAPS_MISSING = "no maps.npz in the cells: run `fer-bench maps --out DIR` where their fitted models are"


@dataclass
class TaskResults:
    """The headline-split predictions of every model on one task (first seed of each), on the same images."""

    task: str
    class_names: list[str]
    cells: dict[str, StoredCell]  # model -> cell, in report order
    ids: np.ndarray
    labels: np.ndarray
    proba: dict[str, np.ndarray]
    reference_model: str | None
    split: str

    @property
    def models(self) -> list[str]:
        return list(self.cells)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def reference(self) -> str | None:
        return self.reference_model if self.reference_model in self.cells else None

    @property
    def baselines(self) -> list[str]:
        return [m for m in self.models if m != self.reference_model]

    def pred(self, model: str) -> np.ndarray:
        return self.proba[model].argmax(axis=1)

    def seeds_text(self) -> str:
        seeds = sorted({c.seed for c in self.cells.values()})
        return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))

    def where_text(self) -> str:
        """What a figure of these predictions shows, for its title and caption: split, seed(s), images."""
        return f"{self.split}, {self.seeds_text()}, n={len(self.labels)}"


def task_results(cells: list[StoredCell], settings: Settings,
                 references: dict[str, str | None] | None = None) -> list[TaskResults]:
    """Group cells (already in report order: task, model, seed) by task, keeping each model's first seed;
    `references`: each task's reference model (default: settings.reference_model or REFERENCE_MODEL)."""
    split = settings.headline_split
    by_task: dict[str, dict[str, StoredCell]] = defaultdict(dict)
    for cell in cells:
        by_task[cell.task].setdefault(cell.model, cell)
    results = []
    for task, by_model in by_task.items():
        first = next(iter(by_model.values()))
        ids, labels, _ = first.split(split)
        proba = {}
        for model, cell in by_model.items():
            first.check_same_images(cell, split)
            proba[model] = cell.split(split)[2]
        reference = (references or {}).get(task, settings.reference_model or REFERENCE_MODEL)
        results.append(TaskResults(task, first.class_names, dict(by_model), ids, labels, proba, reference, split))
    return results


# --- images and maps: loaded on demand, once per report ----------------------------------------------------------

def load_maps(cell: StoredCell, split: str):
    """(CellMaps, "") from `<cell>/maps.npz`, or (None, why not)."""
    from fer_bench.cell_maps import MAPS_FILE, read_cell_maps

    if not (cell.path / MAPS_FILE).is_file():
        return None, MAPS_MISSING
    try:
        maps = read_cell_maps(cell.path)
    except FerBenchError as exc:
        return None, str(exc)
    if maps.split != split:
        return None, f"{cell.model}'s maps.npz maps {maps.split} faces, the report's headline split is {split}"
    return maps, ""


def face_images(dataset: Dataset, ids: np.ndarray, split: str) -> np.ndarray:
    part = dataset.split(split)
    position = {image_id: k for k, image_id in enumerate(part.ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise FerBenchError(f"{split} image {missing[0]} of the stored predictions is not in {dataset.source}")
    return part.images[[position[i] for i in ids]]


@dataclass
class FigureContext:
    """What figures are drawn from. `dataset` is the caller's loaded data set (fer-bench run passes its own);
    without it the images are re-loaded from the source the manifests name, once, when a figure needs them."""

    results: list[TaskResults]
    settings: Settings
    out: Path
    dataset: Dataset | None = None
    #: the report's timing.csv rows (fer_bench.report.timing), for the timing figure
    timing_rows: list[dict] = field(default_factory=list)
    #: the report's robustness rows (fer_bench.report.robustness): accuracy per corruption and severity
    robustness_rows: list[dict] = field(default_factory=list)
    colors: dict[str, tuple] = field(default_factory=dict)
    _dataset_reason: str | None = None
    _maps: dict[Path, tuple] = field(default_factory=dict)

    def __post_init__(self):
        if not self.colors:
            self.colors = model_colors(list(dict.fromkeys(m for tr in self.results for m in tr.models)))

    def faces(self, tr: TaskResults) -> tuple[np.ndarray | None, str]:
        """The headline-split faces of a task in the order of its predictions, or (None, why not)."""
        reference = next(iter(tr.cells.values())).manifest.dataset
        if self.dataset is None or self.dataset.fingerprint != reference.fingerprint:
            if self._dataset_reason is not None:
                return None, self._dataset_reason
            try:
                self.dataset = load_reference(reference)
            except FerBenchError as exc:
                self._dataset_reason = f"images not available: {exc}"
                return None, self._dataset_reason
        return face_images(self.dataset, tr.ids, self.settings.headline_split), ""

    def maps(self, cell: StoredCell):
        """(CellMaps, "") of a cell, read once per report, or (None, why not)."""
        if cell.path not in self._maps:
            self._maps[cell.path] = load_maps(cell, self.settings.headline_split)
        return self._maps[cell.path]

    def task_maps(self, tr: TaskResults) -> tuple[dict, dict]:
        """The maps of a task's models that have them (model -> CellMaps), and why the others have none."""
        maps, missing = {}, {}
        for name, cell in tr.cells.items():
            cell_maps, why = self.maps(cell)
            if cell_maps is None:
                missing[name] = why
            else:
                maps[name] = cell_maps
        return maps, missing


# --- collecting the output -------------------------------------------------------------------------------------

@dataclass
class FigureOutput:
    """PNG bytes by path under the results folder, markdown parts by section, and sentences for the findings."""

    out: Path
    files: dict[str, bytes] = field(default_factory=dict)
    parts: dict[Section, list[str]] = field(default_factory=lambda: defaultdict(list))
    findings: list[str] = field(default_factory=list)
    #: figures not drawn for want of the images -> why; said in one line (images_note)
    without_images: dict[str, str] = field(default_factory=dict)
    #: PNGs of an earlier report this one left in place (path under the results folder): figures it could not
    #: draw, still linked or named, which its swap must not remove as stale
    kept: set[str] = field(default_factory=set)

    def earlier_pngs(self, names: list[str]) -> list[str]:
        """The figures of `names` an earlier report left in figures/, now kept by this one."""
        found = [n for n in names if (Path(self.out) / FIGURES_DIR / f"{n}.png").is_file()]
        self.kept.update(f"{FIGURES_DIR}/{n}.png" for n in found)
        return found

    def placed_in(self, section: Section) -> SectionOutput:
        """This output as a figure of `section` writes to it: what it adds goes into that section."""
        return SectionOutput(self, section)

    def images_note(self) -> str | None:
        """One line naming every figure left out for want of the images (their earlier PNGs stay in place)."""
        if not self.without_images:
            return None
        reasons = "; ".join(dict.fromkeys(self.without_images.values()))
        return (f"*Not drawn ({reasons}): {', '.join(self.without_images)} need the data set's images; PNGs of an "
                "earlier report, if any, are left in figures/.*")


@dataclass(frozen=True)
class SectionOutput:
    """What a draw function writes to: the report's output, placed in its FigureSpec's section, so a draw
    function never names a section (render_figures passes each figure its own)."""

    output: FigureOutput
    section: Section

    @property
    def findings(self) -> list[str]:
        return self.output.findings

    def figure(self, fig: Figure, name: str, alt: str, caption: str) -> None:
        """`fig` as figures/<name>.png, embedded in the section as one list item: the image with `alt` text and
        its one-line caption."""
        self.output.files[f"{FIGURES_DIR}/{name}.png"] = figure_png(fig)
        self.note(f"{FIGURE_ITEM}[{alt}]({FIGURES_DIR}/{name}.png) *{caption}*")

    def skipped(self, names: list[str], reason: str) -> None:
        """One line saying why; PNGs of an earlier report are left in place and still linked."""
        kept = self.output.earlier_pngs(names)
        line = f"*Skipped: {reason}.*"
        if kept:
            line += " PNGs from an earlier report, left in place:"
            line += "".join(f"\n\n![{n} (earlier report)]({FIGURES_DIR}/{n}.png)" for n in kept)
        self.note(line)

    def note(self, text: str) -> None:
        self.output.parts[self.section].append(text)

    def needs_images(self, names: list[str], reason: str) -> None:
        """Figures left out because the images are not available, for the one line of images_note."""
        self.output.without_images.update(dict.fromkeys(names, reason))
        self.output.earlier_pngs(names)


# --- the registry types ----------------------------------------------------------------------------------------

class Needs(enum.Flag):
    """What a figure is drawn from (combine with |)."""

    PREDICTIONS = enum.auto()  # the cells' stored predictions
    HISTORY = enum.auto()      # the per-epoch training history (params.json or the saved model's)
    TIMINGS = enum.auto()      # the report's timing rows
    ROBUSTNESS = enum.auto()   # the report's robustness rows (the cells' robustness.npz)
    IMAGES = enum.auto()       # the data set's images (the caller's, or re-loaded once per report)
    MAPS = enum.auto()         # the cells' saliency maps (maps.npz)


#: what is costly to load (once per report, when a figure first asks), so its figures are drawn last
LOADED_ON_DEMAND = Needs.IMAGES | Needs.MAPS


class Scope(enum.Enum):
    """How often a figure is drawn."""

    TASK = "task"  # once per task: draw(output, context, task_results)
    GRID = "grid"  # once for the whole grid: draw(output, context)


class Stage(enum.IntEnum):
    """When a figure is drawn, in this order; registry order within a stage."""

    PER_TASK = 0             # per task, from the stored predictions
    ONCE = 1                 # once for the grid, from stored histories and timings
    PER_TASK_LOADED = 2      # per task, with the images or maps (LOADED_ON_DEMAND)
    ONCE_LOADED = 3          # once for the grid, with the images or maps


@dataclass(frozen=True)
class FigureSpec:
    """One registered figure (or group of figures drawn together).

    draw(output, context, task_results) for Scope.TASK (called once per task), draw(output, context) for
    Scope.GRID; `output` is a SectionOutput placed in `section`, which is what puts the figure in the report.
    `needs`: what it is drawn from."""

    name: str
    section: Section
    needs: Needs
    draw: Callable
    scope: Scope = Scope.TASK

    @property
    def stage(self) -> Stage:
        loaded = bool(self.needs & LOADED_ON_DEMAND)
        if self.scope is Scope.TASK:
            return Stage.PER_TASK_LOADED if loaded else Stage.PER_TASK
        return Stage.ONCE_LOADED if loaded else Stage.ONCE

