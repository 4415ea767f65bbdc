"""A cell's integrity records: its manifest records the size, sha256 and (CSV) data rows of its stored files, and
every command that reads a cell verifies them.

- any change to a recorded file (a byte, a cut, a row, an edit, a replaced or deleted file) is refused by `report`,
  `compare` and `maps` in one line naming the file, exit 2, nothing written;
- a cell stored without records is read by its structure, and named once per command with how to add records;
- `fer-bench verify` checks every cell, `--record` adds records to the cells without them that verify, and the
  report does not change;
- `maps --force` updates maps.npz's record; `maps` refuses a foreign cell;
- the report's swap removes the figures it no longer draws, and `data audit` writes under the folder lock.

Cells come from the shared tiny_grid (conftest), copied: nothing is computed here but maps and reports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import copy_grid, one_line_error, run_cli, snapshot, without_records

from fer_bench.errors import FerBenchError
from fer_bench.staging import COMPLETE_MARKER, REPORT_STAGING, STALE_LIST, recover_swap, swap_in
from fer_bench.storage import file_record, read_manifest

CELLS = ["binary/logreg/seed0", "binary/hog_svm/seed0"]
DAMAGED = "runs/binary/logreg/seed0"
OTHER = "runs/binary/hog_svm/seed0"


def _manifest(cell: Path) -> dict:
    return json.loads((cell / "manifest.json").read_text(encoding="utf-8"))


def _report_files(out: Path) -> dict[str, bytes]:
    """Every file a report wrote: everything of `out` but runs/ and fer-bench.json."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in ("runs", "fer-bench.json")}


# --- each damage: refused by report, compare and maps --------------------------------------------------------------

def byte_changed_size_kept(cell: Path) -> tuple[str, str]:
    path = cell / "predictions.csv"
    content = bytearray(path.read_bytes())
    at = content.rindex(b"0.")  # a digit of the last row's last probability: same size, same row count
    content[at + 2] = ord("1") if content[at + 2] != ord("1") else ord("2")
    path.write_bytes(bytes(content))
    return "predictions.csv", "(same size)"


def truncated(cell: Path) -> tuple[str, str]:
    path = cell / "predictions.csv"
    path.write_bytes(path.read_bytes()[:-7])  # the last row cut short: as many rows, fewer bytes
    return "predictions.csv", "bytes, the manifest records"


def row_removed(cell: Path) -> tuple[str, str]:
    path = cell / "predictions.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:5] + lines[6:]), encoding="utf-8")
    return "predictions.csv", "data rows, the manifest records"


def params_edited(cell: Path) -> tuple[str, str]:
    path = cell / "params.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["selected"] = {"C": 1000.0}
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return "params.json", "the manifest records"


def maps_replaced(cell: Path) -> tuple[str, str]:
    shutil.copy2(cell.parent.parent / "hog_svm" / "seed0" / "maps.npz", cell / "maps.npz")  # a valid maps.npz
    return "maps.npz", "the manifest records"


def file_deleted(cell: Path) -> tuple[str, str]:
    (cell / "timings.json").unlink()
    return "timings.json", "missing"


DAMAGES = [byte_changed_size_kept, truncated, row_removed, params_edited, maps_replaced, file_deleted]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_each_damage_is_refused_in_one_line_by_report_compare_and_maps(damage, tiny_grid, tmp_path, capsys):
    good = copy_grid(tiny_grid, tmp_path / "good", cells=CELLS)
    bad = copy_grid(tiny_grid, tmp_path / "bad", cells=CELLS)
    name, what = damage(bad / DAMAGED)
    before_bad, before_good = snapshot(bad), snapshot(good)
    where = str(bad / DAMAGED / name)
    code, out, err = run_cli(["report", "--out", bad], capsys)
    one_line_error(code, err, where, what, "damaged or edited after the cell was stored")
    assert out == ""
    code, out, err = run_cli(["compare", good, bad, "--out", tmp_path / "comparison.md"], capsys)
    one_line_error(code, err, where, what)
    code, out, err = run_cli(["maps", "--out", bad], capsys)
    one_line_error(code, err, where, what)
    assert snapshot(bad) == before_bad and snapshot(good) == before_good
    assert not (tmp_path / "comparison.md").exists()


def test_a_record_of_the_wrong_form_is_a_damaged_manifest(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=CELLS)
    info = _manifest(out / DAMAGED)
    info["files"]["predictions.csv"]["sha256"] = "not a digest"
    (out / DAMAGED / "manifest.json").write_text(json.dumps(info), encoding="utf-8")
    code, _, err = run_cli(["report", "--out", out], capsys)
    one_line_error(code, err, str(out / DAMAGED / "manifest.json"), "not a cell manifest", "'files'")
    del info["files"]  # a version 3 manifest always records its files
    (out / DAMAGED / "manifest.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(FerBenchError, match="no 'files'"):
        read_manifest(out / DAMAGED / "manifest.json")


# --- cells stored without records ------------------------------------------------------------------------------------

def test_cells_without_records_are_named_once_and_reported(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=[*CELLS, "5class/logreg/seed0"])
    for cell in (DAMAGED, OTHER):
        without_records(out / cell)
    code, _, err = run_cli(["report", "--out", out], capsys)
    assert code == 0, err
    [note] = [line for line in err.splitlines() if "without integrity records" in line]
    assert "2 cells" in note and "binary/logreg/seed0" in note and "binary/hog_svm/seed0" in note
    assert "5class" not in note and f"fer-bench verify --out {out} --record" in note
    code, _, err = run_cli(["compare", out, out], capsys)
    assert code == 0, err
    assert len([line for line in err.splitlines() if "without integrity records" in line]) == 1


def test_verify_record_adds_records_and_the_report_does_not_change(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=CELLS)
    for cell in (DAMAGED, OTHER):
        without_records(out / cell)
    assert run_cli(["report", "--out", out], capsys)[0] == 0
    report = _report_files(out)
    code, stdout, _ = run_cli(["verify", "--out", out], capsys)
    assert code == 0 and "2 of 2 cells" in stdout and "2 by their structure only" in stdout
    before = _manifest(out / DAMAGED)
    code, stdout, _ = run_cli(["verify", "--out", out, "--record"], capsys)
    assert code == 0 and "2 by their structure, records added" in stdout
    after = _manifest(out / DAMAGED)
    # every file the cell holds (tiny_grid's cells are stored without robustness.npz)
    assert after.pop("files") == {name: file_record(out / DAMAGED / name)
                                  for name in ("maps.npz", "params.json", "predictions.csv", "timings.json")}
    assert after == before  # only the records were added: the version says how the cell was written
    code, stdout, _ = run_cli(["verify", "--out", out], capsys)
    assert code == 0 and "2 by their integrity records" in stdout and "structure" not in stdout
    code, _, err = run_cli(["report", "--out", out], capsys)
    assert code == 0 and "integrity records" not in err
    assert _report_files(out) == report


def test_verify_names_each_bad_cell_and_records_none_of_them(tiny_grid, tmp_path, capsys):
    cells = [*CELLS, "5class/logreg/seed0", "5class/hog_svm/seed0"]
    out = copy_grid(tiny_grid, tmp_path / "out", cells=cells)
    damaged, broken, foreign, fine = (out / "runs" / cell for cell in cells)
    byte_changed_size_kept(damaged)  # records, damaged
    without_records(broken)  # no records, and a row that breaks the rules
    lines = (broken / "predictions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[3].rstrip("\n").split(",")
    lines[3] = ",".join([*fields[:3], "nan", *fields[4:]]) + "\n"
    (broken / "predictions.csv").write_text("".join(lines), encoding="utf-8")
    info = _manifest(foreign)  # computed on other data (the manifest is not among the recorded files)
    info["dataset"]["fingerprint"] = "0123456789abcdef"
    (foreign / "manifest.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    without_records(fine)
    unchanged = {cell: snapshot(cell) for cell in (damaged, broken, foreign)}
    code, stdout, err = run_cli(["verify", "--out", out, "--record"], capsys)
    one_line_error(code, err, "3 of 4 cells", "failed", "not recorded")
    bad = [line for line in stdout.splitlines() if line.startswith("bad: ")]
    assert len(bad) == 3
    # in sorted order: 5class/logreg (foreign), binary/hog_svm (broken), binary/logreg (damaged)
    assert str(foreign) in bad[0] and "a cell of other data" in bad[0]
    assert str(broken / "predictions.csv") in bad[1] and "breaks the rule 'finite'" in bad[1]
    assert str(damaged / "predictions.csv") in bad[2] and "(same size)" in bad[2]
    assert "1 by their structure, records added" in stdout
    assert all(snapshot(cell) == files for cell, files in unchanged.items())
    assert _manifest(fine)["files"]["predictions.csv"] == file_record(fine / "predictions.csv")


def test_the_committed_synthetic_reference_verifies_by_its_records(capsys):
    folder = Path(__file__).resolve().parents[1] / "results" / "synthetic-reference"
    code, stdout, _ = run_cli(["verify", "--out", folder], capsys)
    assert code == 0, stdout
    assert "9 of 9 cells" in stdout and "9 by their integrity records" in stdout


# --- maps ----------------------------------------------------------------------------------------------------------

def test_maps_force_mends_maps_npz_and_keeps_the_folder_verifiable(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=CELLS)
    cell = out / DAMAGED
    original = (cell / "maps.npz").read_bytes()
    maps_replaced(cell)  # as a `maps` killed between maps.npz and its record would leave it
    code, _, err = run_cli(["verify", "--out", out], capsys)
    one_line_error(code, err, "1 of 2 cells")
    code, stdout, err = run_cli(["maps", "--out", out, "--force"], capsys)
    assert code == 0, err
    assert "2 maps.npz written" in stdout
    assert (cell / "maps.npz").read_bytes() == original
    assert _manifest(cell)["files"]["maps.npz"] == file_record(cell / "maps.npz")
    assert run_cli(["verify", "--out", out], capsys)[0] == 0


def test_maps_refuses_a_foreign_cell(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=CELLS)
    info = _manifest(out / DAMAGED)
    info["dataset"]["fingerprint"] = "0123456789abcdef"
    (out / DAMAGED / "manifest.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    before = snapshot(out)
    code, _, err = run_cli(["maps", "--out", out, "--force"], capsys)
    one_line_error(code, err, str(out / DAMAGED), "a cell of other data", "0123456789abcdef")
    assert snapshot(out) == before


# --- the report's own files ------------------------------------------------------------------------------------------

def test_a_report_removes_the_figures_it_no_longer_draws(tiny_grid, tmp_path, capsys):
    out = copy_grid(tiny_grid, tmp_path / "out", cells=[*CELLS, "5class/logreg/seed0"])
    assert run_cli(["report", "--out", out], capsys)[0] == 0
    assert (out / "figures" / "confusion_5class.png").is_file()
    (out / "figures" / "notes.txt").write_text("mine\n")  # not the report's: stays
    (out / "logo.png").write_bytes(b"png")  # not under figures/: stays
    shutil.rmtree(out / "runs" / "5class")
    assert run_cli(["report", "--out", out], capsys)[0] == 0
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert "confusion_5class.png" not in figures and "confusion_binary.png" in figures
    assert not any("5class" in name for name in figures)
    assert (out / "figures" / "notes.txt").read_text() == "mine\n" and (out / "logo.png").is_file()
    assert not (out / REPORT_STAGING).exists()


def test_stale_files_are_removed_with_the_swap_and_by_its_roll_forward(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        (out / "figures" / name).write_bytes(b"old")
    swap_in(out, {"figures/a.png": b"new"}, owned=["figures/*.png"], keep=["figures/c.png"])
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["a.png", "c.png"]
    # killed after the commit point: the next writer moves the new files in and removes the stale ones
    staging = out / REPORT_STAGING
    (staging / "figures").mkdir(parents=True)
    (staging / "figures" / "a.png").write_bytes(b"newer")
    (staging / STALE_LIST).write_text("figures/c.png\n")
    (staging / COMPLETE_MARKER).write_text("figures/a.png\n")
    assert recover_swap(out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["a.png"]
    assert (out / "figures" / "a.png").read_bytes() == b"newer" and not staging.exists()


def test_the_audit_writes_under_the_folder_lock(tiny_synthetic, tmp_path, capsys):
    from fer_bench.audit import run_audit

    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".audit.csv.x1y2.tmp"  # what a killed writer leaves: cleared when the lock is taken alone
    leftover.write_text("partial")
    run_audit(dataset=tiny_synthetic, out=out)
    assert not leftover.exists()
    assert (out / "audit.csv").is_file() and (out / "audit.md").is_file()
