"""robustness.npz and the report's robustness section: every cell stores its probabilities on the corrupted
PrivateTest, `fer-bench robustness` fills older cells from their models, and the report's numbers are the ones a
direct computation from the stored files gives.

The grid is hog_svm and logreg on a small Kaggle-layout folder of random faces with two seeds (so `fer-bench
robustness` re-loads the data set from the path the manifests name, as on a real results folder)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, rerecord, run_cli, snapshot

from fer_bench.cell_robustness import (
    PROBABILITY_STEPS,
    CellRobustness,
    cell_robustness,
    compute_cell_robustness,
    read_cell_robustness,
    robustness_bytes,
)
from fer_bench.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from fer_bench.errors import FerBenchError
from fer_bench.report import build_report, write_report
from fer_bench.report.robustness import corruption_error, model_robustness
from fer_bench.run import run_grid
from fer_bench.storage import ROBUSTNESS_FILE, npz_bytes, read_cell, read_manifest

TASKS = ["7class", "binary"]
MODELS = ["hog_svm", "logreg"]
SPEC = {"Training": 20, "PublicTest": 4, "PrivateTest": 6}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    from conftest import make_folder_dataset

    root = tmp_path_factory.mktemp("robustness")
    data = make_folder_dataset(root / "fer2013", SPEC, seed=5)
    out = root / "results"
    run_grid(data=str(data), tasks=TASKS, models=MODELS, seeds=(0, 1), quick=True, out=out, report=False)
    write_report(out)
    return out


def _cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("runs/*/*/seed*/manifest.json"))


def _csv(out: Path, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO((out / name).read_text(encoding="utf-8"))))


class _Brightness:
    """A stand-in model: the brighter the face, the more likely class 1."""

    def predict_proba(self, images):
        brightness = np.asarray(images, dtype=float).mean(axis=(1, 2)) / 255
        return np.stack([1 - brightness, brightness], axis=1)


def _faces(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8), np.array([f"face{k}.jpg" for k in range(n)])


# --- the stored file -----------------------------------------------------------------------------------------------

def test_probabilities_are_the_models_on_each_corrupted_face_and_the_file_is_deterministic():
    images, ids = _faces()
    robustness = compute_cell_robustness(_Brightness(), images, ids, 2, where="test")
    assert robustness.proba.shape == (len(CORRUPTIONS), len(SEVERITIES), len(images), 2)
    assert robustness.proba.dtype == np.float16 and robustness.corruptions == tuple(CORRUPTIONS)
    for name in ("gaussian_noise", "mouth_band", "brightness"):
        for severity in (1, 5):
            expected = _Brightness().predict_proba(corrupt(images, name, severity, ids))
            assert np.allclose(robustness.probabilities(name, severity), expected, atol=1e-3)
    # the same faces give the same bytes, in any order of the batch
    again = compute_cell_robustness(_Brightness(), images, ids, 2, where="test")
    assert robustness_bytes(again) == robustness_bytes(robustness)
    order = np.arange(len(images))[::-1]
    reversed_ = compute_cell_robustness(_Brightness(), images[order], ids[order], 2, where="test")
    assert np.array_equal(reversed_.proba[:, :, order], robustness.proba)


class _NearTie:
    """A stand-in model whose two top classes differ by less than the stored rounding of the probabilities."""

    def predict_proba(self, images):
        return np.tile([0.498, 0.499, 0.003], (len(images), 1))


def test_the_predicted_classes_are_stored_exactly_and_the_probabilities_to_a_255th(tmp_path):
    images, ids = _faces()
    (tmp_path / ROBUSTNESS_FILE).write_bytes(robustness_bytes(compute_cell_robustness(_NearTie(), images, ids, 3,
                                                                                      where="test")))
    stored = read_cell_robustness(tmp_path, n_images=len(images), n_classes=3)
    # 0.498 and 0.499 both round to 127/255: their argmax would say class 0, the model said class 1
    assert stored.probabilities("rotation", 3)[0] == pytest.approx(np.array([127, 127, 1]) / 255)
    assert (stored.predictions("rotation", 3) == 1).all() and (stored.predicted == 1).all()
    assert np.abs(stored.proba - np.array([0.498, 0.499, 0.003])).max() <= 0.5 / PROBABILITY_STEPS


def test_a_format_1_file_is_read_its_predicted_classes_the_argmax(tmp_path):
    proba = np.random.default_rng(0).dirichlet(np.ones(2), size=(1, 2, 5)).astype(np.float16)
    (tmp_path / ROBUSTNESS_FILE).write_bytes(npz_bytes({
        "format": np.asarray(1), "split": np.asarray("PrivateTest"), "image_ids": np.asarray(list("abcde")),
        "corruptions": np.asarray(["jpeg"]), "severities": np.asarray([1, 2]), "proba": proba}))
    stored = read_cell_robustness(tmp_path)
    assert np.array_equal(stored.predictions("jpeg", 2), proba[0, 1].argmax(axis=1))
    assert stored.probabilities("jpeg", 1) == pytest.approx(proba[0, 0].astype(float), abs=1e-3)


def test_a_predicted_class_out_of_range_is_a_damaged_file(tmp_path):
    images, ids = _faces(4)
    robustness = compute_cell_robustness(_NearTie(), images, ids, 3, where="test")
    robustness.predicted[0, 0, 0] = 3
    (tmp_path / ROBUSTNESS_FILE).write_bytes(robustness_bytes(robustness))
    with pytest.raises(FerBenchError, match=r"robustness.npz: predicted classes .* each below 3 \(damaged file\)"):
        read_cell_robustness(tmp_path)


def test_a_bad_output_under_a_corruption_is_refused_naming_it():
    class BrokenOnFourthCall(_Brightness):
        calls = 0

        def predict_proba(self, images):
            self.calls += 1
            proba = super().predict_proba(images)
            return proba * 2 if self.calls == 4 else proba

    images, ids = _faces()
    fourth = list(CORRUPTIONS)[3]  # one call per corruption, in registry order
    with pytest.raises(FerBenchError, match=rf"model x, predict_proba on PrivateTest under {fourth}: .*range"):
        compute_cell_robustness(BrokenOnFourthCall(), images, ids, 2, where="model x")


def test_every_cell_stores_its_robustness_recorded_in_its_manifest(grid):
    for path in _cells(grid):
        cell = read_cell(path)
        robustness = cell_robustness(cell)
        ids, _, _ = cell.split("PrivateTest")
        assert robustness.proba.shape == (len(CORRUPTIONS), len(SEVERITIES), len(ids), len(cell.class_names))
        assert robustness.image_ids.tolist() == ids.tolist()
        assert ROBUSTNESS_FILE in read_manifest(path / "manifest.json").files
        assert (path / ROBUSTNESS_FILE).stat().st_size < 100_000
        assert "robustness_seconds" in cell.timings


# --- the report ----------------------------------------------------------------------------------------------------

def test_robustness_csv_holds_the_direct_computation_from_the_stored_files(grid):
    rows = _csv(grid, "robustness.csv")
    assert list(rows[0]) == ["task", "model", "seed", "corruption", "severity", "accuracy", "f1_macro"]
    assert len(rows) == len(_cells(grid)) * (1 + len(CORRUPTIONS) * len(SEVERITIES))
    by_key = {(r["task"], r["model"], r["seed"], r["corruption"], r["severity"]): r for r in rows}
    for path in _cells(grid):
        cell = read_cell(path)
        _, labels, clean = cell.split("PrivateTest")
        stored = read_cell_robustness(path)
        key = (cell.task, cell.model, str(cell.seed))
        assert float(by_key[(*key, "none", "0")]["accuracy"]) == pytest.approx(
            np.mean(clean.argmax(axis=1) == labels), abs=1e-6)
        for c, name in enumerate(stored.corruptions):
            for s, severity in enumerate(stored.severities):
                predicted = stored.predicted[c, s]
                assert float(by_key[(*key, name, str(severity))]["accuracy"]) == pytest.approx(
                    np.mean(predicted == labels), abs=1e-6)


def test_the_corruption_error_is_imagenet_c_s_relative_to_the_reference(grid):
    report = build_report(grid)
    models = model_robustness(report.tables.robustness_rows)
    model, reference = models[("7class", "logreg")], models[("7class", "hog_svm")]
    rows = [r for r in _csv(grid, "robustness.csv") if r["task"] == "7class" and r["corruption"] != "none"]

    def errors(name, seed, corruption):
        return sum(1 - float(r["accuracy"]) for r in rows
                   if r["model"] == name and r["corruption"] == corruption and (seed is None or r["seed"] == seed))

    expected = np.mean([errors("logreg", "0", c) / (errors("hog_svm", None, c) / 2) for c in CORRUPTIONS])
    assert corruption_error(model, reference, 0) == pytest.approx(expected)
    section = next(s.markdown for s in report.sections if s.title.startswith("Robustness"))
    header = next(x for x in section.splitlines() if x.startswith("| model |")).split(" | ")
    line = next(x for x in section.splitlines() if x.startswith("| logreg ")).split(" | ")
    column = next(k for k, title in enumerate(header) if title.startswith("7class:"))
    assert "CE vs hog_svm" in header[column]
    errors = model.errors_relative_to(reference)
    # logreg's seeds are identical (deterministic): the report shows one value, without a spread
    spread = f" ± {100 * float(np.std(errors, ddof=1)):.0f}" if len(set(errors)) > 1 else ""
    assert f"CE {100 * float(np.mean(errors)):.0f}{spread} · " in line[column]
    assert (grid / "figures" / "robustness_7class.png").is_file()
    assert "robustness_7class.png" in (grid / "summary.md").read_text()


def test_a_report_without_robustness_files_leaves_the_section_out(grid, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(grid, out)
    for path in _cells(out):
        (path / ROBUSTNESS_FILE).unlink()
        rerecord(path)
    write_report(out)
    assert not (out / "robustness.csv").exists()  # the earlier report's removed by the swap
    assert "## Robustness" not in (out / "summary.md").read_text()


# --- bad input and the command ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "other_faces"])
def test_a_damaged_robustness_file_stops_the_report_in_one_line(grid, tmp_path, capsys, damage):
    out = tmp_path / "damaged"
    shutil.copytree(grid, out)
    path = _cells(out)[0]
    if damage == "truncated":
        (path / ROBUSTNESS_FILE).write_bytes((path / ROBUSTNESS_FILE).read_bytes()[:500])
    else:  # a well-formed file of another cell's faces
        stored = read_cell_robustness(path)
        stored.image_ids = stored.image_ids[::-1]
        (path / ROBUSTNESS_FILE).write_bytes(robustness_bytes(stored))
    rerecord(path)  # as if stored so: the records do not catch it, the reading does
    before = snapshot(out)
    code, _, err = run_cli(["report", "--out", out], capsys)
    one_line_error(code, err, ROBUSTNESS_FILE)
    assert snapshot(out) == before
    code, out_text, err = run_cli(["verify", "--out", out], capsys)
    assert code == 2 and ROBUSTNESS_FILE in out_text + err


def test_the_robustness_command_fills_an_old_cell_and_names_a_cell_without_model(grid, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(grid, out)
    old = out / "runs" / "7class" / "logreg" / "seed0"  # computed before cells stored robustness, model still here
    gone = out / "runs" / "binary" / "hog_svm" / "seed1"  # none, and no local model
    original = (old / ROBUSTNESS_FILE).read_bytes()
    for cell in (old, gone):
        (cell / ROBUSTNESS_FILE).unlink()
        rerecord(cell)
    shutil.rmtree(gone / "model")
    code, text, err = run_cli(["robustness", "--out", out], capsys)
    assert code == 0, err
    assert (old / ROBUSTNESS_FILE).read_bytes() == original  # the same bytes as the cell's own
    assert not (gone / ROBUSTNESS_FILE).exists()
    assert "robustness: 1 robustness.npz written" in text
    [line] = [line for line in err.splitlines() if "no local model" in line]
    assert "binary/hog_svm/seed1" in line and "7class" not in line
    assert read_cell(old).manifest.files[ROBUSTNESS_FILE]["bytes"] == len(original)
    # the report names the cell it could not score
    write_report(out)
    assert "binary/hog_svm/seed1" in next(x for x in (out / "summary.md").read_text().splitlines()
                                         if "stored without robustness.npz" in x)


def test_a_run_without_robustness_stores_cells_the_robustness_command_fills(tmp_path, capsys):
    """`fer-bench run --no-robustness` stores complete cells without robustness.npz (nor its time); `fer-bench
    robustness` then writes the bytes the cell would have stored itself."""
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "fer2013", SPEC, seed=5)
    with_it, without = tmp_path / "with", tmp_path / "without"
    for out, flags in ((with_it, []), (without, ["--no-robustness"])):
        code, _, err = run_cli(["run", "--data", str(data), "--tasks", "binary", "--models", "logreg", "--quick",
                                "--no-report", "--out", str(out), *flags], capsys)
        assert code == 0, err
    cell = without / "runs" / "binary" / "logreg" / "seed0"
    assert not (cell / ROBUSTNESS_FILE).exists() and ROBUSTNESS_FILE not in read_manifest(cell / "manifest.json").files
    assert "robustness_seconds" not in json.loads((cell / "timings.json").read_text())
    code, text, err = run_cli(["robustness", "--out", str(without)], capsys)
    assert code == 0 and "1 robustness.npz written" in text, err
    expected = (with_it / "runs" / "binary" / "logreg" / "seed0" / ROBUSTNESS_FILE).read_bytes()
    assert (cell / ROBUSTNESS_FILE).read_bytes() == expected


def test_cell_robustness_is_none_for_a_cell_stored_before_it(grid, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(grid, out)
    path = _cells(out)[0]
    (path / ROBUSTNESS_FILE).unlink()
    rerecord(path)
    assert cell_robustness(read_cell(path)) is None
    assert isinstance(read_cell_robustness(_cells(grid)[0]), CellRobustness)


def test_open_results_gives_the_robustness_table_and_figure(grid):
    from fer_bench import open_results

    results = open_results(grid)
    frame, rows = results.robustness, _csv(grid, "robustness.csv")
    assert list(frame.columns) == ["task", "model", "seed", "corruption", "severity", "accuracy", "f1_macro"]
    assert len(frame) == len(rows)
    assert frame["accuracy"].tolist() == pytest.approx([float(r["accuracy"]) for r in rows], abs=1e-6)
    figure = results.plot_robustness("binary")
    assert len([ax for ax in figure.axes if ax.get_visible()]) == len(CORRUPTIONS)

