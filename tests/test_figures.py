"""The report's figures: every PNG is written, valid, small, linked from summary.md and reproducible; figures
that need the fitted models or the images are skipped with a note when those are missing."""

import csv
import importlib.util
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench import figures
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError
from fer_bench.report import write_report
from fer_bench.run import run_grid
from fer_bench.storage import StoredCell, read_cell

HAS_TF = importlib.util.find_spec("tensorflow") is not None
MODELS = ["cnn", "hog_svm", "logreg"] if HAS_TF else ["hog_svm", "logreg"]
BASELINES = [m for m in MODELS if m != "cnn"]
TASKS = ["7class", "5class", "binary"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def prediction_figures() -> list[str]:
    """Figures drawn from the stored files alone (predictions, params.json)."""
    names = ["cnn_training_curves"] if HAS_TF else []
    for task in TASKS:
        names += [f"roc_{task}", f"confusion_{task}", f"recall_{task}", f"confused_pairs_{task}",
                  f"reliability_{task}"]
        if task != "binary":
            names.append(f"roc_per_class_{task}")
        if HAS_TF:
            names += [f"confusion_diff_{task}", f"recall_gain_{task}"]
    return names


def model_figures() -> list[str]:
    names = ["logreg_templates", "hog_svm_hog"]
    for task in TASKS:
        names += [f"saliency_{task}", f"class_saliency_{task}", f"saliency_errors_{task}"]
        if HAS_TF:
            names += [f"faces_{task}_{b}" for b in BASELINES]
    return names


@pytest.fixture(scope="module")
def small_synthetic():
    return make_synthetic(n_train=700, n_public=210, n_private=210, seed=0)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_synthetic):
    """A quick run of every model on small synthetic data, report included (the figures find the data set
    through remember_dataset, since these sizes are not the synthetic defaults)."""
    figures.remember_dataset(small_synthetic)
    out = tmp_path_factory.mktemp("figures") / "results"
    run_grid(dataset=small_synthetic, models=MODELS, quick=True, out=out)
    return out


def _figure_bytes(out: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((out / "figures").glob("*.png"))}


def _linked(summary: str) -> set[str]:
    return set(re.findall(r"\]\(figures/([\w.-]+)\.png\)", summary))


def test_every_figure_is_a_small_valid_png_linked_from_the_summary(finished_run):
    summary = (finished_run / "summary.md").read_text()
    written = _figure_bytes(finished_run)
    for name in prediction_figures() + model_figures():
        assert name in written, f"{name}.png was not written"
        data = written[name]
        assert data.startswith(PNG_SIGNATURE), name
        assert 5_000 < len(data) <= 300_000, (name, len(data))
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert 250 <= image.width <= 1600 and 150 <= image.height <= 1600, (name, image.size)
        assert f"](figures/{name}.png)" in summary, f"{name}.png is not embedded in summary.md"
    # every embedded figure exists (no dangling links), and each has a caption line under it
    assert _linked(summary) <= set(written)
    for name in _linked(summary):
        line_after = summary.split(f"](figures/{name}.png)", 1)[1].splitlines()[1]
        assert line_after.startswith("*") and line_after.endswith("*") and len(line_after) > 20, name


def test_sections_come_after_the_tables_in_order(finished_run):
    summary = (finished_run / "summary.md").read_text()
    titles = re.findall(r"^## (.+)$", summary, flags=re.M)
    figure_titles = [t for t in titles if t.startswith("Figures:")]
    assert [t.split(" (")[0] for t in figure_titles] == [
        *(["Figures: CNN training curves"] if HAS_TF else []),
        "Figures: ROC curves", "Figures: confusion matrices", "Figures: where the CNN gains",
        "Figures: calibration", "Figures: what the models look at"]
    assert titles.index(figure_titles[0]) > titles.index(next(t for t in titles if t.startswith("Top confusions")))


def test_regenerated_figures_are_byte_identical(finished_run):
    before = _figure_bytes(finished_run)
    shutil.rmtree(finished_run / "figures")
    write_report(finished_run)
    after = _figure_bytes(finished_run)
    assert set(after) == set(before)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"figures differ between two reports: {changed}"


def test_model_figures_are_skipped_with_a_note_and_earlier_pngs_left_alone(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    earlier = _figure_bytes(out)
    for model_dir in out.glob("runs/*/*/seed*/model"):
        shutil.rmtree(model_dir)
    (out / "figures" / "saliency_7class.png").unlink()  # this one must not come back without the models
    for name in prediction_figures():
        (out / "figures" / f"{name}.png").unlink()
    write_report(out)
    summary = (out / "summary.md").read_text()
    written = _figure_bytes(out)
    assert set(prediction_figures()) <= set(written)
    assert "saliency_7class" not in written and "](figures/saliency_7class.png)" not in summary
    for task in TASKS:
        assert f"Skipped: {task} saliency: models not present: run `fer-bench run` on this machine" in summary
    assert "Skipped: logistic-regression templates: models not present" in summary
    assert "Skipped: HOG visualisation: models not present" in summary
    # the PNGs an earlier report made from the models are untouched and still shown, marked as earlier
    for name in set(model_figures()) - {"saliency_7class"}:
        assert written[name] == earlier[name], name
        assert f"![{name} (earlier report)](figures/{name}.png)" in summary or name.startswith("faces_"), name


def test_image_figures_are_skipped_when_the_data_set_cannot_be_reloaded(finished_run, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "_DATASETS", {})  # forget the remembered data: only re-loading is left
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    shutil.rmtree(out / "figures")
    write_report(out)
    summary = (out / "summary.md").read_text()
    written = _figure_bytes(out)
    assert set(prediction_figures()) <= set(written)
    assert "logreg_templates" in written  # needs the models, not the images
    assert not any(name.startswith(("saliency_", "class_saliency_", "faces_")) for name in written)
    # the manifest's synthetic data were made with non-default sizes: the default ones have another fingerprint
    assert "images not available: the default synthetic data has fingerprint" in summary


def test_face_selection_takes_classes_in_turn_most_confident_first():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    score = np.array([0.5, 0.9, 0.7, 0.2, 0.8, 0.6, 0.6, 0.1])
    candidates = np.array([0, 1, 2, 3, 4, 6, 7])  # image 5 is not a candidate
    assert figures._pick(candidates, labels, score, 5).tolist() == [1, 4, 6, 2, 3]
    assert figures._pick(candidates, labels, score, 100).tolist() == [1, 4, 6, 2, 3, 7, 0]
    assert figures._pick(np.array([], dtype=int), labels, score, 4).tolist() == []


def test_top_confusions_agree_with_confusions_csv(finished_run):
    with open(finished_run / "confusions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "PrivateTest" and r["task"] == "7class"]
    cell = read_cell(finished_run / "runs" / "7class" / "logreg" / "seed0")
    _, labels, proba = cell.split("PrivateTest")
    pairs = figures.top_confusions(labels, proba.argmax(axis=1), len(cell.class_names))
    expected = [(r["true"], r["predicted"], int(r["count"])) for r in rows if r["model"] == "logreg"]
    assert [(cell.class_names[i], cell.class_names[j], n) for i, j, n, _ in pairs] == expected


def test_paired_recall_gain_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 400)
    pred_a = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 3, 400))
    pred_b = np.where(rng.random(400) < 0.4, labels, rng.integers(0, 3, 400))
    gain, interval = figures.paired_recall_gain(labels, pred_a, pred_b, 4, n_resamples=300, seed=1)
    for c in range(3):
        direct = np.mean(pred_a[labels == c] == c) - np.mean(pred_b[labels == c] == c)
        assert gain[c] == pytest.approx(direct)
        assert interval[c, 0] < gain[c] < interval[c, 1]
        assert interval[c, 1] - interval[c, 0] < 0.4
    assert np.isnan(gain[3]) and np.isnan(interval[3]).all()  # class 3 never occurs
    same, same_interval = figures.paired_recall_gain(labels, pred_a, pred_a, 3, n_resamples=50)
    assert np.all(same == 0) and np.all(same_interval == 0)
    again = figures.paired_recall_gain(labels, pred_a, pred_b, 4, n_resamples=300, seed=1)[1]
    np.testing.assert_array_equal(again, interval)


def test_mosaic_places_tiles_pixel_for_pixel():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    tile = figures.to_tile(figures.gray_tile(face))
    assert tile.shape == (figures.TILE, figures.TILE, 3)
    fig = figures.mosaic_figure("test", [figures.MosaicBlock([[tile, None], [None, tile]], [["a", "b"], ["", ""]],
                                                             ["row 1", "row 2"])], label_width=60)
    image = np.asarray(Image.open(io.BytesIO(figures.figure_png(fig))).convert("L"))
    # find the tile's top-left corner by its first row of pixels, then compare the whole block
    scale = figures.TILE_SCALE
    matches = [(r, c) for r in range(image.shape[0] - figures.TILE) for c in range(image.shape[1] - figures.TILE)
               if np.array_equal(image[r, c:c + figures.TILE], tile[0, :, 0])]
    assert len(matches) >= 2
    r, c = matches[0]
    np.testing.assert_array_equal(image[r:r + figures.TILE:scale, c:c + figures.TILE:scale], face)


def test_task_results_refuse_cells_of_different_images(finished_run, tmp_path):
    cells = [read_cell(p) for p in sorted((finished_run / "runs" / "binary").glob("*/seed0"))]
    cells[1].image_ids = cells[1].image_ids.copy()
    cells[1].image_ids[np.flatnonzero(cells[1].splits == "PrivateTest")[0]] = "someone_else"
    with pytest.raises(FerBenchError, match="different PrivateTest images"):
        figures.task_results(cells)


def _task_with_throughput(rates: dict[str, float | None], n_classes: int = 7):
    labels = np.arange(n_classes).repeat(3)
    cells = {m: StoredCell(Path(m), {"task": "t", "model": m, "seed": 0}, {},
                           {"predict_images_per_s_PrivateTest": rate}, np.array(["PrivateTest"] * len(labels)),
                           np.arange(len(labels)).astype(str), labels, np.eye(n_classes)[labels])
             for m, rate in rates.items()}
    return figures.TaskResults("t", [str(c) for c in range(n_classes)], cells, np.arange(len(labels)).astype(str),
                               labels, {m: c.proba for m, c in cells.items()})


def test_class_average_faces_shrink_for_slow_models_within_bounds():
    fast = _task_with_throughput({"a": 1e6, "b": 1e6})
    assert figures.class_faces_per_class(fast, ["a", "b"], 13) == figures.CLASS_SALIENCY_FACES
    unknown = _task_with_throughput({"a": None})
    assert figures.class_faces_per_class(unknown, ["a"], 13) == figures.CLASS_SALIENCY_FACES
    slow = _task_with_throughput({"a": 50.0})
    assert figures.class_faces_per_class(slow, ["a"], 13) == figures.MIN_CLASS_SALIENCY_FACES
    # three models at 700 images/s: the budget buys budget * 700 / 3 predictions, i.e. that / 121 faces; 13 go to
    # the other figures, the rest is shared by the 7 classes (9 each with the default 40 s)
    between = _task_with_throughput({"a": 700.0, "b": 700.0, "c": 700.0})
    expected = int((figures.OCCLUSION_SECONDS_PER_TASK * 700 / 3 / 121 - 13) // 7)
    assert figures.MIN_CLASS_SALIENCY_FACES < expected < figures.CLASS_SALIENCY_FACES
    assert figures.class_faces_per_class(between, ["a", "b", "c"], 13) == expected


def test_results_data_set_is_reloaded_from_its_source_and_checked(tiny_fer_folder, monkeypatch):
    from fer_bench.data import load_path

    monkeypatch.setattr(figures, "_DATASETS", {})
    dataset = load_path(tiny_fer_folder)
    info = {"name": "fer2013", "fingerprint": dataset.fingerprint, "source": dataset.source}
    reloaded, reason = figures.load_results_dataset(info)
    assert reason == "" and reloaded.fingerprint == dataset.fingerprint
    np.testing.assert_array_equal(reloaded.images, dataset.images)

    monkeypatch.setattr(figures, "_DATASETS", {})
    other, reason = figures.load_results_dataset({**info, "fingerprint": "0123456789abcdef"})
    assert other is None and "the results were computed on 0123456789abcdef" in reason
    gone, reason = figures.load_results_dataset({**info, "source": str(tiny_fer_folder / "moved")})
    assert gone is None and reason.startswith("images not available") and "moved" in reason


def test_lower_face_share_counts_only_positive_evidence_below_the_middle():
    from fer_bench.figures import lower_face_share

    maps = np.zeros((2, 48, 48))
    maps[0, 30:40, 10:20] = 3.0  # mouth region: 300
    maps[1, 5:15, 10:20] = 1.0  # eye region: 100
    maps[1, 40:45, :] = -5.0  # negative evidence is ignored
    assert lower_face_share(maps) == pytest.approx(0.75)
    assert np.isnan(lower_face_share(np.zeros((1, 48, 48))))


@pytest.mark.skipif(not HAS_TF, reason="needs the CNN's cells")
def test_training_curves_come_from_the_stored_history(finished_run):
    cell = read_cell(finished_run / "runs" / "7class" / "cnn" / "seed0")
    history = figures.training_history(cell)
    assert history == cell.params["history"] and len(history) == cell.params["selected"]["epochs_run"]
    assert all(r["seconds"] > 0 and 0 <= r["val_accuracy"] <= 1 for r in history)
    assert "cnn_training_curves.png" in (finished_run / "summary.md").read_text()
