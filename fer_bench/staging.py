"""A set of files that appears in a folder all new or all old, and the leftovers of interrupted writes.

The report's files (summary.md, index.html, summary.tex, the CSV tables, figures/) live in the results folder
itself, beside runs/, so no single rename can swap them (a symlinked report folder would change the committed
layout). `swap_in` gives them the next best thing, a journalled swap:

1. the files are written into the hidden staging folder `<out>/.report.staging/` (same filesystem), each one
   flushed to disk; nothing in `<out>` is touched yet;
2. the marker `<out>/.report.staging/.complete` (the list of files) is written: from here on the new set is the
   one, the commit point;
3. each file is renamed onto its place (`os.replace`, atomic per file), then the files the set owns but no longer
   has are removed (listed in `<out>/.report.staging/.stale`, written before the marker: the report's figures
   of a model or task no longer there), then the staging folder is removed.

A kill before the marker leaves every old file as it was; the next writer discards the staging folder (roll
back). A kill after it leaves old and new files mixed until the next writer, or the next `clear_leftovers`,
moves the remaining staged files into place (roll forward), which it does before anything else. The writer
holds an exclusive `flock` on the staging folder, so a second report waits for the first rather than mixing
with it, and a live writer's staging folder is never taken for a leftover.

`clear_leftovers` removes what interrupted writes leave in a results folder: atomic_file's `.<name>.*.tmp`
files, a cell's `.<seed>.staging` folder and storage.replace_dir's `.<seed>.old-<pid>` folders, and completes
or rolls back `.report.staging`. Those of a live process must stay, so `folder_lock` runs it only when no other
fer-bench process holds the folder (a non-blocking exclusive `flock` on the folder itself), then holds a shared
lock for the rest of the command: `run`, `report`, `maps`, `verify` and `data audit` take it; a report written
while a run goes on leaves the run's files alone.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, leftovers are cleared unconditionally
    fcntl = None

#: the report's staging folder, relative to the results folder
REPORT_STAGING = ".report.staging"
#: written into the staging folder once every staged file is on disk: the swap's commit point
COMPLETE_MARKER = ".complete"
#: the files of `out` the swap removes once the new ones are in place (written before the marker)
STALE_LIST = ".stale"
#: the files the report owns: those of them that a new report does not write are removed by its swap
REPORT_OWNED = ("figures/*.png", "robustness.csv", "robustness_per_class.csv")
#: atomic_file's temporary files (".<name>.<random>.tmp")
TMP_FILE = re.compile(r"^\..+\.tmp$")
#: a cell's staging folder (storage.fresh_staging_dir) and replace_dir's folder moved aside
CELL_LEFTOVER_DIR = re.compile(r"^\..+\.(staging|old-\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())


def _complete_swap(staging: Path, out: Path, *, keep_folder: bool = False) -> bool:
    """Move what `staging` holds onto `out` when its marker says it was complete (roll forward), else drop it
    (roll back); then remove the folder (empty it when `keep_folder`). True when files were moved."""
    marker = staging / COMPLETE_MARKER
    moved = False
    if marker.is_file():
        names = [name for name in marker.read_text(encoding="utf-8").splitlines() if name]
        for name in names:
            source = staging / name
            if source.is_file():  # already moved by the interrupted swap otherwise
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, out / name)
                moved = True
        stale = staging / STALE_LIST
        stale_names = stale.read_text(encoding="utf-8").splitlines() if stale.is_file() else []
        for name in filter(None, stale_names):
            (out / name).unlink(missing_ok=True)
        for folder in {(out / name).parent for name in [*names, *filter(None, stale_names)]}:
            _fsync_dir(folder)
    if keep_folder:
        for child in staging.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    else:
        shutil.rmtree(staging)
    return moved


@contextmanager
def _locked_staging(staging: Path, *, create: bool, wait: bool) -> Iterator[bool]:
    """An exclusive flock on the folder `staging` (created when `create`); yields False when it does not exist
    (or, without `wait`, another process holds it). Retries when the folder it locked was removed meanwhile."""
    while True:
        if create:
            staging.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(staging, os.O_RDONLY)
        except FileNotFoundError:
            if create:
                continue
            yield False
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(staging))
            except FileNotFoundError:
                same = False
            if same:
                yield True
                return
            if not create:
                yield False
                return
        finally:
            os.close(fd)  # releases the lock


def recover_swap(out: Path) -> bool:
    """Complete (marker written) or roll back (no marker) the swap of a report that was killed; nothing when a
    live process is writing it. True when it moved files into place."""
    staging = Path(out) / REPORT_STAGING
    with _locked_staging(staging, create=False, wait=False) as locked:
        return _complete_swap(staging, Path(out)) if locked else False


def swap_in(out: Path, files: Mapping[str, str | bytes], *, staging_name: str = REPORT_STAGING,
            owned: Iterable[str] = (), keep: Iterable[str] = ()) -> None:
    """Write `files` (path relative to `out` -> text or bytes) into `out` as one set (see the module's doc); the
    files of `out` matching a pattern of `owned` (relative glob patterns, e.g. "figures/*.png") that are neither
    in `files` nor in `keep` are removed with the swap, so that `out` holds exactly the new set of them."""
    out = Path(out)
    staging = out / staging_name
    with _locked_staging(staging, create=True, wait=True):
        if any(staging.iterdir()):  # a dead writer's: finish or drop its swap first
            _complete_swap(staging, out, keep_folder=True)
        committed = False
        try:
            names = sorted(files)
            for name in names:
                content = files[name]
                _write_synced(staging / name, content.encode("utf-8") if isinstance(content, str) else content)
            stale = sorted({path.relative_to(out).as_posix() for pattern in owned for path in out.glob(pattern)
                            if path.is_file()} - set(names) - set(keep))
            _write_synced(staging / STALE_LIST, "".join(f"{name}\n" for name in stale).encode("utf-8"))
            _write_synced(staging / COMPLETE_MARKER, "".join(f"{name}\n" for name in names).encode("utf-8"))
            _fsync_dir(staging)
            committed = True
            _complete_swap(staging, out)
        except BaseException:
            if not committed:
                shutil.rmtree(staging, ignore_errors=True)  # roll back: the old files were never touched
            raise


@contextmanager
def folder_lock(out: Path) -> Iterator[bool]:
    """For a command writing the results folder `out`: when no other fer-bench process holds it, clear the
    leftovers of interrupted writes (clear_leftovers); then hold a shared lock on it until the block ends, so
    that another command does not take this one's files for leftovers. Yields whether it cleared."""
    out = Path(out)
    if fcntl is None or not out.is_dir():
        yield False
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        if alone:
            clear_leftovers(out)
        fcntl.flock(fd, fcntl.LOCK_SH)  # a downgrade when alone; waits for another's clearing otherwise
        yield alone
    finally:
        os.close(fd)


def clear_leftovers(out: Path) -> list[Path]:
    """Remove what interrupted writes left under `out` (see the module's doc); the paths removed. Call it only
    when no other process writes `out` (folder_lock)."""
    out = Path(out)
    removed = []
    if (out / REPORT_STAGING).exists():
        recover_swap(out)
        removed.append(out / REPORT_STAGING)
    for root, dirs, names in os.walk(out):
        here = Path(root)
        for name in list(dirs):
            if name == ".git":
                dirs.remove(name)
            elif CELL_LEFTOVER_DIR.match(name) and not (here == out and name == REPORT_STAGING):
                shutil.rmtree(here / name, ignore_errors=True)
                removed.append(here / name)
                dirs.remove(name)
        for name in names:
            if TMP_FILE.match(name):
                (here / name).unlink(missing_ok=True)
                removed.append(here / name)
    return removed
