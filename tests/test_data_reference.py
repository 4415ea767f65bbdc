"""The data-set reference (fer_bench.data.reference) and the typed manifest (fer_bench.manifest): one way to
name a data set and load it again, one way to read and write a cell's manifest, old manifests included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_bench.data import load_path
from fer_bench.data.dataset import SyntheticRecipe
from fer_bench.data.reference import DatasetReference, load_reference, loaded_or_reloaded
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError
from fer_bench.manifest import FIRST_VERSION, Manifest
from fer_bench.storage import list_cells, manifest_json, read_manifest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RESULTS = [ROOT / "results" / "fer2013", ROOT / "results" / "synthetic-reference"]


def test_synthetic_data_is_rebuilt_from_its_recipe_not_the_default_generator():
    dataset = make_synthetic(n_train=120, n_public=25, n_private=25, seed=5, artifacts=False)
    reference = DatasetReference.from_json(json.loads(json.dumps(DatasetReference.of(dataset).to_json())))
    assert reference.synthetic == SyntheticRecipe(seed=5, n_train=120, n_public=25, n_private=25, artifacts=False)
    rebuilt = load_reference(reference)
    assert rebuilt.fingerprint == dataset.fingerprint
    np.testing.assert_array_equal(rebuilt.images, dataset.images)


def test_the_older_reference_shape_means_the_default_synthetic_data():
    reference = DatasetReference.from_json({"name": "synthetic", "fingerprint": "0ddfe46e0463d3e1",
                                            "source": "built-in synthetic generator (seed=0)"})
    assert reference.synthetic == SyntheticRecipe() and not reference.rgb_to_gray
    assert load_reference(reference).fingerprint == make_synthetic().fingerprint


def test_fer2013_is_reloaded_from_its_source_and_checked(tiny_fer_folder):
    dataset = load_path(tiny_fer_folder)
    reference = DatasetReference.of(dataset)
    np.testing.assert_array_equal(load_reference(reference).images, dataset.images)
    assert loaded_or_reloaded(dataset, reference) is dataset  # no second load of the data set at hand

    other = DatasetReference("fer2013", "0123456789abcdef", dataset.source)
    with pytest.raises(FerBenchError, match="the results were computed on 0123456789abcdef") as error:
        load_reference(other)
    assert "\n" not in str(error.value)
    with pytest.raises(FerBenchError, match="moved.* is not found"):
        load_reference(DatasetReference("fer2013", dataset.fingerprint, str(tiny_fer_folder / "moved")))


def test_a_worker_loads_its_own_fer2013_dir_and_names_itself_on_a_mismatch(make_fer_folder, tmp_path,
                                                                           monkeypatch):
    dataset = load_path(make_fer_folder(tmp_path / "client"))
    reference = DatasetReference.of(dataset)
    monkeypatch.setenv("FER2013_DIR", str(make_fer_folder(tmp_path / "worker-copy")))
    assert load_reference(reference, worker="w1").source != dataset.source  # the worker's copy, same data
    monkeypatch.setenv("FER2013_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FerBenchError, match="^worker w1: the data set .*nowhere is not found$"):
        load_reference(reference, worker="w1")


def test_an_old_manifest_reads_as_version_1_and_writes_back_the_same_keys():
    old = {"task": "binary", "model": "logreg", "seed": 0, "quick": True, "class_names": ["negative", "positive"],
           "balancing": "undersample", "n_train": 10, "n_train_before_balancing": 12, "train_class_counts": [7, 5],
           "dataset": {"name": "synthetic", "fingerprint": "0ddfe46e0463d3e1", "source": "built-in"},
           "command": "", "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
           "code": {"commit": "unknown", "dirty": False}, "packages": {}, "machine": {"cpu": "x"},
           "threads": {}, "from_a_newer_version": 1}
    manifest = Manifest.from_json(old)
    assert manifest.version == FIRST_VERSION and manifest.dataset.name == "synthetic" and manifest.seed == 0
    written = manifest.to_json()
    assert {k: v for k, v in written.items() if k != "dataset"} == {**{k: v for k, v in old.items()
                                                                       if k != "dataset"}, "version": 1}
    assert {k: written["dataset"][k] for k in old["dataset"]} == old["dataset"]


@pytest.mark.parametrize("results", COMMITTED_RESULTS, ids=lambda path: path.name)
def test_every_committed_manifest_reads_and_writes_back_the_same_fields(results):
    """Old cells stay readable as they are: reading one and writing it again gives the same fields (apart from the
    version the reader adds to the oldest and the reference's load options, which old manifests leave out)."""
    cells = list_cells(results)
    assert cells
    for cell in cells:
        path = cell / "manifest.json"
        original = json.loads(path.read_text(encoding="utf-8"))
        rewritten = json.loads(manifest_json(read_manifest(path)))
        assert rewritten.pop("version") == original.pop("version", FIRST_VERSION)
        rewritten["dataset"] = {k: rewritten["dataset"][k] for k in original["dataset"]}
        assert rewritten == original, path
