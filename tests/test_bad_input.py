"""Every bad input the loaders and the CLI can meet, through the real CLI: one line on stderr naming what and where,
exit code 2, no traceback, and nothing written or overwritten (no results folder, no data cache)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, run_cli, snapshot
from PIL import Image

from fer_bench.data import folder

VALID_PIXELS = " ".join(str(v % 256) for v in range(48 * 48))
# Cheapest cell, so a loader that wrongly accepted bad data would still fail fast rather than train for long.
RUN_ARGS = ["run", "--models", "logreg", "--tasks", "binary", "--no-report"]




def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """one_line_error, and the line says it is an error."""
    line = one_line_error(code, err, *needles)
    assert "error" in line
    return line




def an_image(root: Path, split_folder: str = "train", class_name: str = "happy") -> Path:
    return sorted((root / split_folder / class_name).glob("*.jpg"))[0]


# --- broken folders: each returns (what the message must name: path, problem) ----------------------------------

def truncated_jpeg(root):
    path = an_image(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path), "corrupt or truncated image"


def zero_byte_file(root):
    path = an_image(root, "test", "sad")
    path.write_bytes(b"")
    return str(path), "empty file (0 bytes)"


def text_file_named_jpg(root):
    path = an_image(root, "test", "neutral")
    path.write_text("this is not a picture\n")
    return str(path), "not a JPEG or PNG image"


def image_64x64(root):
    path = an_image(root)
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(path)
    return str(path), "64x64 pixels, expected 48x48"


def rgb_image(root):
    path = an_image(root, "train", "fear")
    Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(path)
    return str(path), "pass --rgb-to-gray"


def stray_file_at_class_folder_level(root):
    path = root / "train" / "labels.txt"
    path.write_text("happy\n")
    return str(path), "stray file next to the class folders"


def unknown_class_folder(root):
    path = root / "test" / "contempt"
    path.mkdir()
    shutil.copy(an_image(root, "test", "sad"), path / "PublicTest_424242.jpg")
    return str(path), "unknown class folder 'contempt'"


def empty_split(root):
    for path in root.glob("test/*/PrivateTest_*.jpg"):
        path.unlink()
    return str(root / "test"), "no PrivateTest images"


def empty_training_folder(root):
    for path in root.glob("train/*/*.jpg"):
        path.unlink()
    return str(root / "train"), "no Training images"


def path_that_does_not_exist(root):
    shutil.rmtree(root)
    return str(root), "no such file or folder"


FOLDER_BREAKERS = [truncated_jpeg, zero_byte_file, text_file_named_jpg, image_64x64, rgb_image,
                   stray_file_at_class_folder_level, unknown_class_folder, empty_split, empty_training_folder,
                   path_that_does_not_exist]


# --- broken CSVs: each returns (file text, problem); the message must name the file and the line --------------

def csv_missing_column():
    return f"emotion,pixels\n3,{VALID_PIXELS}\n", "line 1: missing column(s) Usage"


def csv_row_of_2303_pixels():
    short = VALID_PIXELS.rsplit(" ", 1)[0]
    return f"emotion,pixels,Usage\n3,{VALID_PIXELS},Training\n3,{short},Training\n", "line 3: 2303 pixel values"


def csv_non_numeric_pixel():
    bad = VALID_PIXELS.replace(" 7 ", " x7 ", 1)
    return f"emotion,pixels,Usage\n3,{bad},PublicTest\n", "line 2: pixel 8 is 'x7'"


def csv_pixel_out_of_range():
    bad = "256" + VALID_PIXELS[1:]
    return f"emotion,pixels,Usage\n3,{bad},PublicTest\n", "line 2: pixel 1 is 256, outside 0..255"


def csv_label_out_of_range():
    return f"emotion,pixels,Usage\n7,{VALID_PIXELS},Training\n", "line 2: emotion '7' is not a label 0..6"


def csv_unknown_usage():
    return f"emotion,pixels,Usage\n3,{VALID_PIXELS},Validation\n", "line 2: unknown Usage 'Validation'"


def csv_empty():
    return "", "empty CSV file"


def csv_header_only():
    return "emotion,pixels,Usage\n", "no data rows"


CSV_BREAKERS = [csv_missing_column, csv_row_of_2303_pixels, csv_non_numeric_pixel, csv_pixel_out_of_range,
                csv_label_out_of_range, csv_unknown_usage, csv_empty, csv_header_only]


def command(kind: str, data: Path, out: Path) -> list:
    if kind == "run":
        return [*RUN_ARGS, "--data", data, "--out", out]
    if kind == "data audit":
        return ["data", "audit", "--data", data, "--out", out]
    return ["data", "info", "--data", data]


COMMANDS = ["run", "data info", "data audit"]


@pytest.mark.parametrize("kind", COMMANDS)
@pytest.mark.parametrize("breaker", FOLDER_BREAKERS, ids=[b.__name__ for b in FOLDER_BREAKERS])
def test_broken_folder_is_one_line_exit_2_and_writes_nothing(breaker, kind, tiny_fer_folder, tmp_path, capsys,
                                                            isolated_data_cache):
    where, what = breaker(tiny_fer_folder)
    before = snapshot(tiny_fer_folder, folders=False) if tiny_fer_folder.exists() else {}
    out = tmp_path / "results"
    code, _, err = run_cli(command(kind, tiny_fer_folder, out), capsys)
    assert_one_line_error(code, err, where, what)
    assert not out.exists()
    assert not isolated_data_cache.exists() or not any(isolated_data_cache.iterdir())
    assert (snapshot(tiny_fer_folder, folders=False) if tiny_fer_folder.exists() else {}) == before


@pytest.mark.parametrize("kind", COMMANDS)
@pytest.mark.parametrize("breaker", CSV_BREAKERS, ids=[b.__name__ for b in CSV_BREAKERS])
def test_broken_csv_is_one_line_naming_the_line_exit_2_and_writes_nothing(breaker, kind, tmp_path, capsys,
                                                                          isolated_data_cache):
    text, what = breaker()
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    out = tmp_path / "results"
    code, _, err = run_cli(command(kind, path, out), capsys)
    assert_one_line_error(code, err, str(path), what)
    assert not out.exists()
    assert not isolated_data_cache.exists() or not any(isolated_data_cache.iterdir())


def test_rgb_image_is_accepted_with_rgb_to_gray(tiny_fer_folder, tmp_path, capsys):
    rgb_image(tiny_fer_folder)
    code, out, err = run_cli(["data", "info", "--data", tiny_fer_folder, "--rgb-to-gray"], capsys)
    assert code == 0, err
    assert "total" in out and "21" in out  # 21 Training images, the RGB one included
    code, out, err = run_cli(["data", "audit", "--data", tiny_fer_folder, "--rgb-to-gray",
                              "--out", tmp_path / "audit"], capsys)
    assert code == 0, err
    assert (tmp_path / "audit" / "audit.csv").is_file()


def test_bad_data_leaves_an_existing_results_folder_untouched(tiny_fer_folder, tmp_path, capsys):
    out = tmp_path / "results"
    (out / "runs").mkdir(parents=True)
    (out / "fer-bench.json").write_text(json.dumps({"format": 1, "dataset": "fer2013", "fingerprint": "0" * 16}))
    (out / "summary.md").write_text("earlier results\n")
    before = snapshot(out, folders=False)
    where, what = truncated_jpeg(tiny_fer_folder)
    for kind in ("run", "data audit"):
        code, _, err = run_cli(command(kind, tiny_fer_folder, out), capsys)
        assert_one_line_error(code, err, where, what)
        assert snapshot(out, folders=False) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod 000 does not stop root from reading (simulated in the next test)")
def test_unreadable_folder_chmod_000(tiny_fer_folder, tmp_path, capsys):
    locked = tiny_fer_folder / "train" / "sad"
    locked.chmod(0)
    try:
        code, _, err = run_cli(command("run", tiny_fer_folder, tmp_path / "results"), capsys)
    finally:
        locked.chmod(0o755)
    assert_one_line_error(code, err, str(locked), "permission denied")
    assert not (tmp_path / "results").exists()


def test_unreadable_folder_simulated(tiny_fer_folder, tmp_path, capsys, monkeypatch):
    locked = tiny_fer_folder / "train" / "sad"
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(folder.os, "scandir", scandir)
    code, _, err = run_cli(command("run", tiny_fer_folder, tmp_path / "results"), capsys)
    assert_one_line_error(code, err, str(locked), "permission denied")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("args", "what"), [
    (["--tasks", "eightclass"], "unknown task 'eightclass'"),
    (["--models", "resnet"], "unknown model 'resnet'"),
    (["--models", "logreg,logreg"], "model listed twice"),
    (["--seeds", "one"], "seeds must be integers and ranges like 0-2 or 0,1,5, got 'one'"),
    (["--seeds", "1.5"], "seeds must be integers and ranges like 0-2"),
    (["--seeds=-1"], "seeds must be one or more integers 0..4294967295"),
    (["--seeds", "4294967296"], "seeds must be one or more integers 0..4294967295"),
    (["--seeds", ","], "seeds must be one or more integers"),
    (["--seeds", "3,3"], "seed listed twice"),
    (["--colour"], "unrecognized arguments: --colour"),
    (["--tasks", ""], "no task selected"),
    (["--models", ""], "no model selected"),
    (["--models", "", "--set", "logreg.max_iter=5"], "no model selected"),
    (["--tasks", "binary,binary"], "task listed twice"),
    (["--workers", "0"], "--workers must be 1 or more, got 0"),
    (["--workers=-2"], "--workers must be 1 or more, got -2"),
    (["--scheduler", "notaurl"], "--scheduler notaurl: expected tcp://HOST:PORT"),
    (["--scheduler", "tcp://localhost:99999"], "expected tcp://HOST:PORT"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler tcp://127.0.0.1:1: cannot connect"),
    (["--set", "hog_svm.n_components=-3"], "The 'n_components' parameter of PCA must be"),
    (["--set", "logreg.Cs=(0.1,-1)"], "Cs must be a sequence of numbers in (0, inf)"),
    (["--set", "logreg.max_iter=5", "--set", "logreg.max_iter=6"], "--set logreg.max_iter given twice"),
    (["--models", "hog_svm[n_components=-3]"], "model hog_svm[n_components=-3]: The 'n_components' parameter"),
], ids=["unknown-task", "unknown-model", "model-twice", "seed-word", "seed-float", "seed-negative", "seed-too-big",
        "seed-empty", "seed-twice", "unknown-option", "tasks-empty", "models-empty", "models-empty-with-set",
        "task-twice", "workers-0", "workers-negative", "scheduler-not-a-url", "scheduler-bad-port",
        "scheduler-unreachable", "set-sklearn-invalid", "set-own-check", "set-twice", "variant-sklearn-invalid"])
def test_bad_names_and_seeds_are_one_line_and_write_nothing(args, what, tiny_fer_folder, tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, *args], capsys)
    assert_one_line_error(code, err, what)
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--workers", "0"], ["--scheduler", "notaurl"], ["--scheduler", "tcp://127.0.0.1:1"],
    ["--set", "hog_svm.n_components=-3"], ["--models", "hog_svm[n_components=-3]"], ["--tasks", ""],
], ids=["workers-0", "scheduler-not-a-url", "scheduler-unreachable", "set-invalid", "variant-invalid", "tasks-empty"])
def test_bad_arguments_leave_an_existing_results_folder_untouched(args, tiny_fer_folder, tmp_path, capsys):
    """Checked before the results folder is touched: no fer-bench.json rewritten, no plugin record, no cell."""
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, "--models", "logreg", "--tasks",
                            "binary", "--no-report"], capsys)
    assert code == 0, err
    before = snapshot(out, folders=False)
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, "--tasks", "binary", *args], capsys)
    assert_one_line_error(code, err)
    assert snapshot(out, folders=False) == before


@pytest.mark.parametrize("args", [["--seeds", "3,3"], ["--data", "no/such/folder"]], ids=["seed-twice", "no-data"])
def test_a_mistake_is_one_line_even_when_a_model_is_skipped(args, tiny_fer_folder, tmp_path, capsys, monkeypatch):
    """Without TensorFlow the default grid skips the CNN with a notice; a mistake must still print one line."""
    import fer_bench.run

    real = fer_bench.run.missing_requirements
    monkeypatch.setattr(fer_bench.run, "missing_requirements",
                        lambda name: ["tensorflow"] if name == "cnn" else real(name))
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--data", tiny_fer_folder, "--out", out, *args], capsys)
    assert_one_line_error(code, err)
    assert "skipping model" not in err and not out.exists()


@pytest.mark.parametrize("kind", ["run", "data audit", "report"])
def test_results_folder_of_an_incompatible_version_is_refused_and_kept(kind, tiny_fer_folder, tmp_path, capsys):
    old = tmp_path / "old"
    (old / "runs").mkdir(parents=True)
    (old / "fer-bench.json").write_text(json.dumps({"format": 99, "dataset": "fer2013"}))
    (old / "metrics.csv").write_text("from the future\n")
    before = snapshot(old, folders=False)
    argv = ["report", "--out", old] if kind == "report" else command(kind, tiny_fer_folder, old)
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, str(old), "incompatible fer-bench (results format 99")
    assert snapshot(old, folders=False) == before


def test_results_folder_for_other_data_is_refused_by_the_audit(tiny_fer_folder, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "fer-bench.json").write_text(json.dumps({"format": 1, "dataset": "fer2013", "fingerprint": "f" * 16}))
    before = snapshot(out, folders=False)
    code, _, err = run_cli(command("data audit", tiny_fer_folder, out), capsys)
    assert_one_line_error(code, err, str(out), "holds results for other data")
    assert snapshot(out, folders=False) == before


# --- the same through a real process: nothing but the one line reaches the user -------------------------------

def _subprocess_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FER2013_DIR", "KAGGLEHUB_CACHE")}
    env["FER_BENCH_CACHE"] = str(tmp_path / "cache")
    env["KAGGLEHUB_CACHE"] = str(tmp_path / "kagglehub")
    return env


def test_no_traceback_reaches_the_user_of_a_real_process(tiny_fer_folder, tmp_path):
    where, what = truncated_jpeg(tiny_fer_folder)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(csv_unknown_usage()[0])
    old = tmp_path / "old"
    old.mkdir()
    (old / "fer-bench.json").write_text(json.dumps({"format": 0}))
    out = tmp_path / "results"
    cases = [
        ([*RUN_ARGS, "--data", tiny_fer_folder, "--out", out], [where, what]),
        (["data", "info", "--data", bad_csv], [str(bad_csv), "line 2: unknown Usage"]),
        (["run", "--seeds", "x", "--out", out], ["seeds must be integers and ranges like 0-2"]),
        (["run", "--models", "resnet", "--out", out], ["unknown model 'resnet'"]),
        (["report", "--out", old], [str(old), "incompatible fer-bench"]),
        (["data", "audit", "--data", tmp_path / "nowhere", "--out", out], ["nowhere", "no such file or folder"]),
    ]
    for argv, needles in cases:
        proc = subprocess.run([sys.executable, "-m", "fer_bench", *map(str, argv)], capture_output=True, text=True,
                              cwd=tmp_path, env=_subprocess_env(tmp_path), timeout=120)
        assert_one_line_error(proc.returncode, proc.stderr, *needles)
        assert proc.stdout == "", proc.stdout
    assert not out.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
