"""`fer-bench compare A B`: identical folders, changed predictions and the McNemar flag, the seed majority, the
--fail-if-worse gate, the header's provenance, timings across machines, formats, bad folders and arguments."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_grid, one_line_error, rerecord, run_cli
from scipy.stats import binomtest

from fer_bench.compare import compare_folders
from fer_bench.provenance import machine_label

HEADLINE = "PrivateTest"


#: A tiny results folder with two (task, model): binary / logreg and 5class / logreg (quick, no CNN, no report),
#: taken from conftest's shared tiny_grid
CELLS = ["binary/logreg/seed0", "5class/logreg/seed0"]


@pytest.fixture
def a_b(tiny_grid, tmp_path) -> tuple[Path, Path]:
    """Fresh copies A and B of the grid (B's name holds HTML/markdown specials, to test escaping)."""
    return (copy_grid(tiny_grid, tmp_path / "a", cells=CELLS),
            copy_grid(tiny_grid, tmp_path / "b&<c>|d", cells=CELLS))


def flip_predictions(cell: Path, n_flips: int) -> list[str]:
    """Make `n_flips` correct headline-split predictions wrong (probabilities of the true class and another
    swapped), keeping predictions.csv's format; returns the image ids changed."""
    path = cell / "predictions.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    flipped = []
    for row in rows[1:]:
        probs = [float(x) for x in row[3:]]
        label, predicted = int(row[2]), max(range(len(probs)), key=probs.__getitem__)
        if row[0] != HEADLINE or predicted != label or len(flipped) == n_flips:
            continue
        other = min((k for k in range(len(probs)) if k != label), key=lambda k: -probs[k])
        row[3 + label], row[3 + other] = row[3 + other], row[3 + label]
        flipped.append(row[1])
    assert len(flipped) == n_flips
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    rerecord(cell)  # the cell as if stored with these predictions
    return flipped


def headline_correct(cell: Path) -> dict[str, bool]:
    """Image id -> whether the stored headline-split prediction is right, read straight from predictions.csv."""
    with open(cell / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    return {r[1]: int(np.argmax([float(x) for x in r[3:]])) == int(r[2]) for r in rows if r[0] == HEADLINE}


def edit_manifests(folder: Path, change) -> None:
    """Apply `change` to every cell manifest's dict of `folder` (manifests hold the records, none of themselves)."""
    for path in folder.glob("runs/*/*/seed*/manifest.json"):
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))


def table(out: str, task: str) -> dict[str, list[str]]:
    """The rows of a task's accuracy table in the text output, by model, split into columns."""
    (block,) = [b for b in out.split("\n\n") if b.startswith(f"{task}: accuracy")]
    return {line.split()[0]: line.split() for line in block.splitlines()[2:]}


def compare(capsys, *args) -> tuple[int, str, str]:
    return run_cli(["compare", *args], capsys)


def test_a_folder_against_its_copy_flags_nothing(a_b, capsys):
    a, b = a_b
    comparison = compare_folders(a, b)
    assert [(m.task, m.model) for m in comparison.models] == [("5class", "logreg"), ("binary", "logreg")]
    assert comparison.only_a == comparison.only_b == []
    for m in comparison.models:
        assert m.metrics_a == m.metrics_b and set(m.metrics_a) >= {"accuracy", "f1_macro", "roc_auc_macro"}
        assert m.timings_a == m.timings_b and m.timings_a["fit_seconds"] > 0
        assert m.seeds_a == m.seeds_b == 1 and m.test.n_images > 0
        assert (m.test.a_right_b_wrong, m.test.a_wrong_b_right, m.test.p_value) == (0, 0, 1.0)
        assert not m.significant and m.flag == ""
    assert comparison.significant == [] and comparison.worse_by_more_than(0) == []

    code, out, err = compare(capsys, a, b, "--fail-if-worse", 0)
    assert code == 0 and err == ""
    for task in ("binary", "5class"):
        (row,) = table(out, task).values()
        assert row[0] == "logreg" and row[5:7] == ["0", "1"] and len(row) == 10  # B − A, p, no flag
    assert out.splitlines()[-1] == ("0 of 2 (task, model) differ significantly in accuracy (p < 0.05); "
                                    "pass (--fail-if-worse 0): none lost more than 0 points")


def test_accuracy_matches_the_stored_predictions(a_b):
    """The compared accuracy is the headline split's accuracy of predictions.csv (recomputed, not a CSV)."""
    a, _ = a_b
    correct = headline_correct(a / "runs/binary/logreg/seed0")
    (m,) = [m for m in compare_folders(a, a).models if m.task == "binary"]
    assert m.metrics_a["accuracy"] == pytest.approx(sum(correct.values()) / len(correct))
    assert m.test.n_images == len(correct)


def test_many_wrong_predictions_are_flagged_and_fail_the_gate(a_b, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    comparison = compare_folders(a, b)
    (worse,) = comparison.significant
    assert (worse.task, worse.model, worse.flag) == ("binary", "logreg", "worse")
    assert worse.accuracy_points == pytest.approx(-100 * 30 / worse.test.n_images)
    assert (worse.test.a_right_b_wrong, worse.test.a_wrong_b_right) == (30, 0)
    assert worse.test.p_value == pytest.approx(binomtest(30, 30, 0.5).pvalue)
    assert comparison.worse_by_more_than(1) == [worse] and comparison.worse_by_more_than(50) == []

    code, out, err = compare(capsys, a, b, "--fail-if-worse", 1)
    assert code == 1 and err == ""
    row = table(out, "binary")["logreg"]
    assert row[5] == f"{worse.accuracy_points:+.1f}" and row[6] == "<" and row[8] == "worse"  # p "< 1e-6"
    assert "worse" not in table(out, "5class")["logreg"]
    last = out.splitlines()[-1]
    assert last.startswith("1 of 2 (task, model) differ significantly in accuracy")
    assert "FAIL (--fail-if-worse 1)" in last
    assert last.endswith(f"binary / logreg ({worse.accuracy_points:+.1f} points)")
    assert "5class" not in last

    assert compare(capsys, a, b, "--fail-if-worse", 50)[0] == 0  # lost about 33 points, not more than 50
    assert compare(capsys, a, b)[0] == 0  # without the gate, a difference is reported, not failed


def test_a_better_b_and_a_small_change_do_not_fail(a_b, capsys):
    a, b = a_b
    flip_predictions(a / "runs/binary/logreg/seed0", 30)  # B better than A
    flip_predictions(b / "runs/5class/logreg/seed0", 1)  # B one image worse: far from significant
    comparison = compare_folders(a, b)
    (better,) = comparison.significant
    assert (better.task, better.flag) == ("binary", "better")
    (small,) = [m for m in comparison.models if m.task == "5class"]
    assert small.accuracy_points < 0 and small.test.p_value == 1.0 and small.flag == ""
    code, out, _ = compare(capsys, a, b, "--fail-if-worse", 0)
    assert code == 0
    assert table(out, "binary")["logreg"][-4] == "better"
    assert "1 of 2 (task, model) differ significantly" in out.splitlines()[-1]


def test_seeds_are_averaged_and_tested_by_their_majority(tiny_grid, tmp_path):
    """Three seeds each: the accuracy is the seed mean; the test pairs each folder's seed majority per image, so
    an image made wrong in one seed of three counts only where it was right in exactly one other seed."""
    a = copy_grid(tiny_grid, tmp_path / "a", cells=["binary/logreg/seed*"])
    b = copy_grid(tiny_grid, tmp_path / "b", cells=["binary/logreg/seed*"])

    def majority(folder):
        seeds = [headline_correct(folder / f"runs/binary/logreg/seed{s}") for s in range(3)]
        return {image: sum(seed[image] for seed in seeds) >= 2 for image in seeds[0]}

    right_a = majority(a)
    lost = []
    for flipped_seeds in (1, 2):
        flip_predictions(b / f"runs/binary/logreg/seed{flipped_seeds - 1}", 20)
        (m,) = compare_folders(a, b).models
        assert m.seeds_a == m.seeds_b == 3
        assert m.accuracy_points == pytest.approx(-100 * 20 * flipped_seeds / (3 * m.test.n_images))
        right_b = majority(b)
        lost.append(sum(right_a[i] and not right_b[i] for i in right_a))
        assert (m.test.a_right_b_wrong, m.test.a_wrong_b_right) == (lost[-1], 0)
        assert m.test.p_value == pytest.approx(binomtest(lost[-1], lost[-1], 0.5).pvalue if lost[-1] else 1.0)
    assert lost[0] < 20  # summing the seeds' discordant pairs would count all 20 of seed 0
    assert lost[1] > lost[0]


def test_different_seed_counts_are_compared(tiny_grid, tmp_path, capsys):
    a = copy_grid(tiny_grid, tmp_path / "a", cells=["binary/logreg/seed0"])
    b = copy_grid(tiny_grid, tmp_path / "b", cells=["binary/logreg/seed*"])
    (m,) = compare_folders(a, b).models
    assert (m.seeds_a, m.seeds_b) == (1, 3) and m.test.n_images == len(headline_correct(a / "runs" / CELLS[0]))
    code, out, _ = compare(capsys, a, b)
    assert code == 0 and table(out, "binary")["logreg"][1] == "1/3"


def test_the_header_names_each_folders_data_commits_machines_and_dates(a_b, capsys):
    a, b = a_b
    edit_manifests(b, lambda m: m["code"].update(commit="f" * 40, dirty=True))
    manifest = json.loads((a / "runs" / CELLS[0] / "manifest.json").read_text())
    info = json.loads((a / "fer-bench.json").read_text())
    code, out, _ = compare(capsys, a, b)
    assert code == 0
    head_a, head_b = out.split("\nB: ")[0], out.split("\nB: ")[1].split("\n\n")[0]
    assert f"A: {a}" in head_a and head_b.startswith(str(b))
    for head in (head_a, head_b):
        assert f"data: {info['dataset']}, fingerprint {info['fingerprint']}" in head
        assert f"machines: {machine_label(manifest['machine'])}" in head
        assert "cells finished: " in head
    dirty = " (dirty)" if manifest["code"]["dirty"] else ""
    assert f"commits: {manifest['code']['commit'][:10]}{dirty}\n" in head_a
    assert "commits: ffffffffff (dirty)" in head_b
    assert manifest["finished"] in head_a


def test_timings_show_only_when_both_folders_ran_on_one_machine(a_b, capsys):
    a, b = a_b
    timings = b / "runs/binary/logreg/seed0/timings.json"
    values = json.loads(timings.read_text())
    timings.write_text(json.dumps({**values, "fit_seconds": values["fit_seconds"] * 2}))
    rerecord(timings.parent)
    code, out, _ = compare(capsys, a, b, "--fail-if-worse", 0)
    assert code == 0  # a timing difference is never a difference
    assert "Timings (seed means, PrivateTest), one machine:" in out
    (row,) = [line.split() for line in out.splitlines() if line.strip().startswith("binary / logreg")]
    assert row[5] == "2.00"  # fit time B / A
    assert out.splitlines()[-1].startswith("0 of 2 (task, model) differ significantly")

    edit_manifests(b, lambda m: m["machine"].update(cpu="Other CPU"))
    code, out, _ = compare(capsys, a, b)
    assert code == 0 and "Timings (" not in out and "binary / logreg" not in out
    (line,) = [line for line in out.splitlines() if line.startswith("Timings not compared")]
    assert "B on Other CPU" in line and "--timings" in line
    code, out, _ = compare(capsys, a, b, "--timings")
    assert "Timings (seed means, PrivateTest) from different machines: A on " in out and "B on Other CPU" in out
    assert any(line.strip().startswith("binary / logreg") for line in out.splitlines())


def test_csv_has_one_row_per_task_and_model(a_b, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    (worse,) = compare_folders(a, b).significant
    code, out, err = compare(capsys, a, b, "--format", "csv", "--fail-if-worse", 1)
    assert code == 1 and "FAIL" in err and "binary / logreg" in err  # the verdict, beside a parseable stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["task"], r["model"]) for r in rows] == [("5class", "logreg"), ("binary", "logreg")]
    assert list(rows[0])[:10] == ["task", "model", "seeds_a", "seeds_b", "n_images", "accuracy_a", "accuracy_b",
                                  "difference_points", "p_value", "flag"]
    same, changed = rows
    assert (same["flag"], float(same["p_value"]), float(same["difference_points"])) == ("", 1.0, 0.0)
    assert changed["flag"] == "worse" and changed["seeds_a"] == changed["seeds_b"] == "1"
    assert int(changed["n_images"]) == worse.test.n_images
    assert float(changed["difference_points"]) == pytest.approx(worse.accuracy_points)
    assert float(changed["accuracy_a"]) - float(changed["accuracy_b"]) == pytest.approx(30 / worse.test.n_images)
    assert float(changed["p_value"]) == pytest.approx(binomtest(30, 30, 0.5).pvalue)

    code, out, _ = compare(capsys, a, b, "--format", "csv", "--only-changed")
    assert code == 0 and [r["task"] for r in csv.DictReader(io.StringIO(out))] == ["binary"]


def test_json_holds_the_records_and_the_header(a_b, tmp_path, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    code, out, _ = compare(capsys, a, b, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["a"]["path"] == str(a) and document["b"]["path"] == str(b)
    assert document["a"]["commits"][0]["commit"] and document["a"]["machines"]
    assert document["split"] == HEADLINE and document["same_machine"] is True
    assert [(r["task"], r["flag"]) for r in document["records"]] == [("5class", ""), ("binary", "worse")]
    assert document["summary"]["significant"] == ["binary / logreg"] and document["summary"]["failing"] == []

    out_file = tmp_path / "cmp.json"  # the format from the suffix
    code, out, _ = compare(capsys, a, b, "--out", out_file, "--fail-if-worse", 1)
    assert code == 1 and f"written to {out_file}" in out and "FAIL" in out.splitlines()[-1]
    assert json.loads(out_file.read_text())["summary"]["failing"] == ["binary / logreg"]


def test_only_changed_shows_the_significant_pairs(a_b, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    code, out, _ = compare(capsys, a, b, "--only-changed")
    assert code == 0
    assert "binary: accuracy" in out and "5class: accuracy" not in out
    assert out.splitlines()[-1].startswith("1 of 2 (task, model) differ significantly")


@pytest.mark.parametrize("points", ["-1", "nan", "inf", "one", ""])
def test_a_bad_fail_if_worse_is_one_line(a_b, capsys, points):
    a, b = a_b
    code, out, err = compare(capsys, a, b, "--fail-if-worse", points)
    one_line_error(code, err, "--fail-if-worse", repr(points))
    assert out == ""


def test_cells_in_only_one_folder_are_listed(a_b, capsys):
    a, b = a_b
    shutil.rmtree(b / "runs/5class")
    comparison = compare_folders(a, b)
    assert [(m.task, m.model) for m in comparison.models] == [("binary", "logreg")]
    assert comparison.only_a == [("5class", "logreg")] and comparison.only_b == []
    code, out, _ = compare(capsys, a, b)
    assert code == 0 and "only in A: 5class / logreg" in out
    assert out.splitlines()[-1].startswith("0 of 1 (task, model)")
    assert "only in B: 5class / logreg" in compare(capsys, b, a)[1]


def test_different_fingerprints_are_refused_unless_allowed(a_b, capsys):
    a, b = a_b
    marker = b / "fer-bench.json"
    info = json.loads(marker.read_text())
    info["fingerprint"] = "0123456789abcdef"
    marker.write_text(json.dumps(info))
    # B's cells are of B's data (else refused as foreign)
    edit_manifests(b, lambda m: m["dataset"].update(fingerprint=info["fingerprint"]))

    code, out, err = compare(capsys, a, b)
    one_line_error(code, err, "different data", "0123456789abcdef", "--allow-different-data")
    assert out == ""

    code, out, err = compare(capsys, a, b, "--allow-different-data")
    assert code == 0
    assert err.startswith("fer-bench: warning:") and "different data" in err
    assert "WARNING: different data" in out and "binary: accuracy" in out

    md = a.parent / "diff.md"
    assert compare(capsys, a, b, "--allow-different-data", "--out", md)[0] == 0
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
        code, out, err = compare(capsys, *args)
        one_line_error(code, err, str(bad))
        assert out == "" and err.startswith("fer-bench: error:")


def test_markdown_and_html(a_b, tmp_path, capsys):
    a, b = a_b
    flip_predictions(b / "runs/binary/logreg/seed0", 30)
    (changed,) = compare_folders(a, b).significant
    difference = f"{changed.accuracy_points:+.1f}"
    md = tmp_path / "reports" / "cmp.md"

    code, out, _ = compare(capsys, a, b, "--out", md)
    assert code == 0 and f"written to {md}" in out
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# fer-bench compare")
    assert "## binary: accuracy and macro-F1 on PrivateTest" in text and "## 5class: accuracy" in text
    assert "| model | seeds A/B | images | accuracy A | accuracy B | B − A | p | flag |" in text
    assert f"| {difference} | < 1e-6 | worse |" in text
    assert "b&<c>\\|d" in text  # a | in a folder name does not break the table rows
    assert text.rstrip().splitlines()[-1].startswith("1 of 2 (task, model) differ significantly")
    assert not list(md.parent.glob(".*.tmp"))  # written atomically: no temporary file left

    code, out, _ = compare(capsys, a, b, "--format", "html")
    assert code == 0
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    assert "<style>" in out and "<link" not in out and "<script" not in out and "http" not in out
    assert out.count("<table>") == 3  # two tasks and the timings
    assert f'<td class="num">{difference}</td>' in out and '<td class="num worse">worse</td>' in out
    assert "b&amp;&lt;c&gt;|d" in out and "b&<c>" not in out


def test_out_with_an_unknown_suffix_is_refused(a_b, tmp_path, capsys):
    a, b = a_b
    code, out, err = compare(capsys, a, b, "--out", tmp_path / "cmp.xyz")
    one_line_error(code, err, "cmp.xyz", "--format", ".md", ".csv")
    assert out == "" and not (tmp_path / "cmp.xyz").exists()
    assert compare(capsys, a, b, "--out", tmp_path / "cmp.xyz", "--format", "csv")[0] == 0
    assert (tmp_path / "cmp.xyz").read_text().startswith("task,model,")
