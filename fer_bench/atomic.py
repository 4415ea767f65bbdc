"""Atomic file writes: a reader sees the old file or the whole new one, never a part. The lowest layer of the
results folder (fer_bench.storage) and of the data cache (fer_bench.data), which both write through it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask_mode() -> int:
    """Permissions a plain open() would give (mkstemp's temporary files are owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_file(path: Path):
    """A binary file handle on a temporary file beside `path`, renamed onto `path` when the block ends without
    an error (after fsync), deleted otherwise: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write text (UTF-8, newlines as given) or bytes to `path` atomically (see atomic_file)."""
    with atomic_file(path) as fh:
        fh.write(content.encode("utf-8") if isinstance(content, str) else content)
