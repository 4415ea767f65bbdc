"""Shared fixtures: the real FER-2013 folder (skips when absent), tiny Kaggle-layout folders, an isolated cache.

Markers are registered in pyproject.toml only. Tests that use the `fer2013_dir` fixture get the `fer2013`
marker automatically, so `pytest -m "not fer2013"` deselects them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench import CLASS_NAMES

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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "fer2013_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.fer2013)

