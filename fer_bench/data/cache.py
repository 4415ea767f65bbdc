"""Cache of decoded data sets, kept outside the repository.

Decoding the 35,887 FER-2013 JPEGs takes seconds; reading one .npz takes a fraction of that. The cache lives in
`$FER_BENCH_CACHE`, else `$XDG_CACHE_HOME/fer-bench`, else `~/.cache/fer-bench`. A file is keyed by a cheap
description of its source (relative paths, sizes and modification times of the files, plus the loader version and
options), so editing, adding or removing an image gives a new key. The content fingerprint is stored inside and
checked on every read: a corrupt, truncated or stale file is ignored (and rewritten by the loader).
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fer_bench.atomic import atomic_file
from fer_bench.data.dataset import Dataset

# Bump when the decoding or ordering changes, so caches written by an older loader are never read.
LOADER_VERSION = 1


def cache_dir() -> Path:
    """Where decoded data sets are cached (the folder may not exist yet)."""
    if os.environ.get("FER_BENCH_CACHE"):
        return Path(os.environ["FER_BENCH_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fer-bench"
    return Path.home() / ".cache" / "fer-bench"


def cache_key(kind: str, entries: Iterable[tuple[str, int, int]], **options) -> str:
    """A key for a source described by (relative path, size in bytes, mtime in ns) entries and loader options."""
    digest = hashlib.sha256(f"fer-bench loader v{LOADER_VERSION}\n{kind}\n".encode())
    digest.update(repr(sorted(options.items())).encode())
    digest.update("".join(f"\n{rel}\t{size}\t{mtime_ns}" for rel, size, mtime_ns in entries).encode())
    return f"{kind}-{digest.hexdigest()[:32]}"


def cache_path(key: str) -> Path:
    return cache_dir() / f"{key}.npz"


def load_cached(key: str, *, name: str, source: str) -> Dataset | None:
    """The cached Dataset for `key`, or None when there is none or it is unreadable or inconsistent."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            dataset = Dataset(name=name, images=npz["images"], labels=npz["labels"], usage=npz["usage"],
                              ids=npz["ids"], source=source)
            stored_fingerprint = str(npz["fingerprint"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    # Recomputing the fingerprint (a fraction of a second) catches a file damaged in ways the zip CRC does not.
    if dataset.fingerprint != stored_fingerprint:
        return None
    return dataset


def save_cached(key: str, dataset: Dataset) -> None:
    """Write `dataset` under `key` atomically; a failure only costs speed, so it warns instead of raising."""
    path = cache_path(key)
    try:
        with atomic_file(path) as fh:
            np.savez(fh, images=dataset.images, labels=dataset.labels, usage=dataset.usage.astype(str),
                     ids=dataset.ids.astype(str), fingerprint=np.array(dataset.fingerprint))
    except OSError as exc:
        warnings.warn(f"could not write the data cache {path}: {exc}", RuntimeWarning, stacklevel=2)
