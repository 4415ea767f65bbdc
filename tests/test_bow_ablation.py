"""benchmarks/bow_svm_ablation.py end to end on a tiny Kaggle-layout folder: one JSON line per variant, chosen on
PublicTest as fit chooses, and a rerun resumes instead of repeating."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO_ROOT, make_folder_dataset


def load_ablation():
    spec = importlib.util.spec_from_file_location("bow_svm_ablation", REPO_ROOT / "benchmarks" / "bow_svm_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ablation_writes_one_line_per_variant_and_resumes(tmp_path, capsys):
    ablation = load_ablation()
    folder = make_folder_dataset(tmp_path / "fer2013", {"Training": 10, "PublicTest": 4, "PrivateTest": 1})
    out = tmp_path / "ablation.jsonl"
    argv = ["--data", str(folder), "--out", str(out), "--train-images", "70", "--public-images", "21",
            "--vocabularies", "sift200,fisher16"]
    ablation.main(argv)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["run"] for record in records] == ["sift200", "fisher16-pyramid124"]
    for record in records:
        assert (record["n_train"], record["n_public"]) == (70, 21)  # all of Training, a subset of PublicTest
        assert record["C"] in [score["C"] for score in record["scores"]]
        assert record["public_accuracy"] == max(score["validation_accuracy"] for score in record["scores"])
    assert records[0]["params"]["vocabulary_size"] == 200 and records[0]["n_features"] == 21 * 200
    assert records[1]["params"]["encoding"] == "fisher" and records[1]["n_features"] == 21 * 16 * (1 + 2 * 64)
    ablation.main(argv)  # everything already in --out: nothing is recomputed or appended
    assert len(out.read_text().splitlines()) == 2
