"""The corruption suite (fer_bench.corruptions): determinism per image id, dtype/shape/range, severities that grow,
clear errors, the eye and mouth bands, and its figure. Synthetic faces only; no model is fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench.corruptions import (
    CORRUPTIONS,
    EYE_ROW,
    MOUTH_ROW,
    SEVERITIES,
    corrupt,
    every_corruption,
    get_corruption,
    severity_table,
)
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError
from fer_bench.figures import corruptions as corruption_figure

NAMES = tuple(CORRUPTIONS)
RANDOM = tuple(name for name, c in CORRUPTIONS.items() if c.random)
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def faces():
    return make_synthetic(n_train=7, n_public=7, n_private=12, seed=0, artifacts=False).split("PrivateTest")


def test_the_registry_holds_the_suite():
    assert set(NAMES) == {"gaussian_noise", "salt_and_pepper", "gaussian_blur", "motion_blur", "jpeg", "pixelate",
                          "brightness", "contrast", "gamma", "eye_band", "mouth_band", "rotation"}
    assert set(RANDOM) == {"gaussian_noise", "salt_and_pepper", "motion_blur", "rotation"}
    for c in CORRUPTIONS.values():
        assert len(c.values) == len(SEVERITIES) == 5
    assert max(get_corruption("rotation").values) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_an_image_gives_the_same_result_in_any_batch(faces, name):
    whole = corrupt(faces.images, name, 3, faces.ids)
    reverse = corrupt(faces.images[::-1], name, 3, faces.ids[::-1])
    np.testing.assert_array_equal(reverse[::-1], whole)
    some = [5, 0, 9]
    np.testing.assert_array_equal(corrupt(faces.images[some], name, 3, faces.ids[some]), whole[some])
    for i in (0, 7):
        np.testing.assert_array_equal(corrupt(faces.images[i:i + 1], name, 3, [faces.ids[i]])[0], whole[i])


@pytest.mark.parametrize("name", NAMES)
def test_only_the_random_corruptions_depend_on_the_image_id(faces, name):
    same_face = np.repeat(faces.images[:1], 8, axis=0)
    results = corrupt(same_face, name, 4, [f"face_{k}" for k in range(8)])
    distinct = {r.tobytes() for r in results}
    if name in RANDOM:
        # rotation draws only its direction: two outcomes; the others draw per pixel or an angle
        assert len(distinct) == (2 if name == "rotation" else 8)
    else:
        assert len(distinct) == 1


@pytest.mark.parametrize("name", NAMES)
def test_dtype_shape_and_range_are_kept(faces, name):
    images = faces.images.copy()
    out = corrupt(images, name, 2, faces.ids)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(images, faces.images)  # the input is left alone

    as_float = faces.images / 255.0
    out_float = corrupt(as_float, name, 2, faces.ids)
    assert out_float.dtype == np.float64 and out_float.shape == images.shape
    # the same corruption whatever the pixel format: uint8 results are the float ones rounded
    assert np.abs(out_float * 255.0 - out).max() <= 0.5 + 1e-6
    for dtype in (np.float32, np.float64):
        # black, white and a face: every result stays in [0, 1]
        extremes = np.stack([np.zeros((48, 48)), np.ones((48, 48)), as_float[0]]).astype(dtype)
        out_extremes = corrupt(extremes, name, 5, ["black", "white", "face"])
        assert out_extremes.dtype == dtype and out_extremes.min() >= 0.0 and out_extremes.max() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_severity_moves_faces_further_from_the_clean_image(faces, name):
    clean = faces.images.astype(np.float64)
    distances = [np.abs(corrupt(faces.images, name, severity, faces.ids) - clean).mean() for severity in SEVERITIES]
    assert distances[0] > 0.5, f"{name} at severity 1 hardly changes the faces: {distances[0]:.2f} grey levels"
    assert all(np.diff(distances) > 0), f"{name}: mean distance per severity {np.round(distances, 2)}"


@pytest.mark.parametrize(("name", "centre"), [("eye_band", EYE_ROW), ("mouth_band", MOUTH_ROW)])
def test_bands_cover_the_rows_they_claim(faces, name, centre):
    band = get_corruption(name)
    for severity in SEVERITIES:
        first, last = band.value(severity)
        assert first <= centre <= last and last - first + 1 == 2 * severity + 1
        out = corrupt(faces.images, name, severity, faces.ids)
        covered = np.zeros(48, dtype=bool)
        covered[first:last + 1] = True
        assert (out[:, covered] == 0).all()
        np.testing.assert_array_equal(out[:, ~covered], faces.images[:, ~covered])
        assert band.label(severity) == f"rows {first}–{last}"


@pytest.mark.parametrize("name", ["gaussian noise", "", None, "Eye_Band"])
def test_an_unknown_corruption_names_the_valid_ones(faces, name):
    with pytest.raises(FerBenchError, match="unknown corruption") as error:
        corrupt(faces.images, name, 1, faces.ids)
    assert all(valid in str(error.value) for valid in NAMES)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3", None])
def test_a_severity_outside_1_to_5_is_refused(faces, severity):
    with pytest.raises(FerBenchError, match="severity must be an integer from 1 to 5"):
        corrupt(faces.images, "jpeg", severity, faces.ids)


def test_bad_images_or_ids_are_refused(faces):
    with pytest.raises(FerBenchError, match=r"shape \(N, 48, 48\)"):
        corrupt(faces.images[0], "jpeg", 1, faces.ids[:1])
    with pytest.raises(FerBenchError, match="uint8"):
        corrupt(faces.images.astype(np.int64), "jpeg", 1, faces.ids)
    with pytest.raises(FerBenchError, match=r"\[0, 1\]"):
        corrupt(faces.images.astype(np.float32), "jpeg", 1, faces.ids)
    with pytest.raises(FerBenchError, match="3 image ids for 12 images"):
        corrupt(faces.images, "jpeg", 1, faces.ids[:3])


def test_every_corruption_stacks_the_single_results(faces):
    grid = every_corruption(faces.images[2], faces.ids[2])
    assert grid.shape == (len(NAMES), 5, 48, 48) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[NAMES.index("motion_blur"), 3],
                                  corrupt(faces.images, "motion_blur", 4, faces.ids)[2])


def test_the_docs_show_every_parameter():
    assert severity_table() in (DOCS / "robustness.md").read_text(encoding="utf-8")


def test_the_figure_regenerates_at_the_docs_size(tmp_path, capsys):
    assert corruption_figure.main([str(tmp_path / "no such folder" / "grid.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "no such folder").exists()

    assert corruption_figure.main([str(tmp_path / "grid.png")]) == 0
    with Image.open(tmp_path / "grid.png") as drawn, Image.open(DOCS / "corruptions.png") as committed:
        assert drawn.size == committed.size
    # one row of tiles per corruption, the clean face and 5 severities each
    face, face_id = corruption_figure.example_face()
    figure = corruption_figure.plot_corruption_grid(face, every_corruption(face, face_id))
    assert len(figure.images) == len(NAMES) * 6
