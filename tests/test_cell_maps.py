"""maps.npz: every cell stores the maps its report's saliency figures are drawn from, so the report needs neither
the fitted models nor (for its tables) the images.

The grid is hog_svm and logreg on a small Kaggle-layout folder of random faces (so the report and `fer-bench maps`
re-load the data set from the path the manifests name, as on a real results folder); a stand-in Keras network
covers the gradient maps of a model offering saliency_network()."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import rerecord

from fer_bench.cell_maps import (
    ERROR_FACES,
    MAPS_FILE,
    SALIENCY_FACES_PER_CLASS,
    class_faces,
    compute_cell_maps,
    read_cell_maps,
)
from fer_bench.cli import main
from fer_bench.report import write_report
from fer_bench.run import run_grid
from fer_bench.storage import read_cell

HAS_TF = importlib.util.find_spec("tensorflow") is not None
TASKS = ["7class", "binary"]
MODELS = ["hog_svm", "logreg"]
#: images per class and usage: enough faces per class for 12 saliency faces and a few mistakes
SPEC = {"Training": 24, "PublicTest": 8, "PrivateTest": 14}
BASE_ARRAYS = {"split", "saliency_ids", "occlusion", "example_ids", "error_ids", "error_predicted",
               "error_occlusion_true", "error_occlusion_predicted"}
NETWORK_ARRAYS = {"gradient", "smoothgrad", "gradcam", "error_gradcam_true", "error_gradcam_predicted"}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    from conftest import make_folder_dataset

    root = tmp_path_factory.mktemp("cell_maps")
    data = make_folder_dataset(root / "fer2013", SPEC, seed=3)
    out = root / "results"
    run_grid(data=str(data), tasks=TASKS, models=MODELS, quick=True, out=out, report=False)
    write_report(out)
    return out


def _report_files(out: Path) -> dict[str, bytes]:
    """Every file the report writes: summary.md, summary.tex, index.html, the CSVs and the figures."""
    names = [*out.glob("*.md"), *out.glob("*.tex"), *out.glob("*.html"), *out.glob("*.csv"),
             *out.glob("figures/*.png")]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(names)}


def _copy(grid: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(grid, out)
    return out


def _cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("runs/*/*/seed*/manifest.json"))


def test_every_cell_stores_the_maps_of_faces_chosen_from_what_it_knows(grid):
    by_task = {}
    for path in _cells(grid):
        cell, maps = read_cell(path), read_cell_maps(path)
        names = {f.stem for f in np.load(path / MAPS_FILE).zip.infolist() for f in [Path(f.filename)]}
        assert BASE_ARRAYS <= names and not names & NETWORK_ARRAYS, (path, names)
        assert (path / MAPS_FILE).stat().st_size < 300_000
        ids, labels, proba = cell.split("PrivateTest")
        # the saliency faces: up to 12 per class from the labels alone, so every model of a task maps the same ones
        chosen = class_faces(labels, len(cell.class_names), SALIENCY_FACES_PER_CLASS)
        assert maps.saliency_ids.tolist() == ids[chosen].tolist() and len(chosen) > len(cell.class_names)
        assert set(maps.example_ids) <= set(maps.saliency_ids)
        assert maps.occlusion.shape == (len(chosen), 48, 48) and maps.occlusion.dtype == np.float32
        by_task.setdefault(cell.task, set()).add((tuple(maps.saliency_ids), tuple(maps.example_ids)))
        # its own most confident mistakes, from the probabilities it stored, with the classes it predicted
        row = {image_id: k for k, image_id in enumerate(ids)}
        errors = [row[i] for i in maps.error_ids]
        assert 0 < len(errors) <= ERROR_FACES
        assert np.all(proba[errors].argmax(axis=1) != labels[errors])
        assert maps.error_predicted.tolist() == proba[errors].argmax(axis=1).tolist()
        assert maps.error_occlusion_true.shape == maps.error_occlusion_predicted.shape == (len(errors), 48, 48)
        # what else the model offers (learned_pictures), never the images
        if cell.model == "logreg":
            assert maps.templates.shape == (len(cell.class_names), 48, 48) and maps.hog_settings is None
        else:
            assert maps.templates is None and maps.hog_settings["cell_sizes"]
    assert all(len(variants) == 1 for variants in by_task.values()), by_task


def test_the_report_without_fitted_models_is_byte_identical(grid, tmp_path):
    out = _copy(grid, tmp_path)
    with_models = _report_files(out)
    assert any(name.startswith("figures/saliency_errors_") for name in with_models)
    write_report(out)
    assert _report_files(out) == with_models, "two reports in a row differ"
    for model_dir in out.glob("runs/*/*/seed*/model"):
        shutil.rmtree(model_dir)
    shutil.rmtree(out / "figures")
    write_report(out)
    without = _report_files(out)
    assert sorted(without) == sorted(with_models)
    assert [name for name in with_models if without[name] != with_models[name]] == []


def test_without_the_data_set_the_tables_are_written_and_one_line_names_the_image_figures(grid, tmp_path):
    out = _copy(grid, tmp_path)
    before = _report_files(out)
    shutil.rmtree(out / "figures")
    shutil.move(grid.parent / "fer2013", tmp_path / "moved")  # the data set the manifests name is gone
    try:
        write_report(out)
    finally:
        shutil.move(tmp_path / "moved", grid.parent / "fer2013")
    after = _report_files(out)
    for name in before:
        if name.endswith(".csv"):
            assert after[name] == before[name], name
    summary = (out / "summary.md").read_text()
    lines = [line for line in summary.splitlines() if "need the data set's images" in line]
    assert len(lines) == 1 and "images not available" in lines[0]
    image_figures = [n for n in before if n.startswith("figures/") and n.split("/")[1].startswith(
        ("saliency_", "class_saliency_", "faces_", "hog_svm_hog"))]
    assert image_figures
    for name in image_figures:
        assert Path(name).stem in lines[0] and name not in after, name
    assert "figures/logreg_templates.png" in after  # drawn from the maps alone


def test_the_maps_command_fills_an_old_cell_and_names_a_cell_without_model(grid, tmp_path, capsys):
    out = _copy(grid, tmp_path)
    old = out / "runs" / "7class" / "logreg" / "seed0"  # computed before cells stored maps, model still here
    gone = out / "runs" / "binary" / "hog_svm" / "seed0"  # no maps and no local model
    original = (old / MAPS_FILE).read_bytes()
    for cell in (old, gone):
        (cell / MAPS_FILE).unlink()
        rerecord(cell)  # as stored before cells had maps.npz
    shutil.rmtree(gone / "model")
    capsys.readouterr()
    assert main(["maps", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert (old / MAPS_FILE).read_bytes() == original  # the same bytes as the cell's own
    assert not (gone / MAPS_FILE).exists()
    assert "maps: 1 maps.npz written" in captured.out
    [line] = [line for line in captured.err.splitlines() if "no local model" in line]
    assert "binary/hog_svm/seed0" in line and "7class" not in line
    assert not list(old.glob(".*.tmp"))


class _PlainModel:
    """A plugin model written without fer-bench's base class: predict_proba and nothing else."""

    def predict_proba(self, images):
        brightness = np.asarray(images, dtype=float)[:, 20:30, 10:40].mean(axis=(1, 2)) / 255
        return np.stack([1 - brightness, brightness], axis=1)


def _faces(n: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % 2
    proba = _PlainModel().predict_proba(images)
    return images, labels, np.array([f"PrivateTest_{k}" for k in range(n)]), proba


def test_a_model_without_capabilities_has_occlusion_maps_only():
    images, labels, ids, proba = _faces()
    maps = compute_cell_maps(_PlainModel(), images, labels, ids, proba)
    assert maps.occlusion.shape == (24, 48, 48) and not maps.has_network_maps
    assert maps.templates is None and maps.hog_settings is None
    # the model only looks at rows 20-29: occlusion elsewhere changes nothing
    assert np.abs(maps.occlusion[:, :10]).max() == 0 and np.abs(maps.occlusion[:, 20:30]).max() > 0


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow not installed")
def test_a_model_offering_a_network_stores_its_gradient_maps():
    import keras
    from keras import layers

    inputs = keras.Input((48, 48, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(layers.Rescaling(1 / 255)(inputs))
    logits = layers.Dense(2, name="logits")(layers.GlobalAveragePooling2D()(x))
    network = keras.Model(inputs, layers.Softmax()(logits))

    class NetworkModel:
        def predict_proba(self, images):
            return network.predict(np.asarray(images, dtype=np.float32)[..., None], verbose=0)

        def saliency_network(self):
            return network, "conv"

    images, labels, ids, _ = _faces()
    proba = NetworkModel().predict_proba(images)
    maps = compute_cell_maps(NetworkModel(), images, labels, ids, proba)
    n_examples, n_errors = len(maps.example_ids), len(maps.error_ids)
    assert n_examples == 12  # binary: 3 example faces per class, twice as many candidates
    for name in ("gradient", "smoothgrad", "gradcam"):
        assert getattr(maps, name).shape == (n_examples, 48, 48) and getattr(maps, name).dtype == np.uint8
    for name in ("error_gradcam_true", "error_gradcam_predicted"):
        assert getattr(maps, name).shape == (n_errors, 48, 48)


def test_git_keeps_the_cells_maps_and_ignores_other_npz():
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo).returncode == 0

    assert not ignored("results/fer2013/runs/7class/cnn/seed0/maps.npz")
    assert ignored("results/fer2013/runs/7class/cnn/seed0/model/arrays.npz")
    assert ignored("data/cache.npz") and ignored("results/fer2013/cache.npz")
    assert ignored("results/fer2013-quick/runs/7class/cnn/seed0/maps.npz")
