"""FER-2013 loading: Kaggle folder layout or fer2013.csv, discovery, download, cache, synthetic fallback.

    from fer_bench.data import load_dataset
    ds = load_dataset()                      # discovery; the synthetic data when FER-2013 is not found
    ds = load_dataset("~/data/fer2013")      # a Kaggle layout folder
    ds = load_dataset("fer2013.csv")         # the original challenge CSV

Both formats give the same Dataset (same order, pixels, labels, usage and fingerprint) for the same images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fer_bench.data.csv_format import load_csv, write_csv
from fer_bench.data.dataset import Dataset
from fer_bench.data.discovery import (
    CSV_NAME,
    describe_search,
    download_fer2013,
    find_fer2013,
    search_locations,
)
from fer_bench.data.folder import is_kaggle_root, load_folder
from fer_bench.errors import FerBenchError

__all__ = [
    "Dataset",
    "download_fer2013",
    "find_fer2013",
    "load_csv",
    "load_dataset",
    "load_folder",
    "load_path",
    "search_locations",
    "write_csv",
]


def load_path(path: Path | str, *, rgb_to_gray: bool = False, use_cache: bool = True) -> Dataset:
    """Load a .csv file with load_csv; a folder with load_folder, unless it only holds a fer2013.csv."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FerBenchError(f"{path}: no such file or folder (expected a FER-2013 folder or fer2013.csv)")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise FerBenchError(f"{path}: not a .csv file; expected a FER-2013 folder (Kaggle layout) or fer2013.csv")
        return load_csv(path, use_cache=use_cache)
    if not is_kaggle_root(path) and (path / CSV_NAME).is_file():
        return load_csv(path / CSV_NAME, use_cache=use_cache)
    return load_folder(path, rgb_to_gray=rgb_to_gray, use_cache=use_cache)


def load_dataset(path: Path | str | None = None, *, rgb_to_gray: bool = False, use_cache: bool = True,
                 fallback_to_synthetic: bool = True) -> Dataset:
    """FER-2013 from `path` or, when None, from the first discovery location that holds it.

    When nothing is found, returns the built-in synthetic data (named "synthetic", with one line on stderr), or
    raises FerBenchError if `fallback_to_synthetic` is False. An explicit path that does not exist always raises."""
    found = find_fer2013(path)
    if found is not None:
        return load_path(found, rgb_to_gray=rgb_to_gray, use_cache=use_cache)
    where = describe_search()
    if not fallback_to_synthetic:
        raise FerBenchError(f"FER-2013 not found (looked in {where}); pass --data PATH, set FER2013_DIR "
                            f"or run `fer-bench data download`")
    from fer_bench.data.synthetic import make_synthetic

    print(f"fer-bench: FER-2013 not found (looked in {where}); using the built-in synthetic data instead "
          f"(results are labelled 'synthetic'; pass --data PATH to use FER-2013)", file=sys.stderr)
    return make_synthetic(seed=0)
