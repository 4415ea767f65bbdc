"""What a report is made from: the stored cells of a results folder, in report order, the settings, the audit
rows and (when the caller has it) the loaded data set. Everything reaches the tables, figures and sections
through a `ReportInputs`, by argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.models import CLASSIC, available_models, model_family, parse_variant
from fer_bench.provenance import machine_label
from fer_bench.settings import REFERENCE_MODEL, Settings
from fer_bench.storage import StoredCell, check_cell_data, check_results_folder, list_cells, read_cell
from fer_bench.tasks import available_tasks


@dataclass(frozen=True)
class ReportInputs:
    out: Path
    cells: list[StoredCell]
    settings: Settings
    #: the data set the cells were computed on, when the caller holds it (fer-bench run passes its own); the
    #: figures that need images otherwise re-load it from the source the manifests name
    dataset: Dataset | None = None
    #: rows of audit.csv (fer-bench data audit), parsed once; None when the folder has none
    audit_rows: list[dict] | None = None
    #: test image ids with a duplicate in Training (from the audit); empty without a usable audit
    leaked_ids: frozenset = frozenset()
    #: per task, the model every other one is compared against (choose_references), None: no comparisons
    references: dict = field(default_factory=dict)
    #: (task, model) pairs whose seeds stored identical predictions (fer_bench.report.seeds.identical_seed_models):
    #: shown once, as deterministic, with no seed ensemble
    identical_seeds: frozenset = frozenset()

    def reference(self, task: str) -> str | None:
        return self.references.get(task)

    def task_models(self, task: str) -> list[str]:
        """The models of a task's cells, in report order."""
        return list(dict.fromkeys(cell.model for cell in self.cells if cell.task == task))

    def classic_rivals(self, task: str) -> list[str]:
        """The models the reference is measured against in the CNN-vs-classic answer: those registered as
        CLASSIC (fer_bench.models.ModelSpec.family), other than the reference."""
        ref = self.reference(task)
        return [m for m in self.task_models(task) if m != ref and model_family(m) == CLASSIC]

    def peers(self, task: str) -> list[str]:
        """The task's other models that are not classic (a network trained here or elsewhere, a model of no
        registered family): shown beside the answer, never as its rival."""
        ref, classic = self.reference(task), self.classic_rivals(task)
        return [m for m in self.task_models(task) if m != ref and m not in classic]

    def is_deterministic(self, task: str, model: str) -> bool:
        return (task, model) in self.identical_seeds

    @property
    def reference_is_default(self) -> bool:
        """Whether every task compares against REFERENCE_MODEL (the summary then need not say what it is)."""
        return set(self.references.values()) <= {REFERENCE_MODEL}


def cell_provenance(cells: list[StoredCell]) -> dict:
    """Where the cells come from, from their manifests, for summary.md and index.html alike: the data set (name,
    fingerprint), the sorted (commit prefix, dirty) pairs, the sorted machine labels, the first and last
    `finished` time and whether any cell is a --quick one."""
    finished = sorted(c.manifest.finished for c in cells)
    dataset = cells[0].manifest.dataset
    return {
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint},
        "commits": sorted({(c.manifest.code["commit"][:10], bool(c.manifest.code.get("dirty"))) for c in cells}),
        "machines": sorted({machine_label(c.manifest.machine) for c in cells}),
        "finished": (finished[0], finished[-1]),
        "quick": any(c.manifest.quick for c in cells),
    }


def choose_references(cells: list[StoredCell], settings: Settings) -> dict[str, str | None]:
    """Per task, the reference model: the one the settings name (None in a task without it); by default
    REFERENCE_MODEL where the task has it, else the model with the highest mean selection-split accuracy."""
    by_task: dict[str, dict[str, list[float]]] = {}
    for cell in cells:
        _, labels, proba = cell.split(settings.selection_split)
        accuracy = float(np.mean(proba.argmax(axis=1) == labels)) if len(labels) else float("nan")
        by_task.setdefault(cell.task, {}).setdefault(cell.model, []).append(accuracy)
    if settings.reference_model is not None:
        if not any(settings.reference_model in models for models in by_task.values()):
            raise FerBenchError(f"--reference {settings.reference_model}: no cells of that model; models: "
                                f"{', '.join(dict.fromkeys(m for models in by_task.values() for m in models))}")
        return {task: settings.reference_model if settings.reference_model in models else None
                for task, models in by_task.items()}
    return {task: REFERENCE_MODEL if REFERENCE_MODEL in models else
            max(models, key=lambda m: (np.nanmean(models[m]), -list(models).index(m)))
            for task, models in by_task.items()}


def _order_key(cell: StoredCell):
    """Registered task order, then registered model order (a variant "cnn[...]" right after its model), seed."""
    tasks, models = available_tasks(), available_models()
    base, params = parse_variant(cell.model)
    return (tasks.index(cell.task) if cell.task in tasks else len(tasks), cell.task,
            models.index(base) if base in models else len(models), base, bool(params), cell.model, cell.seed)


def load_cells(out: Path) -> list[StoredCell]:
    """The finished cells of a results folder in report order: registered task order, model order, seed. A cell
    computed on another data set than the folder's (fer-bench.json's fingerprint) is refused in one line."""
    info = check_results_folder(out)
    cells = []
    for path in list_cells(out):
        cell = read_cell(path)
        check_cell_data(cell, info, out)
        cells.append(cell)
    if not cells:
        raise FerBenchError(f"no finished cells under {out / 'runs'}; run `fer-bench run` first")
    return sorted(cells, key=_order_key)
