"""Where FER-2013 is looked for, and how it is downloaded.

Order: an explicit path (`--data`), `$FER2013_DIR`, `./data/fer2013` (relative to the current folder), then the
kagglehub cache `$KAGGLEHUB_CACHE` or `~/.cache/kagglehub` + `datasets/msambare/fer2013/versions/<N>` (highest N
first). An explicit path or `$FER2013_DIR` that does not exist is an error, never a silent fallback; the other
places are simply skipped when they hold no data set. A place holds a data set when it is a .csv file, a Kaggle
layout folder (train/ and test/, possibly one folder down), or a folder containing fer2013.csv.
"""

from __future__ import annotations

import os
from pathlib import Path

from fer_bench.data.folder import is_kaggle_root, visible_entries
from fer_bench.errors import FerBenchError

KAGGLE_DATASET = "msambare/fer2013"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"
CSV_NAME = "fer2013.csv"


def kagglehub_versions_dir() -> Path:
    base = os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub"
    return Path(base).expanduser() / "datasets" / KAGGLE_DATASET / "versions"


def _kagglehub_versions() -> list[Path]:
    """The downloaded versions, highest number first (numerically, so 10 comes before 9)."""
    versions_dir = kagglehub_versions_dir()
    try:
        children = [p for p in versions_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    except OSError:
        return []
    return sorted(children, key=lambda p: int(p.name), reverse=True)


def search_locations() -> list[Path]:
    """The places discovery looks at after an explicit path, in order.

    When kagglehub has no downloaded version, its versions folder itself is listed, so messages can name it."""
    locations = []
    if os.environ.get("FER2013_DIR"):
        locations.append(Path(os.environ["FER2013_DIR"]).expanduser())
    locations.append(Path.cwd() / "data" / "fer2013")
    locations.extend(_kagglehub_versions() or [kagglehub_versions_dir()])
    return locations


def dataset_path(candidate: Path) -> Path | None:
    """The CSV file or layout folder `candidate` stands for, or None when it holds no data set."""
    if candidate.is_file():
        return candidate if candidate.suffix.lower() == ".csv" else None
    if not candidate.is_dir():
        return None
    if is_kaggle_root(candidate):
        return candidate
    if (candidate / CSV_NAME).is_file():
        return candidate / CSV_NAME
    try:
        children = [Path(e.path) for e in visible_entries(candidate) if e.is_dir()]
    except FerBenchError:  # an unreadable folder holds no data set we can use
        return None
    if len(children) == 1 and is_kaggle_root(children[0]):
        return candidate  # the folder loader accepts a parent of exactly one layout folder
    return None


def find_fer2013(path: Path | str | None = None) -> Path | None:
    """The FER-2013 location to load, or None when none of the search locations holds it.

    An explicit `path` is returned as it is (the loader validates it) but must exist; so must $FER2013_DIR."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise FerBenchError(f"{path}: no such file or folder (expected a FER-2013 folder or fer2013.csv)")
        return path
    env_dir = os.environ.get("FER2013_DIR")
    if env_dir:
        env_path = Path(env_dir).expanduser()
        if not env_path.exists():
            raise FerBenchError(f"FER2013_DIR={env_dir}: no such file or folder")
        return env_path
    for location in search_locations():
        found = dataset_path(location)
        if found is not None:
            return found
    return None


def describe_search() -> str:
    """Where discovery looked, for messages."""
    places = [] if os.environ.get("FER2013_DIR") else ["$FER2013_DIR (unset)"]
    return ", ".join(places + [str(p) for p in search_locations()])


def download_fer2013() -> Path:
    """Download FER-2013 (Kaggle msambare/fer2013) with kagglehub into its cache and return the folder.

    Needs the optional dependency kagglehub (pip install 'fer-bench[download]'), network access and, for Kaggle,
    usually credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)."""
    by_hand = f"download it by hand from {KAGGLE_URL}, unpack it and pass --data PATH (or set FER2013_DIR)"
    try:
        import kagglehub
    except ImportError:
        raise FerBenchError(f"kagglehub is not installed: run pip install 'fer-bench[download]', or {by_hand}") \
            from None
    try:
        downloaded = kagglehub.dataset_download(KAGGLE_DATASET)
    except Exception as exc:  # kagglehub raises many types (HTTP, auth, OS); all mean the same to the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FerBenchError(f"could not download FER-2013 from Kaggle: {reason}; {by_hand}") from exc
    downloaded = Path(downloaded)
    if dataset_path(downloaded) is None:
        raise FerBenchError(f"{downloaded}: kagglehub finished but this folder holds no train/ and test/ folders; "
                            f"{by_hand}")
    return downloaded
