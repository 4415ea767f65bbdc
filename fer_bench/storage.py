"""The results folder: layout, atomic writes, and reading stored cells back.

    <out>/fer-bench.json                       format version, dataset name and fingerprint
    <out>/runs/<task>/<model>/seed<k>/         one finished cell (renamed into place whole, so it is complete
        manifest.json                          or absent, never half-written)
        predictions.csv                        split, image_id, label, prob_<class>... for PublicTest and PrivateTest
        params.json                            the model's parameters and what it chose on PublicTest
        timings.json                           fit/predict seconds and throughput
        maps.npz                               saliency maps, templates, HOG settings of the fitted model, for
                                               the report's saliency figures (fer_bench/cell_maps.py)
        model/                                 the fitted model (git-ignored; used for saliency figures)
    <out>/checkpoints/...                      in-progress CNN checkpoints (git-ignored, removed when a cell ends)
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.errors import FerBenchError

#: bumped whenever the layout or a file's schema changes incompatibly
RESULTS_FORMAT = 1
PREDICTION_SPLITS = ("PublicTest", "PrivateTest")


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


def dumps_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FerBenchError(f"cannot read {path}: {exc}") from None


def cell_dir(out: Path, task: str, model: str, seed: int) -> Path:
    return Path(out) / "runs" / task / model / f"seed{seed}"


def check_results_folder(out: Path, *, dataset: str | None = None, fingerprint: str | None = None,
                         create: bool = False) -> dict:
    """Refuse a results folder written by an incompatible version or for other data; create its marker if asked."""
    out = Path(out)
    marker = out / "fer-bench.json"
    if marker.exists():
        info = read_json(marker)
        if info.get("format") != RESULTS_FORMAT:
            raise FerBenchError(f"{out} was written by an incompatible fer-bench (results format "
                                f"{info.get('format')!r}, this version reads {RESULTS_FORMAT}); use another --out")
        if fingerprint and info.get("fingerprint") != fingerprint:
            raise FerBenchError(f"{out} holds results for other data ({info.get('dataset')} fingerprint "
                                f"{info.get('fingerprint')}, not {dataset} {fingerprint}); use another --out")
        return info
    if (out / "runs").exists() and not create:
        raise FerBenchError(f"{out} has runs/ but no fer-bench.json: not a fer-bench results folder")
    if not create:
        raise FerBenchError(f"{out} is not a fer-bench results folder (no fer-bench.json); run `fer-bench run` first")
    info = {"format": RESULTS_FORMAT, "dataset": dataset, "fingerprint": fingerprint}
    try:
        atomic_write(marker, dumps_json(info))
    except OSError as exc:
        raise FerBenchError(f"cannot write to results folder {out}: {exc.strerror or exc}") from None
    return info


def predictions_csv(split_names, image_ids, labels, proba, class_names) -> str:
    """Predictions as CSV text with probabilities at fixed precision (byte-stable across runs)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "image_id", "label", *[f"prob_{c}" for c in class_names]])
    for split, image_id, label, row in zip(split_names, image_ids, labels, proba, strict=True):
        writer.writerow([split, image_id, int(label), *(f"{p:.6f}" for p in row)])
    return buf.getvalue()


@dataclass
class StoredCell:
    """A finished cell read back from disk."""

    path: Path
    manifest: dict
    params: dict
    timings: dict
    splits: np.ndarray
    image_ids: np.ndarray
    labels: np.ndarray
    proba: np.ndarray

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    def split(self, name: str):
        """(image_ids, labels, proba) of one split."""
        mask = self.splits == name
        return self.image_ids[mask], self.labels[mask], self.proba[mask]


def read_predictions(pred_file: Path, class_names: list[str] | None = None):
    """(splits, image_ids, labels, proba) of a predictions.csv; `class_names`: the header it must have."""
    try:
        with open(pred_file, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise FerBenchError(f"cannot read {pred_file}: {exc}") from None
    header, body = rows[0], rows[1:]
    if class_names is not None:
        expected = ["split", "image_id", "label", *[f"prob_{c}" for c in class_names]]
        if header != expected:
            raise FerBenchError(f"{pred_file}: unexpected header {header[:4]}...; expected {expected[:4]}...")
    try:
        proba = np.array([[float(x) for x in r[3:]] for r in body], dtype=float).reshape(len(body), -1)
        labels = np.array([int(r[2]) for r in body], dtype=np.int64)
    except ValueError as exc:
        raise FerBenchError(f"{pred_file}: malformed row ({exc})") from None
    # Stored at 6 decimals: renormalise so rows sum to 1 exactly as the metrics expect.
    proba = proba / proba.sum(axis=1, keepdims=True)
    return np.array([r[0] for r in body]), np.array([r[1] for r in body]), labels, proba


def read_cell(path: Path) -> StoredCell:
    path = Path(path)
    manifest = read_json(path / "manifest.json")
    splits, image_ids, labels, proba = read_predictions(path / "predictions.csv", manifest["class_names"])
    return StoredCell(
        path=path, manifest=manifest, params=read_json(path / "params.json"),
        timings=read_json(path / "timings.json"),
        splits=splits, image_ids=image_ids, labels=labels, proba=proba)


def list_cells(out: Path) -> list[Path]:
    """Finished cells (those with a manifest), in sorted order."""
    runs = Path(out) / "runs"
    return sorted(p.parent for p in runs.glob("*/*/seed*/manifest.json"))


def fresh_staging_dir(final: Path) -> Path:
    """The hidden sibling `.<name>.staging` a cell is written into before replace_dir moves it onto `final`;
    whatever an interrupted earlier attempt left there is removed first."""
    staging = final.with_name(f".{final.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def replace_dir(staging: Path, final: Path) -> None:
    """Move a fully written staging directory into place (an existing one is moved aside, then deleted)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)
