"""`fer-bench run --plugin`: a user's file or module registers models and tasks that the CLI then runs."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from fer_bench import tasks
from fer_bench.cli import main
from fer_bench.plugins import load_plugin

MODEL_PLUGIN = """\
from fer_bench.baselines.logreg import make_logreg
from fer_bench.models import register_model


def make_my_logreg(seed=0, quick=False, **params):
    return make_logreg(seed=seed, quick=quick, **params)


register_model("my_logreg", make_my_logreg)
"""

TASK_PLUGIN = """\
from fer_bench.tasks import Task, register_task

register_task(Task("happy_vs_sad", class_names=("happy", "sad"), source_labels=((3,), (4,)),
                   balancing="undersample"))
"""


def _predictions(path):
    with open(path) as f:
        return [row for row in csv.DictReader(f)]


def test_cli_runs_a_model_and_a_task_registered_by_plugins(tmp_path):
    (tmp_path / "my_models.py").write_text(MODEL_PLUGIN)
    (tmp_path / "my_tasks.py").write_text(TASK_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "FER2013_DIR"}
    env.update(KAGGLEHUB_CACHE=str(tmp_path / "kaggle"), FER_BENCH_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "fer_bench", "run", "--plugin", "my_models.py", "--plugin", "my_tasks",
         "--tasks", "happy_vs_sad", "--models", "logreg,my_logreg"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "results" / "synthetic" / "runs" / "happy_vs_sad"
    builtin, plugin = (_predictions(runs / name / "seed0" / "predictions.csv") for name in ("logreg", "my_logreg"))
    # the plugin's model is the same estimator with the same seed, through the same pipeline: same predictions
    assert len(plugin) > 0 and plugin == builtin
    assert list(plugin[0]) == ["split", "image_id", "label", "prob_happy", "prob_sad"]
    assert "| happy_vs_sad | my_logreg |" in (tmp_path / "results" / "synthetic" / "summary.md").read_text()


def test_module_plugin_is_found_in_the_current_folder(tmp_path, monkeypatch):
    # the console script does not put the current folder on sys.path; load_plugin does
    (tmp_path / "fer_bench_test_tasks_plugin.py").write_text(TASK_PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))  # the registration stays inside this test
    try:
        load_plugin("fer_bench_test_tasks_plugin")
    finally:
        sys.modules.pop("fer_bench_test_tasks_plugin", None)
    assert tasks.get_task("happy_vs_sad").class_names == ("happy", "sad")


@pytest.mark.parametrize(("source", "expected"), [
    ("import os\n\nraise RuntimeError('boom')\n", "RuntimeError: boom at {path}:3"),
    ("x = 1\ndef broken(:\n", "SyntaxError: .+ at {path}:2"),  # the wording depends on the Python version
    ("from fer_bench.models import register_model\nregister_model('cnn', print)\n",
     "ValueError: model 'cnn' is already registered at {path}:2"),
])
def test_a_mistake_in_a_plugin_is_one_line_with_file_and_line(tmp_path, capsys, source, expected):
    path = tmp_path / "bad_plugin.py"
    path.write_text(textwrap.dedent(source))
    assert main(["run", "--plugin", str(path), "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    pattern = re.escape(f"fer-bench: error: --plugin {path}: ") + re.escape(expected.format(path=path)).replace(
        re.escape(".+"), ".+")
    assert re.fullmatch(pattern + "\n", err), err
    assert "fer_bench_plugin_bad_plugin" not in sys.modules
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("spec", "expected"), [
    ("missing_plugin.py", "--plugin missing_plugin.py: no such file"),
    ("no_such_module_xyz", "--plugin no_such_module_xyz: no module of that name"),
])
def test_a_missing_plugin_is_one_line(tmp_path, monkeypatch, capsys, spec, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--plugin", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-bench: error: {expected}") and err.count("\n") == 1


def test_an_installed_package_registers_models_through_entry_points(tmp_path, monkeypatch):
    from fer_bench import models

    site = tmp_path / "site"
    (site / "my_fer_models").mkdir(parents=True)
    (site / "my_fer_models" / "__init__.py").write_text(MODEL_PLUGIN.replace('register_model("my_logreg", '
                                                                             'make_my_logreg)\n', ""))
    dist = site / "my_fer_models-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-fer-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fer_bench.models]\nep_logreg = my_fer_models:make_my_logreg\n"
                                           "logreg = my_fer_models:make_my_logreg\n")
    monkeypatch.syspath_prepend(str(site))
    with models.registry_snapshot():  # the registrations stay inside this test
        assert models.register_entry_points() == ["ep_logreg"]  # "logreg" is built in: left alone
        assert models.model_spec("ep_logreg").factory == "my_fer_models:make_my_logreg"
        model = models.make_model("ep_logreg", seed=0, quick=True)
    assert type(model).__name__ == "PixelLogisticRegression" and model.random_state == 0


NEAREST_MEAN_PLUGIN = """\
import numpy as np
from fer_bench.models import register_model
from fer_bench.models.base import ImageClassifier


class NearestMean(ImageClassifier):
    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, X, y, sample_weight=None, validation_data=None):
        X = X.reshape(len(X), -1).astype(float)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        self.selected_params_ = {"temperature": 1000.0}
        return self

    def predict_proba(self, X):
        d = ((X.reshape(len(X), -1)[:, None, :] - self.means_[None]) ** 2).mean(axis=2)
        e = np.exp(-(d - d.min(axis=1, keepdims=True)) / 1000.0)
        return e / e.sum(axis=1, keepdims=True)


register_model("nearest_mean", lambda seed=0, quick=False: NearestMean(seed=seed))
"""


def test_a_plugin_model_is_first_class_and_its_folder_reports_without_the_plugin(tmp_path):
    """A user's model class in one file, beside hog_svm and logreg (no CNN): every table holds it, significance
    compares it with the reference, it has occlusion saliency maps, and a later `fer-bench report` in a new
    process, without --plugin, writes the same summary."""
    (tmp_path / "user_models.py").write_text(NEAREST_MEAN_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "FER2013_DIR"}
    env.update(KAGGLEHUB_CACHE=str(tmp_path / "kaggle"), FER_BENCH_CACHE=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-m", "fer_bench", "run", "--plugin", "user_models.py", "--tasks", "binary",
                          "--models", "nearest_mean,hog_svm,logreg", "--out", "out"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out"
    assert json.loads((out / "fer-bench.json").read_text())["plugins"] == [str(tmp_path / "user_models.py")]
    summary = (out / "summary.md").read_text()
    for name in ("metrics.csv", "per_class.csv", "confusions.csv", "timing.csv"):
        assert "nearest_mean" in (out / name).read_text(), name
    with open(out / "significance.csv", newline="") as fh:
        pairs = {(r["model_a"], r["model_b"]) for r in csv.DictReader(fh)}
    assert len(pairs) == 2 and any("nearest_mean" in pair for pair in pairs)
    assert "| binary | nearest_mean |" in summary
    # its occlusion maps were computed: the findings give each model's share of evidence in the lower face
    assert "Skipped: binary saliency" not in summary and "no saliency maps of nearest_mean" not in summary
    assert re.search(r"lower half of the face \(mouth\) is [^\n]*nearest_mean \d+\.\d%", summary)
    assert "](figures/saliency_binary.png)" in summary

    before = {name: (out / name).read_bytes() for name in ("summary.md", "metrics.csv", "significance.csv")}
    report = subprocess.run([sys.executable, "-m", "fer_bench", "report", "--out", "out"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    assert "cannot be imported" not in report.stderr
