"""Same seed + same data -> byte-identical predictions; the manifest holds what is needed to reproduce a cell."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.run import run_grid
from fer_bench.tasks import get_task

TASKS = ["7class", "5class", "binary"]
BASELINES = ["logreg", "hog_svm"]


def predictions(out: Path) -> dict[str, bytes]:
    return {str(p.parent.relative_to(out)): p.read_bytes()
            for p in sorted((out / "runs").glob("*/*/seed*/predictions.csv"))}


def run_again(grid, tmp_path: Path, models: list[str], tasks: list[str]) -> tuple[dict, dict]:
    """The predictions of (tasks, models) in a shared grid (conftest), computed earlier in this test run, and
    those of a second run of the same cells on the same data into a fresh folder."""
    again = tmp_path / "second"
    run_grid(dataset=grid.dataset, tasks=tasks, models=models, seeds=[0], quick=True, out=again, report=False)
    first = {cell: data for cell, data in predictions(grid.out).items()
             if cell.split("/")[1] in tasks and cell.split("/")[2] in models}
    return first, predictions(again)


def test_baselines_give_byte_identical_predictions(tmp_path, baseline_grid):
    first, second = run_again(baseline_grid, tmp_path, BASELINES, TASKS)
    assert len(first) == len(TASKS) * len(BASELINES)
    assert first == second


@pytest.mark.slow
def test_cnn_on_cpu_gives_byte_identical_predictions(tmp_path, cnn_grid):
    if importlib.util.find_spec("fer_bench.models.cnn") is None:
        pytest.skip("fer_bench.models.cnn is not there yet")
    first, second = run_again(cnn_grid, tmp_path, ["cnn"], ["binary"])
    assert list(first) == list(second) == ["runs/binary/cnn/seed0"]
    assert first == second


def test_manifest_holds_what_reproduces_the_cell(tmp_path, small_synthetic, monkeypatch, capsys):
    monkeypatch.setattr("fer_bench.data.load_dataset", lambda *args, **kwargs: small_synthetic)
    out = tmp_path / "results"
    argv = ["run", "--quick", "--tasks", "binary", "--models", "logreg", "--seeds", "3", "--no-report", "--out",
            str(out)]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fer-bench", *argv])
    assert main() == 0
    cell = out / "runs" / "binary" / "logreg" / "seed3"
    manifest = json.loads((cell / "manifest.json").read_text())

    assert (manifest["task"], manifest["model"], manifest["seed"], manifest["quick"]) == ("binary", "logreg", 3, True)
    assert manifest["dataset"] == {"name": "synthetic", "fingerprint": small_synthetic.fingerprint,
                                   "source": small_synthetic.source, "rgb_to_gray": False,
                                   "synthetic": {"seed": 0, "n_train": 700, "n_public": 210, "n_private": 210,
                                                 "artifacts": True}}
    assert manifest["version"] == 3
    assert sorted(manifest["files"]) == ["maps.npz", "params.json", "predictions.csv", "robustness.npz", "timings.json"]
    assert json.loads((out / "fer-bench.json").read_text())["reference"] == manifest["dataset"]
    assert manifest["command"] == shlex.join(["fer-bench", *argv])
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", manifest["code"]["commit"])
    assert "dirty" in manifest["code"]
    for package in ("numpy", "scikit-learn", "scikit-image", "scipy"):
        assert manifest["packages"][package] == importlib.metadata.version(package)
    assert manifest["packages"]["fer-bench"]
    assert manifest["class_names"] == list(get_task("binary").class_names)
    for key in ("balancing", "n_train", "train_class_counts", "machine", "threads", "started", "finished"):
        assert key in manifest

    # The recorded command, pointed at another folder, recomputes the same predictions from the same data.
    replay = shlex.split(manifest["command"])[1:]
    replay[replay.index("--out") + 1] = str(tmp_path / "replay")
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fer-bench", *replay])
    assert main() == 0
    replayed = tmp_path / "replay" / cell.relative_to(out)
    assert (replayed / "predictions.csv").read_bytes() == (cell / "predictions.csv").read_bytes()
    assert json.loads((replayed / "manifest.json").read_text())["dataset"] == manifest["dataset"]
