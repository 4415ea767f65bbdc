"""`fer-bench compare A B`: identical folders, one changed cell, flags, fingerprints, bad folders, --out files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import copy_grid, rerecord

from fer_bench.cli import main
from fer_bench.compare import compare_folders

HEADLINE = "PrivateTest"


#: A tiny results folder with two (task, model): binary / logreg and 5class / logreg (quick, no CNN, no report),
#: taken from conftest's shared tiny_grid
CELLS = ["binary/logreg/seed0", "5class/logreg/seed0"]


@pytest.fixture
def a_b(tiny_grid, tmp_path) -> tuple[Path, Path]:
    """Fresh copies A and B of the grid (B's name holds HTML/markdown specials, to test escaping)."""
    return (copy_grid(tiny_grid, tmp_path / "a", cells=CELLS),
            copy_grid(tiny_grid, tmp_path / "b&<c>|d", cells=CELLS))


def flip_predictions(cell: Path, n_flips: int) -> None:
    """Make `n_flips` correct headline-split predictions wrong (probabilities of the true class and another
    swapped), keeping predictions.csv's format."""
    path = cell / "predictions.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    flipped = 0
    for row in rows[1:]:
        probs = [float(x) for x in row[3:]]
        label, predicted = int(row[2]), max(range(len(probs)), key=probs.__getitem__)
        if row[0] != HEADLINE or predicted != label or flipped == n_flips:
            continue
        other = min((k for k in range(len(probs)) if k != label), key=lambda k: -probs[k])
        row[3 + label], row[3 + other] = row[3 + other], row[3 + label]
        flipped += 1
    assert flipped == n_flips
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    rerecord(cell)  # the cell as if stored with these predictions


def block(out: str, heading: str) -> str:
    """The paragraph of the text output whose first line starts with `heading`."""
    (found,) = [b for b in out.split("\n\n") if b.startswith(heading)]
    return found


def run_compare(capsys, *args) -> tuple[int, str, str]:
    rc = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_folder_against_its_copy_shows_no_difference(a_b, capsys):
    a, b = a_b
    comparison = compare_folders(a, b)
    assert [(c.task, c.model) for c in comparison.cells] == [("5class", "logreg"), ("binary", "logreg")]
    assert comparison.only_a == comparison.only_b == []
    for cell in comparison.cells:
        assert [r.key for r in cell.rows] == ["accuracy", "f1_macro", "roc_auc_macro", "fit_seconds",
                                              "predict_images_per_s"]
        for r in cell.rows:
            assert r.a is not None and r.a == r.b
            assert r.difference == 0
            assert r.ratio == 1
        assert not cell.flagged and not cell.differs
        assert cell.seeds_a == cell.seeds_b == 1 and cell.images_a == cell.images_b > 0
    assert comparison.differing == [] and comparison.flagged == []

    rc, out, err = run_compare(capsys, a, b)
    assert rc == 0 and err == ""
    assert "binary / logreg" in out and "5class / logreg" in out
    assert "no differences: all 2 (task, model) present in both are identical in A and B" in out
    assert "FLAG" not in out
    accuracy_lines = [line.split() for line in out.splitlines() if line.strip().startswith("accuracy %")]
    assert len(accuracy_lines) == 2
    assert all(parts[-3:] == ["0", "1", "same"] for parts in accuracy_lines)


def test_accuracy_matches_the_stored_predictions(a_b):
    """The compared accuracy is the headline split's accuracy of predictions.csv (recomputed, not a CSV)."""
    a, _ = a_b
    with open(a / "runs/binary/logreg/seed0/predictions.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == HEADLINE]
    correct = sum(int(float(r["prob_positive"]) > float(r["prob_negative"])) == int(r["label"]) for r in rows)
    (cell,) = [c for c in compare_folders(a, a).cells if c.task == "binary"]
    assert cell.row("accuracy").a == pytest.approx(correct / len(rows))
    low, high = cell.accuracy_ci_a
    assert low <= cell.row("accuracy").a <= high


def test_one_small_change_shows_in_that_cell_only_without_flag(a_b, capsys):
    a, b = a_b
    flip_predictions(b / "runs/5class/logreg/seed0", 1)
    comparison = compare_folders(a, b)
    assert [(c.task, c.model) for c in comparison.differing] == [("5class", "logreg")]
    changed = comparison.differing[0]
    acc = changed.row("accuracy")
    assert acc.difference == pytest.approx(-1 / changed.images_a)
    assert acc.ratio == pytest.approx(acc.b / acc.a)
    assert not changed.flagged  # one image is well inside both intervals
    assert comparison.flagged == []
    # what timings.json holds is untouched
    assert changed.row("fit_seconds").difference == 0

    rc, out, _ = run_compare(capsys, a, b)
    assert rc == 0
    assert "1 of 2 (task, model) differ: 5class / logreg" in out
    assert "0 flagged" in out and "FLAG:" not in out
    changed_block = block(out, "5class / logreg")
    assert f"{100 * acc.difference:+.1f}" in changed_block.splitlines()[2].split()
    assert changed_block.splitlines()[2].split()[-1] == "worse"
    assert "the accuracy difference lies within the intervals" in changed_block
    assert "no accuracy difference" in block(out, "binary / logreg")


def test_large_change_is_flagged(a_b, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    comparison = compare_folders(a, b)
    assert [(c.task, c.model) for c in comparison.differing] == [("binary", "logreg")]
    assert [(c.task, c.model) for c in comparison.flagged] == [("binary", "logreg")]
    cell = comparison.flagged[0]
    acc = cell.row("accuracy")
    assert acc.difference == pytest.approx(-30 / cell.images_a)
    assert not cell.accuracy_ci_a[0] <= acc.b <= cell.accuracy_ci_a[1]
    assert not cell.accuracy_ci_b[0] <= acc.a <= cell.accuracy_ci_b[1]

    rc, out, _ = run_compare(capsys, a, b)
    assert rc == 0
    binary_block = block(out, "binary / logreg")
    assert binary_block.startswith("binary / logreg  [FLAG: accuracy difference outside both 95% intervals]")
    accuracy_line = binary_block.splitlines()[2].split()
    assert accuracy_line[:2] == ["accuracy", "%"]
    assert accuracy_line[-3:] == [f"{100 * acc.difference:+.1f}", f"{acc.ratio:.3f}", "worse"]
    assert "FLAG" not in block(out, "5class / logreg")
    assert "1 flagged (accuracy difference outside both 95% intervals): binary / logreg" in out


def test_cells_in_only_one_folder_are_listed(a_b, capsys):
    a, b = a_b
    shutil.rmtree(b / "runs/5class")
    comparison = compare_folders(a, b)
    assert [(c.task, c.model) for c in comparison.cells] == [("binary", "logreg")]
    assert comparison.only_a == [("5class", "logreg")] and comparison.only_b == []
    rc, out, _ = run_compare(capsys, a, b)
    assert rc == 0
    assert "only in A: 5class / logreg" in out
    assert "no differences: all 1 (task, model)" in out
    rc, out, _ = run_compare(capsys, b, a)
    assert "only in B: 5class / logreg" in out


def test_different_fingerprints_are_refused_unless_allowed(a_b, capsys):
    a, b = a_b
    marker = b / "fer-bench.json"
    info = json.loads(marker.read_text())
    info["fingerprint"] = "0123456789abcdef"
    marker.write_text(json.dumps(info))
    for manifest in b.glob("runs/*/*/seed*/manifest.json"):  # B's cells are of B's data (else refused as foreign)
        cell = json.loads(manifest.read_text())
        cell["dataset"]["fingerprint"] = info["fingerprint"]
        manifest.write_text(json.dumps(cell))

    rc, out, err = run_compare(capsys, a, b)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "different data" in err and "0123456789abcdef" in err and "--allow-different-data" in err

    rc, out, err = run_compare(capsys, a, b, "--allow-different-data")
    assert rc == 0
    assert err.startswith("fer-bench: warning:") and "different data" in err
    assert "WARNING: different data" in out
    assert "binary / logreg" in out

    md = a.parent / "diff.md"
    assert run_compare(capsys, a, b, "--allow-different-data", "--out", md)[0] == 0
    assert "WARNING: different data" in md.read_text()


@pytest.mark.parametrize("which", ["missing", "empty", "no_cells"])
def test_missing_or_non_results_folder_is_one_line(a_b, tmp_path, capsys, which):
    a, _ = a_b
    bad = tmp_path / "bad"
    if which != "missing":
        bad.mkdir()
    if which == "no_cells":
        shutil.copy(a / "fer-bench.json", bad / "fer-bench.json")
    for args in ((a, bad), (bad, a)):
        rc, out, err = run_compare(capsys, *args)
        assert rc == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("fer-bench: error:")
        assert str(bad) in err


def test_out_markdown_and_html(a_b, tmp_path, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    (changed,) = compare_folders(a, b).flagged
    difference = f"{100 * changed.row('accuracy').difference:+.1f}"
    md, page = tmp_path / "reports" / "cmp.md", tmp_path / "cmp.html"

    rc, out, _ = run_compare(capsys, a, b, "--out", md)
    assert rc == 0 and f"written to {md}" in out
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# fer-bench compare")
    assert "## binary / logreg — **FLAG**" in text and "## 5class / logreg\n" in text
    assert "| metric | A | B | B - A | B / A | B is |" in text
    assert "| accuracy % |" in text and f"| {difference} |" in text
    assert "b&<c>\\|d" in text  # a | in a folder name does not break the table rows
    assert not list(md.parent.glob(".*.tmp"))  # written atomically: no temporary file left

    rc, out, _ = run_compare(capsys, a, b, "--out", page)
    assert rc == 0
    doc = page.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "<style>" in doc and "<link" not in doc and "<script" not in doc and "http" not in doc
    assert doc.count("<table>") == 2
    assert "<td>accuracy %</td>" in doc and f'<td class="num">{difference}</td>' in doc
    assert '<span class="flag">' in doc.split("<h2>binary / logreg")[1].split("</h2>")[0]
    assert "b&amp;&lt;c&gt;|d" in doc and "b&<c>" not in doc


def test_out_with_an_unknown_suffix_is_refused(a_b, tmp_path, capsys):
    a, b = a_b
    rc, out, err = run_compare(capsys, a, b, "--out", tmp_path / "cmp.txt")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and ".md or .html" in err
    assert not (tmp_path / "cmp.txt").exists()


def test_better_and_worse_follow_each_quantitys_direction(a_b):
    """A lower value is better where the quantity says so (fit time here; log loss or ECE when registered brief):
    the verdict reads the direction, not the sign."""
    a, b = a_b
    timings = b / "runs/binary/logreg/seed0/timings.json"
    values = json.loads(timings.read_text())
    values["fit_seconds"] = values["fit_seconds"] / 2
    timings.write_text(json.dumps(values))
    rerecord(timings.parent)
    flip_predictions(b / "runs/binary/logreg/seed0", 5)
    (cell,) = [c for c in compare_folders(a, b).cells if c.task == "binary"]
    assert cell.row("fit_seconds").difference < 0 and cell.row("fit_seconds").verdict == "better"
    assert cell.row("accuracy").difference < 0 and cell.row("accuracy").verdict == "worse"
    assert cell.row("predict_images_per_s").verdict == "same"
