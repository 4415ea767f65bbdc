"""`fer-bench verify`: check every stored cell of a results folder, and add integrity records to older cells.

A cell is verified the way the report reads it (storage.read_cell): its files against the manifest's records
(size, sha256, CSV rows) when it has them, its structure always (manifest fields, predictions.csv's rules,
params.json and timings.json readable), its maps.npz and robustness.npz readable (the latter holding the
cell's own faces), and its data set against the folder's fer-bench.json. With `record`, a cell stored without
records (manifest version 2 or older) that passes gets them, computed from its files as they are; existing records
are never rewritten and a failing cell is never recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_bench.cell_maps import read_cell_maps
from fer_bench.cell_robustness import cell_robustness
from fer_bench.errors import FerBenchError
from fer_bench.staging import folder_lock
from fer_bench.storage import (
    MAPS_FILE,
    check_cell_data,
    check_results_folder,
    list_cells,
    read_cell,
    record_files,
)


@dataclass(frozen=True)
class CellVerdict:
    """One cell: `problem` (one line naming the file and what is wrong) or None when it verified; whether it has
    integrity records (after `record`: whether it has them now) and whether this command added them."""

    path: Path
    problem: str | None
    recorded: bool
    added: bool = False


def verify_cell(path: Path, info: dict, out: Path) -> bool:
    """FerBenchError unless the cell folder `path` verifies (see the module's doc); whether it has records."""
    cell = read_cell(path)
    check_cell_data(cell, info, out)
    if (path / MAPS_FILE).is_file():
        read_cell_maps(path)
    cell_robustness(cell)
    return cell.manifest.files is not None


def verify_folder(out: Path, *, record: bool = False) -> list[CellVerdict]:
    """A verdict for every finished cell of the results folder `out`, in sorted order; with `record`, records
    added to the cells that verified without them. Holds the folder lock, as the commands writing it do."""
    out = Path(out)
    info = check_results_folder(out)
    verdicts = []
    with folder_lock(out):
        paths = list_cells(out)
        if not paths:
            raise FerBenchError(f"no finished cells under {out / 'runs'}; run `fer-bench run` first")
        for path in paths:
            try:
                recorded = verify_cell(path, info, out)
            except FerBenchError as exc:
                verdicts.append(CellVerdict(path, str(exc), recorded=False))
                continue
            if record and not recorded:
                try:
                    record_files(path)
                except OSError as exc:
                    raise FerBenchError(f"cannot write {path / 'manifest.json'}: {exc.strerror or exc}") from None
                verdicts.append(CellVerdict(path, None, recorded=True, added=True))
            else:
                verdicts.append(CellVerdict(path, None, recorded=recorded))
    return verdicts


def verify_command(out: Path, *, record: bool = False) -> None:
    """`fer-bench verify`: one line per bad cell and a summary on stdout; FerBenchError (exit 2) when any cell is
    bad, after the good ones were recorded."""
    out = Path(out)
    verdicts = verify_folder(out, record=record)
    bad = [v for v in verdicts if v.problem is not None]
    for verdict in bad:
        print(f"bad: {verdict.problem}")
    good = [v for v in verdicts if v.problem is None]
    by_records = sum(v.recorded and not v.added for v in good)
    added = sum(v.added for v in good)
    unrecorded = len(good) - by_records - added
    parts = [f"{by_records} by their integrity records"] if by_records else []
    if added:
        parts.append(f"{added} by their structure, records added")
    if unrecorded:
        parts.append(f"{unrecorded} by their structure only (stored without records; `fer-bench verify --out {out} "
                     "--record` adds them)")
    how = ": " + ", ".join(parts) if parts else ""
    print(f"verify: {len(good)} of {len(verdicts)} cells of {out} verified{how}")
    if bad:
        raise FerBenchError(f"verify: {len(bad)} of {len(verdicts)} cells of {out} failed (listed above)"
                            + ("; they were not recorded" if record else ""))
