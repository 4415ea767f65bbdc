"""Shared fixtures: the real FER-2013 folder (skips when absent), tiny Kaggle-layout folders, an isolated cache,
and the synthetic data sets and quick grids that many test files read, computed once per test run.

Markers are registered in pyproject.toml only. Tests that use the `fer2013_dir` fixture get the `fer2013`
marker automatically, so `pytest -m "not fer2013"` deselects them. `slow` marks the tests that fit the CNN,
start a Dask cluster or a browser: `pytest -m "not slow"` is the inner loop.

The shared grids (`baseline_grid`, `cnn_grid`, `quick_grid`, `tiny_grid`) are session-scoped: a test reads
them, and one that changes a results folder works on its own copy (`copy_grid` into its tmp_path), so sharing
never couples tests. The data sets they hand out are shared too: never change their arrays. Under pytest-xdist
each results folder is still computed once per test run, by the first worker that needs it (`computed_once`);
every worker builds its own data sets (deterministic: the same arrays in each).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from PIL import Image

from fer_bench import CLASS_NAMES
from fer_bench.data.dataset import Dataset

REPO_ROOT = Path(__file__).resolve().parent.parent

# Images per class for each usage in the default tiny folder (7 classes -> 21 + 14 + 14 images).
TINY_SPEC = {"Training": 3, "PublicTest": 2, "PrivateTest": 2}
SPLIT_FOLDER = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}


def real_fer2013_dir() -> Path | None:
    """$FER2013_DIR, else ../shared/fer2013 next to the repository, when it holds train/ and test/."""
    candidate = Path(os.environ.get("FER2013_DIR") or REPO_ROOT.parent / "shared" / "fer2013")
    return candidate if (candidate / "train").is_dir() and (candidate / "test").is_dir() else None


def make_folder_dataset(root: Path | str, spec: Mapping[str, int | Mapping[str, int]] | None = None,
                        seed: int = 0) -> Path:
    """Write a small valid Kaggle-layout FER-2013 folder of random 48x48 gray JPEGs under `root`; return root.

    `spec` maps a usage to a number of images per class, or to {class name: number}; default TINY_SPEC.
    File numbers are random and unique, so sorting by number differs from the order files are written in."""
    root = Path(root)
    spec = TINY_SPEC if spec is None else spec
    rng = np.random.default_rng(seed)
    per_usage = {usage: (dict.fromkeys(CLASS_NAMES, count) if isinstance(count, int) else dict(count))
                 for usage, count in spec.items()}
    total = sum(sum(classes.values()) for classes in per_usage.values())
    numbers = iter(rng.choice(1_000_000, size=total, replace=False))
    for folder in ("train", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for usage, classes in per_usage.items():
        for class_name, count in classes.items():
            class_dir = root / SPLIT_FOLDER[usage] / class_name
            class_dir.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                pixels = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
                Image.fromarray(pixels).save(class_dir / f"{usage}_{next(numbers)}.jpg")
    return root


@pytest.fixture(autouse=True)
def isolated_data_cache(tmp_path, monkeypatch) -> Path:
    """Every test caches decoded data under its own tmp folder, never in ~/.cache."""
    cache = tmp_path / "fer-bench-cache"
    monkeypatch.setenv("FER_BENCH_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    """The real FER-2013 folder (Kaggle layout); skips the test when it is not available."""
    path = real_fer2013_dir()
    if path is None:
        pytest.skip("real FER-2013 not found: set FER2013_DIR or put it at ../shared/fer2013")
    return path


@pytest.fixture
def tiny_fer_folder(tmp_path) -> Path:
    """A tiny valid Kaggle-layout folder (TINY_SPEC images) in tmp_path."""
    return make_folder_dataset(tmp_path / "fer2013")


@pytest.fixture
def make_fer_folder():
    """The make_folder_dataset helper, for tests that need their own layout."""
    return make_folder_dataset


# --- synthetic data sets and quick grids, computed once per test run ------------------------------------------

TASKS = ("7class", "5class", "binary")
BASELINES = ("hog_svm", "logreg")


@dataclass(frozen=True)
class Grid:
    """A finished quick grid: the results folder `out` (read only: copy it with copy_grid before changing it),
    the data set its cells were computed on and the (tasks, models, seeds) it holds."""

    out: Path
    dataset: Dataset
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)

    @property
    def cells(self) -> list[str]:
        """Every cell, as "task/model/seedN"."""
        return [f"{t}/{m}/seed{s}" for t in self.tasks for m in self.models for s in self.seeds]


def copy_grid(grid: Grid | Path, dest: Path | str, cells: Iterable[str] | None = None) -> Path:
    """Copy a results folder to `dest` (which must not exist) and return dest. With `cells` (patterns like
    "binary/logreg/seed0" or "*/logreg/seed0"), only fer-bench.json and the cells matching one of them are
    copied: the folder a `fer-bench run --no-report` of just those cells would have written."""
    source, dest = Path(getattr(grid, "out", grid)), Path(dest)
    if cells is None:
        shutil.copytree(source, dest)
        return dest
    patterns = list(cells)
    names = [cell.relative_to(source / "runs").as_posix() for cell in sorted((source / "runs").glob("*/*/seed*"))]
    unmatched = [pattern for pattern in patterns if not fnmatch.filter(names, pattern)]
    assert not unmatched, f"no cell of {source} matches {unmatched}"
    dest.mkdir(parents=True)
    shutil.copy2(source / "fer-bench.json", dest / "fer-bench.json")
    for name in names:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            shutil.copytree(source / "runs" / name, dest / "runs" / name)
    return dest


def computed_once(tmp_path_factory, name: str, compute: Callable[[Path], None]) -> Path:
    """A folder `compute` has filled, once per test run. Run alone: a new tmp folder. Under pytest-xdist: one
    folder beside the workers' tmp folders, filled by the first worker that asks while the others wait on its
    lock, then handed to all (xdist's "making session-scoped fixtures execute only once"). Read it only."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        compute(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this run's, common to its workers
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker whose compute failed left
            folder.mkdir()
            compute(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def small_synthetic() -> Dataset:
    """700 Training, 210 PublicTest and 210 PrivateTest synthetic faces (seed 0, planted artifacts included)."""
    from fer_bench.data.synthetic import make_synthetic

    return make_synthetic(n_train=700, n_public=210, n_private=210, seed=0)


@pytest.fixture(scope="session")
def tiny_synthetic() -> Dataset:
    """300 Training, 90 PublicTest and 90 PrivateTest synthetic faces (seed 0)."""
    from fer_bench.data.synthetic import make_synthetic

    return make_synthetic(n_train=300, n_public=90, n_private=90, seed=0)


@pytest.fixture(scope="session", autouse=True)
def isolated_session_cache(tmp_path_factory):
    """The session fixtures (the shared grids) cache under a tmp folder too, never in ~/.cache; each test still
    gets its own (isolated_data_cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_BENCH_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


@pytest.fixture(scope="session")
def baseline_grid(tmp_path_factory, small_synthetic) -> Grid:
    """hog_svm and logreg, quick, seed 0, on the three tasks of small_synthetic, report included (run_grid hands
    the report the data set: these sizes are not the synthetic defaults and could not be re-loaded). Like the
    other shared grids it is stored without robustness.npz (60 predictions more per cell); tests/test_robustness.py
    has a grid of its own with them."""
    from fer_bench.run import run_grid

    def compute(folder: Path) -> None:
        run_grid(dataset=small_synthetic, tasks=list(TASKS), models=list(BASELINES), quick=True,
                 out=folder / "results", live=False, robustness=False)

    out = computed_once(tmp_path_factory, "baseline_grid", compute) / "results"
    return Grid(out, small_synthetic, TASKS, BASELINES)


@pytest.fixture(scope="session")
def cnn_grid(tmp_path_factory, baseline_grid) -> Grid:
    """baseline_grid plus the quick CNN's cells, report included: a copy of baseline_grid's cells (not its report)
    that run_grid completes, keeping the finished cells as a rerun keeps them. It fits the CNN: tests using it are
    marked slow; it skips without TensorFlow."""
    pytest.importorskip("tensorflow", reason="the CNN needs TensorFlow (pip install 'fer-bench[cnn]')")
    from fer_bench.run import run_grid

    models = ("cnn", *BASELINES)

    def compute(folder: Path) -> None:
        out = copy_grid(baseline_grid, folder / "results", cells=baseline_grid.cells)
        run_grid(dataset=baseline_grid.dataset, tasks=list(TASKS), models=list(models), quick=True, out=out,
                 live=False, robustness=False)

    out = computed_once(tmp_path_factory, "cnn_grid", compute) / "results"
    return Grid(out, baseline_grid.dataset, TASKS, models)


@pytest.fixture(scope="session", params=["baselines", pytest.param("cnn", marks=pytest.mark.slow)])
def quick_grid(request) -> Grid:
    """The report tests' grid: baseline_grid, and (marked slow) cnn_grid."""
    return request.getfixturevalue("baseline_grid" if request.param == "baselines" else "cnn_grid")


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory, tiny_synthetic) -> Path:
    """hog_svm and logreg, quick, on tiny_synthetic: binary and 5class with seeds 0, 1 and 2, and 7class with seed
    0; no report. Tests take the cells they need with copy_grid."""
    from fer_bench.run import run_grid

    def compute(folder: Path) -> None:
        out = folder / "results"
        run_grid(dataset=tiny_synthetic, tasks=["binary", "5class"], models=list(BASELINES), seeds=(0, 1, 2),
                 quick=True, out=out, report=False, live=False, robustness=False)
        run_grid(dataset=tiny_synthetic, tasks=["7class"], models=list(BASELINES), seeds=(0,), quick=True, out=out,
                 report=False, live=False, robustness=False)

    return computed_once(tmp_path_factory, "tiny_grid", compute) / "results"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "fer2013_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.fer2013)
        if "cnn_grid" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)  # it fits the CNN, even where a test forgot to say so


# --- helpers the command-line tests share -------------------------------------------------------------------------

def run_cli(argv, capsys) -> tuple[int, str, str]:
    """fer-bench's main(argv) in-process: (exit code, stdout, stderr); argparse's SystemExit becomes the code."""
    from fer_bench.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *needles: str) -> str:
    """The promise for a user's mistake: exit 2, one line on stderr containing every needle, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: Path, *, folders: bool = True) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file below root and, with `folders`, every folder (a leftover
    staging folder shows), to assert that a command changed nothing."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else (b"", 0)
            for p in sorted(root.rglob("*")) if folders or p.is_file()}


def rerecord(cell: Path) -> None:
    """After a test edits a stored cell's files on purpose: the manifest's integrity records recomputed from the
    files as they are now, as if the cell had been stored with them (a cell without records keeps none)."""
    from fer_bench.storage import read_manifest, record_files

    if read_manifest(cell / "manifest.json").files is not None:
        record_files(cell)


def without_records(cell: Path) -> None:
    """The cell's manifest as a cell stored before manifests recorded their files had it (version 2, no `files`)."""
    import json

    path = cell / "manifest.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info.pop("files", None)
    info["version"] = 2
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
