"""What a report is made from: the stored cells of a results folder, in report order, the settings, the audit
rows and (when the caller has it) the loaded data set. Everything reaches the tables, figures and sections
through a `ReportInputs`, by argument."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.models import available_models, parse_variant
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell, list_cells, read_cell
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


def default_out() -> Path:
    for name in ("fer2013", "synthetic"):
        if (Path("results") / name / "fer-bench.json").exists():
            return Path("results") / name
    raise FerBenchError("no results folder found (results/fer2013 or results/synthetic); "
                        "run `fer-bench run` first or pass --out")


def _order_key(cell: StoredCell):
    """Registered task order, then registered model order (a variant "cnn[...]" right after its model), seed."""
    tasks, models = available_tasks(), available_models()
    base, params = parse_variant(cell.model)
    return (tasks.index(cell.task) if cell.task in tasks else len(tasks), cell.task,
            models.index(base) if base in models else len(models), base, bool(params), cell.model, cell.seed)


def load_cells(out: Path) -> list[StoredCell]:
    """The finished cells of a results folder in report order: registered task order, model order, seed."""
    cells = [read_cell(p) for p in list_cells(out)]
    if not cells:
        raise FerBenchError(f"no finished cells under {out / 'runs'}; run `fer-bench run` first")
    return sorted(cells, key=_order_key)
