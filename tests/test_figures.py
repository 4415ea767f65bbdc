"""The report's figures: every PNG is written, valid, small, linked from summary.md and reproducible; figures
that need the cells' maps (maps.npz) or the images are skipped with a note when those are missing."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import rerecord
from PIL import Image
from sklearn import metrics as skm

from fer_bench.errors import FerBenchError
from fer_bench.figures import confusion, curves, gains, mosaics, png, training
from fer_bench.figures import data as figure_data
from fer_bench.metrics import paired_recall_gain
from fer_bench.report import write_report
from fer_bench.settings import Settings
from fer_bench.storage import read_cell

TASKS = ["7class", "5class", "binary"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def prediction_figures(models) -> list[str]:
    """Figures drawn from the stored files alone (predictions, params.json) of a grid of `models`."""
    has_cnn = "cnn" in models
    names = ["cnn_training_curves"] if has_cnn else []
    for task in TASKS:
        names += [f"roc_{task}", f"confusion_{task}", f"recall_{task}", f"confused_pairs_{task}",
                  f"reliability_{task}"]
        if task != "binary":
            names.append(f"roc_per_class_{task}")
        if has_cnn:
            names += [f"confusion_diff_{task}", f"recall_gain_{task}"]
    return names


def model_figures(models) -> list[str]:
    names = ["logreg_templates", "hog_svm_hog"]
    for task in TASKS:
        names += [f"saliency_{task}", f"class_saliency_{task}", f"saliency_errors_{task}"]
        if "cnn" in models:
            names += [f"faces_{task}_{b}" for b in models if b != "cnn"]
    return names


@pytest.fixture
def finished_run(quick_grid) -> Path:
    """The shared quick run of every model on small synthetic data, report included (conftest: the baselines,
    and, marked slow, the CNN too; run_grid handed the report the data set, since these sizes are not the
    synthetic defaults and could not be re-loaded). Read only: the tests that change it work on a copy."""
    return quick_grid.out


@pytest.fixture
def models(quick_grid) -> tuple[str, ...]:
    return quick_grid.models


def _figure_bytes(out: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((out / "figures").glob("*.png"))}


def _linked(summary: str) -> set[str]:
    return set(re.findall(r"\]\(figures/([\w.-]+)\.png\)", summary))


def test_every_figure_is_a_small_valid_png_linked_from_the_summary(finished_run, models):
    summary = (finished_run / "summary.md").read_text()
    written = _figure_bytes(finished_run)
    for name in prediction_figures(models) + model_figures(models):
        assert name in written, f"{name}.png was not written"
        data = written[name]
        assert data.startswith(PNG_SIGNATURE), name
        assert 5_000 < len(data) <= 300_000, (name, len(data))
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert 250 <= image.width <= 1600 and 150 <= image.height <= 1600, (name, image.size)
        assert f"](figures/{name}.png)" in summary, f"{name}.png is not embedded in summary.md"
    # every embedded figure exists (no dangling links), and each is one list item: the image, then its caption
    assert _linked(summary) <= set(written)
    for name in _linked(summary):
        before, after = summary.split(f"](figures/{name}.png)", 1)
        assert before.splitlines()[-1].startswith("- !["), name
        caption = after.splitlines()[0].strip()
        assert caption.startswith("*") and caption.endswith("*") and len(caption) > 20, name


def test_sections_come_after_the_tables_in_order(finished_run, models):
    summary = (finished_run / "summary.md").read_text()
    titles = re.findall(r"^## (.+)$", summary, flags=re.M)
    figure_titles = [t for t in titles if t.startswith("Figures:")]
    assert [t.split(" (")[0] for t in figure_titles] == [
        "Figures: ROC curves", "Figures: confusion matrices",
        # the reference model is called the CNN when every task compares against it (report.sections)
        f"Figures: where the {'CNN' if 'cnn' in models else 'reference model'} gains",
        "Figures: calibration", "Figures: what the models look at"]
    assert titles.index(figure_titles[0]) > titles.index(next(t for t in titles if t.startswith("Top confusions")))


def test_regenerated_figures_are_byte_identical(finished_run, small_synthetic, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    before = _figure_bytes(out)
    shutil.rmtree(out / "figures")
    write_report(out, dataset=small_synthetic)
    after = _figure_bytes(out)
    assert set(after) == set(before)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"figures differ between two reports: {changed}"


def test_map_figures_are_skipped_with_a_note_and_earlier_pngs_left_alone(finished_run, models, tmp_path,
                                                                        small_synthetic):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    earlier = _figure_bytes(out)
    for maps_file in out.glob("runs/*/*/seed*/maps.npz"):  # cells computed before cells stored their maps
        maps_file.unlink()
        rerecord(maps_file.parent)
    (out / "figures" / "saliency_7class.png").unlink()  # this one must not come back without the maps
    for name in prediction_figures(models):
        (out / "figures" / f"{name}.png").unlink()
    write_report(out, dataset=small_synthetic)
    summary = (out / "summary.md").read_text()
    written = _figure_bytes(out)
    assert set(prediction_figures(models)) <= set(written)
    assert "saliency_7class" not in written and "](figures/saliency_7class.png)" not in summary
    for task in TASKS:
        assert f"Skipped: {task} saliency: {figure_data.MAPS_MISSING}" in summary
    assert "Skipped: logistic-regression templates: no maps.npz in the cells" in summary
    assert "Skipped: HOG visualisation: no maps.npz in the cells" in summary
    # the PNGs an earlier report made from the maps are untouched and still shown, marked as earlier
    for name in set(model_figures(models)) - {"saliency_7class"}:
        assert written[name] == earlier[name], name
        assert f"![{name} (earlier report)](figures/{name}.png)" in summary or name.startswith("faces_"), name


def test_image_figures_are_skipped_when_the_data_set_cannot_be_reloaded(finished_run, models, tmp_path):
    out = tmp_path / "copy"  # a report of its own, without the run's data set: only re-loading is left
    shutil.copytree(finished_run, out)
    shutil.rmtree(out / "figures")
    for manifest_path in out.glob("runs/*/*/seed*/manifest.json"):  # the older manifests' shorter reference
        manifest = json.loads(manifest_path.read_text())
        manifest["dataset"] = {key: manifest["dataset"][key] for key in ("name", "fingerprint", "source")}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_report(out)
    summary = (out / "summary.md").read_text()
    written = _figure_bytes(out)
    assert set(prediction_figures(models)) <= set(written)
    assert "logreg_templates" in written  # needs the maps, not the images
    assert not any(name.startswith(("saliency_", "class_saliency_", "faces_", "hog_")) for name in written)
    # one line names every figure left out, with the reason: the manifest's synthetic data were made with
    # non-default sizes its older reference does not record, and the default ones have another fingerprint
    [line] = [line for line in summary.splitlines() if "need the data set's images" in line]
    assert "images not available: the data set built-in synthetic generator (seed=0) has fingerprint" in line
    for name in set(model_figures(models)) - {"logreg_templates"}:
        assert name in line, name


def test_face_selection_takes_classes_in_turn_most_confident_first():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    score = np.array([0.5, 0.9, 0.7, 0.2, 0.8, 0.6, 0.6, 0.1])
    candidates = np.array([0, 1, 2, 3, 4, 6, 7])  # image 5 is not a candidate
    assert mosaics.pick(candidates, labels, score, 5).tolist() == [1, 4, 6, 2, 3]
    assert mosaics.pick(candidates, labels, score, 100).tolist() == [1, 4, 6, 2, 3, 7, 0]
    assert mosaics.pick(np.array([], dtype=int), labels, score, 4).tolist() == []


def _csv_rows(out: Path, name: str) -> list[dict]:
    with open(out / name, newline="") as fh:
        return list(csv.DictReader(fh))


def _figure_inputs(out: Path) -> list:
    """What the report's figures are drawn from: the stored cells grouped by task (PrivateTest, first seed)."""
    from fer_bench.report.inputs import load_cells

    return figure_data.task_results(load_cells(out), Settings())


def test_roc_figure_data_has_the_aucs_of_the_tables(finished_run):
    metrics = {(r["task"], r["model"]): float(r["roc_auc_macro"]) for r in _csv_rows(finished_run, "metrics.csv")
               if r["split"] == "PrivateTest" and r["subset"] == "all"}
    per_class = {(r["task"], r["model"], r["class"]): float(r["roc_auc"])
                 for r in _csv_rows(finished_run, "per_class.csv") if r["split"] == "PrivateTest"}
    for tr in _figure_inputs(finished_run):
        for model, curve in curves.roc_curves(tr).items():
            assert curve.value == pytest.approx(metrics[(tr.task, model)], abs=5e-7)
            assert curve.x[0] == 0 and curve.x[-1] == 1 and np.all(np.diff(curve.x) >= 0)
            assert curve.y[-1] == pytest.approx(1.0)
            # the drawn curve's own area is the AUC of the legend for a binary task (macro curves average TPRs)
            if tr.n_classes == 2:
                assert skm.auc(curve.x, curve.y) == pytest.approx(curve.value, abs=1e-6)
        for c, by_model in curves.per_class_roc_curves(tr).items():
            for model, curve in by_model.items():
                assert curve.value == pytest.approx(per_class[(tr.task, model, tr.class_names[c])], abs=5e-7)
                assert skm.auc(curve.x, curve.y) == pytest.approx(curve.value, abs=1e-6)


def test_confusion_figure_data_matches_confusions_csv_and_accuracy(finished_run):
    metrics = {(r["task"], r["model"]): float(r["accuracy"]) for r in _csv_rows(finished_run, "metrics.csv")
               if r["split"] == "PrivateTest" and r["subset"] == "all"}
    support = {(r["task"], r["model"], r["class"]): int(r["support"])
               for r in _csv_rows(finished_run, "per_class.csv") if r["split"] == "PrivateTest"}
    top = [r for r in _csv_rows(finished_run, "confusions.csv") if r["split"] == "PrivateTest"]
    for tr in _figure_inputs(finished_run):
        matrices = confusion.confusion_matrices(tr)
        pairs = gains.confused_pairs(tr, 5)
        for model, cm in matrices.items():
            assert np.trace(cm) / cm.sum() == pytest.approx(metrics[(tr.task, model)], abs=5e-7)
            assert cm.sum(axis=1).tolist() == [support[(tr.task, model, c)] for c in tr.class_names]
            expected = [(r["true"], r["predicted"], int(r["count"])) for r in top
                        if r["task"] == tr.task and r["model"] == model]
            assert [(tr.class_names[i], tr.class_names[j], n) for i, j, n, _ in pairs[model]] == expected
            for i, j, n, _ in pairs[model]:
                assert cm[i, j] == n  # the pairs figure and the matrix show the same counts
        if tr.reference:
            for model, diff in confusion.confusion_differences(tr).items():
                ref, other = matrices[tr.reference], matrices[model]
                expected = 100 * (ref / ref.sum(axis=1, keepdims=True) - other / other.sum(axis=1, keepdims=True))
                np.testing.assert_allclose(diff, expected)


def test_recall_and_calibration_figure_data_match_the_tables(finished_run):
    recall = {(r["task"], r["model"], r["class"]): float(r["recall"])
              for r in _csv_rows(finished_run, "per_class.csv") if r["split"] == "PrivateTest"}
    ece = {(r["task"], r["model"]): float(r["ece"]) for r in _csv_rows(finished_run, "metrics.csv")
           if r["split"] == "PrivateTest" and r["subset"] == "all"}
    for tr in _figure_inputs(finished_run):
        bars = gains.per_class_recalls(tr, Settings())
        for model, b in bars.items():
            assert b.values.tolist() == pytest.approx([recall[(tr.task, model, c)] for c in tr.class_names], abs=5e-7)
            assert np.all(b.interval[:, 0] <= b.values + 1e-12) and np.all(b.values <= b.interval[:, 1] + 1e-12)
        if tr.reference:
            for model, gain in gains.recall_gains(tr, Settings()).items():
                np.testing.assert_allclose(gain.values, bars[tr.reference].values - bars[model].values)
        for model, curve in curves.reliability_curves(tr, Settings().ece_bins).items():
            assert curve.ece == pytest.approx(ece[(tr.task, model)], abs=5e-7)
            assert curve.counts.sum() == len(tr.labels)


def test_paired_recall_gain_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 400)
    pred_a = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 3, 400))
    pred_b = np.where(rng.random(400) < 0.4, labels, rng.integers(0, 3, 400))
    gain, interval = paired_recall_gain(labels, pred_a, pred_b, 4, n_resamples=300, seed=1)
    for c in range(3):
        direct = np.mean(pred_a[labels == c] == c) - np.mean(pred_b[labels == c] == c)
        assert gain[c] == pytest.approx(direct)
        assert interval[c, 0] < gain[c] < interval[c, 1]
        assert interval[c, 1] - interval[c, 0] < 0.4
    assert np.isnan(gain[3]) and np.isnan(interval[3]).all()  # class 3 never occurs
    same, same_interval = paired_recall_gain(labels, pred_a, pred_a, 3, n_resamples=50)
    assert np.all(same == 0) and np.all(same_interval == 0)
    again = paired_recall_gain(labels, pred_a, pred_b, 4, n_resamples=300, seed=1)[1]
    np.testing.assert_array_equal(again, interval)


def test_mosaic_places_tiles_pixel_for_pixel():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    tile = mosaics.to_tile(mosaics.gray_tile(face))
    assert tile.shape == (mosaics.TILE, mosaics.TILE, 3)
    fig = mosaics.mosaic_figure("test", [mosaics.MosaicBlock([[tile, None], [None, tile]], [["a", "b"], ["", ""]],
                                                             ["row 1", "row 2"])], label_width=60)
    image = np.asarray(Image.open(io.BytesIO(png.figure_png(fig))).convert("L"))
    # find the tile's top-left corner by its first row of pixels, then compare the whole block
    scale = mosaics.TILE_SCALE
    matches = [(r, c) for r in range(image.shape[0] - mosaics.TILE) for c in range(image.shape[1] - mosaics.TILE)
               if np.array_equal(image[r, c:c + mosaics.TILE], tile[0, :, 0])]
    assert len(matches) >= 2
    r, c = matches[0]
    np.testing.assert_array_equal(image[r:r + mosaics.TILE:scale, c:c + mosaics.TILE:scale], face)


def test_task_results_refuse_cells_of_different_images(finished_run, tmp_path):
    cells = [read_cell(p) for p in sorted((finished_run / "runs" / "binary").glob("*/seed0"))]
    cells[1].image_ids = cells[1].image_ids.copy()
    cells[1].image_ids[np.flatnonzero(cells[1].splits == "PrivateTest")[0]] = "someone_else"
    with pytest.raises(FerBenchError, match="different PrivateTest images"):
        figure_data.task_results(cells, Settings())


def test_lower_face_share_counts_only_positive_evidence_below_the_middle():
    from fer_bench.figures.saliency import lower_face_share

    maps = np.zeros((2, 48, 48))
    maps[0, 30:40, 10:20] = 3.0  # mouth region: 300
    maps[1, 5:15, 10:20] = 1.0  # eye region: 100
    maps[1, 40:45, :] = -5.0  # negative evidence is ignored
    assert lower_face_share(maps) == pytest.approx(0.75)
    assert np.isnan(lower_face_share(np.zeros((1, 48, 48))))


@pytest.mark.slow
def test_training_curves_come_from_the_stored_history(cnn_grid):
    """On the CNN's cells (cnn_grid; skips without TensorFlow)."""
    finished_run = cnn_grid.out
    cell = read_cell(finished_run / "runs" / "7class" / "cnn" / "seed0")
    history = training.training_history(cell)
    assert history == cell.params["history"] and len(history) == cell.params["selected"]["epochs_run"]
    assert all(r["seconds"] > 0 and 0 <= r["val_accuracy"] <= 1 for r in history)
    assert "cnn_training_curves.png" in (finished_run / "summary.md").read_text()


def test_saliency_names_the_network_model_whose_maps_it_draws_never_a_cnn_without_maps(baseline_grid):
    """A folder whose cnn cell has no maps.npz while another network model has: the gradient rows and the
    captions name that model (and its seed), the cnn is absent, and nothing says "CNN"."""
    from dataclasses import replace

    from matplotlib.text import Text

    from fer_bench.figures import saliency
    from fer_bench.figures.data import FigureContext

    settings = Settings()
    tr = next(t for t in figure_data.task_results(
        [read_cell(p) for p in sorted((baseline_grid.out / "runs").glob("binary/*/seed0"))], settings)
        if t.task == "binary")
    ctx = FigureContext([tr], settings, baseline_grid.out, dataset=baseline_grid.dataset)
    maps, _ = ctx.task_maps(tr)
    # the hog_svm cell plays the cnn (no maps), the logreg cell another network model with gradient maps
    renamed = replace(tr, cells={"cnn": tr.cells["hog_svm"], "other_net": tr.cells["logreg"]},
                      proba={"cnn": tr.proba["hog_svm"], "other_net": tr.proba["logreg"]}, reference_model="cnn")
    plain = maps["logreg"]
    examples, errors = (len(plain.example_ids), 48, 48), (len(plain.error_ids), 48, 48)
    network = replace(plain, gradient=np.full(examples, 200, np.uint8), smoothgrad=np.full(examples, 100, np.uint8),
                      gradcam=np.full(examples, 50, np.uint8), error_gradcam_true=np.zeros(errors, np.uint8),
                      error_gradcam_predicted=np.zeros(errors, np.uint8))
    usable, missing = saliency.usable_maps(renamed, {"other_net": network}, {"cnn": figure_data.MAPS_MISSING})
    assert list(usable) == ["other_net"] and "cnn" in missing
    s = saliency.task_saliency(renamed, usable)
    assert s.gradients_model == "other_net" and list(s.occlusion) == ["other_net"]
    captions = saliency.saliency_captions(renamed, s, settings.headline_split)
    seed = tr.cells["logreg"].seed
    assert f"other_net's (seed {seed}) vanilla gradient" in captions[0]
    assert all("other_net" in caption for caption in captions)
    assert not any("cnn" in caption.lower() for caption in captions)
    faces = np.zeros((len(s.examples), 48, 48), np.uint8)
    fig = saliency.saliency_figure(renamed, faces, s.maps_of(s.examples), s.gradients, s.gradients_model)
    labels = [t.get_text() for t in fig.findobj(Text)]
    assert {"other_net: gradient", "other_net: SmoothGrad", "other_net: Grad-CAM"} <= set(labels)
    assert not any("cnn" in label.lower() for label in labels)
