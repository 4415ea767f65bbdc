"""Files a cell computes from its fitted model (maps.npz, robustness.npz), filled in afterwards for the cells of a
results folder that were stored without them, from their local model/ folders: `fer-bench maps` and `fer-bench
robustness`. Both go the same way: verify every cell first, then write each missing file (every one with
`force`) from the re-loaded model and the data set's images, and update its record in the cell's manifest."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fer_bench.errors import FerBenchError
from fer_bench.settings import HEADLINE_SPLIT


@dataclass
class RefillOutcome:
    """What `refill_from_models` did: the cells it wrote the file for, those without a local model to compute it
    from, and every cell it verified (the caller names those without integrity records)."""

    written: list[Path]
    without_model: list[Path]
    cells: list


def refill_from_models(out: Path, file_name: str, write: Callable, *, purpose: str, force: bool = False,
                       dataset=None) -> RefillOutcome:
    """Write `file_name` for every finished cell of `out` without one (every cell with `force`) by calling
    write(model, dataset, cell) with the cell's local fitted model (`<cell>/model/`) and the data set (`dataset`,
    else the one the manifests name, re-loaded and checked), then update the file's record in the cell's manifest.
    Every cell is verified first (its records, its structure, its data set against fer-bench.json; a file about to
    be rewritten is not checked), so a damaged or foreign cell stops the command before anything is written.
    `purpose` names the file's contents in messages ("maps")."""
    from fer_bench.data.reference import loaded_or_reloaded
    from fer_bench.models.base import load_model
    from fer_bench.plugins import load_recorded_plugins
    from fer_bench.staging import folder_lock
    from fer_bench.storage import check_cell_data, check_results_folder, list_cells, read_cell, record_files

    info = check_results_folder(out)
    load_recorded_plugins(out)  # a plugin model's saved class needs its module
    outcome = RefillOutcome([], [], [])
    with folder_lock(out):  # a run starting meanwhile must not take this command's .tmp files for leftovers
        to_write = []
        for path in list_cells(out):
            has_model = (path / "model" / "estimator.json").is_file()
            rewrite = has_model and (force or not (path / file_name).is_file())
            cell = read_cell(path, unchecked=(file_name,) if rewrite else ())
            check_cell_data(cell, info, out)
            outcome.cells.append(cell)
            if rewrite:
                to_write.append(cell)
            elif not (path / file_name).is_file():
                outcome.without_model.append(path)
        for cell in to_write:
            try:
                dataset = loaded_or_reloaded(dataset, cell.manifest.dataset)
            except FerBenchError as exc:
                raise FerBenchError(f"{purpose} need the data set's faces: {exc}") from None
            write(load_model(cell.path / "model"), dataset, cell)
            if cell.manifest.files is not None:
                # after the file: killed in between, the record differs and `--force` (which does not check the
                # file it rewrites) mends it
                record_files(cell.path, [file_name])
            outcome.written.append(cell.path)
    return outcome


def task_split(dataset, task_name: str, split: str = HEADLINE_SPLIT) -> tuple:
    """(images, labels, ids) of a task's `split`, in the order the cell's predictions.csv stores them."""
    from fer_bench.tasks import get_task

    part = dataset.split(split)
    return get_task(task_name).select(part.images, part.labels, part.ids)


def report_refill(outcome: RefillOutcome, out: Path, file_name: str, command: str) -> None:
    """The command's lines: how many files it wrote, then (on stderr) the cells it could not fill and those
    stored without integrity records."""
    from fer_bench.storage import unrecorded_note

    print(f"{command}: {len(outcome.written)} {file_name} written under {Path(out) / 'runs'}")
    if outcome.without_model:
        names = ", ".join(str(cell.relative_to(Path(out) / "runs")) for cell in outcome.without_model)
        print(f"{command}: {len(outcome.without_model)} cells without {file_name} have no local model/ (run them "
              f"here with `fer-bench run --force`, or `fer-bench {command}` where they were computed): {names}",
              file=sys.stderr)
    note = unrecorded_note(outcome.cells)
    if note:
        print(note, file=sys.stderr)


def load_data_argument(data: str | None):
    """The data set a command's --data names, loaded; None (the manifests' source) without one."""
    if data is None:
        return None
    from fer_bench.data import load_dataset

    return load_dataset(data)
