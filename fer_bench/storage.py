"""The results folder: layout, atomic writes, and reading stored cells back.

    <out>/fer-bench.json                       format version, dataset name and fingerprint
    <out>/runs/<task>/<model>/seed<k>/         one finished cell (renamed into place whole, so it is complete
        manifest.json                          or absent, never half-written)
        predictions.csv                        split, image_id, label, prob_<class>... for PublicTest and PrivateTest
        params.json                            the model's parameters and what it chose on PublicTest
        timings.json                           fit/predict seconds and throughput
        maps.npz                               saliency maps, templates, HOG settings of the fitted model, for
                                               the report's saliency figures (fer_bench/cell_maps.py)
        robustness.npz                         probabilities on the corrupted PrivateTest, every corruption and
                                               severity (fer_bench/cell_robustness.py)
        model/                                 the fitted model (git-ignored; used for saliency figures)
    <out>/checkpoints/...                      in-progress CNN checkpoints (git-ignored, removed when a cell ends)

A cell's manifest records the size, sha256 and (CSV) data rows of its other stored files (RECORDED_FILES), which
read_cell verifies before reading them; a cell stored before manifests recorded them is read by its structure only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.atomic import atomic_file, atomic_write  # noqa: F401  (the results folder writes through them)
from fer_bench.errors import FerBenchError
from fer_bench.manifest import Manifest
from fer_bench.validation import check_predictions, stored_sum_tolerance

#: bumped whenever the layout or a file's schema changes incompatibly
RESULTS_FORMAT = 1
PREDICTION_SPLITS = ("PublicTest", "PrivateTest")
MANIFEST_FILE = "manifest.json"
MAPS_FILE = "maps.npz"
ROBUSTNESS_FILE = "robustness.npz"
#: the stored files of a cell whose integrity its manifest records (model/ is local and git-ignored)
RECORDED_FILES = ("predictions.csv", "params.json", "timings.json", MAPS_FILE, ROBUSTNESS_FILE)
#: the ones every cell has (a cell stored before maps.npz or robustness.npz existed lacks those)
REQUIRED_RECORDS = ("predictions.csv", "params.json", "timings.json")
#: the command that recomputes a file computed from the fitted model, where the cell's model/ is
RECOMPUTED_BY = {MAPS_FILE: "fer-bench maps --force", ROBUSTNESS_FILE: "fer-bench robustness --force"}
#: zip member timestamp of the .npz files: fixed, so rewriting the same arrays gives the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
RESULTS_ROOT = Path("results")


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


def default_results_folder(dataset_name: str | None = None, *, quick: bool = False) -> Path:
    """Where a command writes or reads when --out is not given: results/<dataset> (results/<dataset>-quick for
    --quick) for a data set; with no data set named (report, maps), the first of results/fer2013 and
    results/synthetic that is a results folder."""
    if dataset_name is not None:
        return RESULTS_ROOT / (f"{dataset_name}-quick" if quick else dataset_name)
    for name in ("fer2013", "synthetic"):
        if (RESULTS_ROOT / name / "fer-bench.json").exists():
            return RESULTS_ROOT / name
    raise FerBenchError("no results folder found (results/fer2013 or results/synthetic); "
                        "run `fer-bench run` first or pass --out")


def check_results_folder(out: Path, *, dataset: str | None = None, fingerprint: str | None = None,
                         reference: dict | None = None, create: bool = False) -> dict:
    """Refuse a results folder written by an incompatible version or for other data; create its marker if asked,
    with `reference` (DatasetReference.to_json() of the data set: how to load it again) when given."""
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
    info = {"format": RESULTS_FORMAT, "dataset": dataset, "fingerprint": fingerprint,
            **({"reference": reference} if reference is not None else {})}
    try:
        atomic_write(marker, dumps_json(info))
    except OSError as exc:
        raise FerBenchError(f"cannot write to results folder {out}: {exc.strerror or exc}") from None
    return info


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz's bytes (np.load reads it like np.savez_compressed's): one deflated .npy member per array, sorted by
    name, with fixed timestamps, so the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz (FerBenchError naming the file when it cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FerBenchError(f"cannot read {path}: {exc}") from None


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
    manifest: Manifest
    params: dict
    timings: dict
    splits: np.ndarray
    image_ids: np.ndarray
    labels: np.ndarray
    proba: np.ndarray

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def model(self) -> str:
        return self.manifest.model

    @property
    def seed(self) -> int:
        return self.manifest.seed

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.class_names)

    def split(self, name: str):
        """(image_ids, labels, proba) of one split."""
        mask = self.splits == name
        return self.image_ids[mask], self.labels[mask], self.proba[mask]

    def check_same_images(self, other: StoredCell, split: str) -> None:
        """FerBenchError unless `other` scored the same `split` images, in the same order, with the same labels:
        what every comparison of two cells' predictions (paired tests, seed ensembles, figures) relies on."""
        ids, labels, _ = self.split(split)
        other_ids, other_labels, _ = other.split(split)
        if not (np.array_equal(ids, other_ids) and np.array_equal(labels, other_labels)):
            raise FerBenchError(f"{other.path} and {self.path} hold predictions for different {split} images")


def read_predictions(pred_file: Path, class_names: list[str] | None = None):
    """(splits, image_ids, labels, proba) of a predictions.csv; `class_names`: the header it must have. Every row
    is checked by fer_bench.validation (its rules, with stored_sum_tolerance for the 6-decimal probabilities);
    a damaged file is one FerBenchError naming the file, the line and the rule."""
    try:
        with open(pred_file, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FerBenchError(f"cannot read {pred_file}: {exc}") from None
    if not rows:
        raise FerBenchError(f"{pred_file}: empty file (no header, no rows)")
    header, body = rows[0], rows[1:]
    if class_names is not None:
        expected = ["split", "image_id", "label", *[f"prob_{c}" for c in class_names]]
        if header != expected:
            raise FerBenchError(f"{pred_file}: unexpected header {header[:4]}...; expected {expected[:4]}...")
    n_classes = len(header) - 3
    if n_classes < 1 or header[:3] != ["split", "image_id", "label"]:
        raise FerBenchError(f"{pred_file}: unexpected header {header[:4]}...; expected split, image_id, label, "
                            "prob_<class>...")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise FerBenchError(f"{pred_file}: line {number} has {len(row)} fields, expected {len(header)} "
                                f"({', '.join(header[:3])} and {n_classes} probabilities)")
    try:
        proba = np.array([[float(x) for x in r[3:]] for r in body], dtype=float).reshape(len(body), n_classes)
        labels = np.array([int(r[2]) for r in body], dtype=np.int64)
    except ValueError as exc:
        raise FerBenchError(f"{pred_file}: malformed row ({exc})") from None
    splits = np.array([r[0] for r in body])
    proba = check_predictions(splits, labels, proba, n_classes, PREDICTION_SPLITS, where=str(pred_file),
                              tolerance=stored_sum_tolerance(n_classes), row_names=lambda i: f"line {i + 2}")
    # Stored at 6 decimals: renormalise so rows sum to 1 exactly as the metrics expect.
    proba = proba / proba.sum(axis=1, keepdims=True)
    return splits, np.array([r[1] for r in body]), labels, proba


def read_manifest(path: Path) -> Manifest:
    """A cell's manifest.json (`path`: the file) as a Manifest; FerBenchError when it cannot be read."""
    try:
        return Manifest.from_json(read_json(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise FerBenchError(f"{path}: not a cell manifest ({type(exc).__name__}: {exc})") from None


def manifest_json(manifest: Manifest) -> str:
    """manifest.json's text: the one way a manifest is written."""
    return dumps_json(manifest.to_json())


#: what every cell fer-bench stores records, and the report reads
STORED_FIELDS = ("dataset", "code", "machine", "finished")


def check_cell_manifest(manifest: Manifest, path: Path) -> None:
    """FerBenchError unless the manifest of the cell folder `path` names that cell (runs/<task>/<model>/seed<k>)
    and records what the report reads (STORED_FIELDS): a damaged or misplaced manifest is refused, not read."""
    where = (path.parent.parent.name, path.parent.name, path.name)
    named = (manifest.task, manifest.model, f"seed{manifest.seed}")
    if named != where:
        raise FerBenchError(f"{path / MANIFEST_FILE}: its manifest names the cell {'/'.join(named)}, not the "
                            f"folder's {'/'.join(where)}")
    missing = [name for name in STORED_FIELDS if getattr(manifest, name) is None]
    if missing:
        raise FerBenchError(f"{path / MANIFEST_FILE}: not a cell manifest (no {', '.join(missing)})")


def read_cell(path: Path, *, unchecked: Iterable[str] = ()) -> StoredCell:
    """The cell stored in the folder `path`, its files verified against the manifest's records (all but those in
    `unchecked`, files about to be rewritten) when it has them, and by their structure always; FerBenchError in
    one line naming the file and what is wrong."""
    path = Path(path)
    manifest = read_manifest(path / MANIFEST_FILE)
    check_cell_manifest(manifest, path)
    if manifest.files is not None:
        check_file_records(path, manifest.files, unchecked=unchecked)
    splits, image_ids, labels, proba = read_predictions(path / "predictions.csv", list(manifest.class_names))
    return StoredCell(
        path=path, manifest=manifest, params=read_json(path / "params.json"),
        timings=read_json(path / "timings.json"),
        splits=splits, image_ids=image_ids, labels=labels, proba=proba)


def check_cell_data(cell: StoredCell, info: dict, out: Path) -> None:
    """FerBenchError unless `cell` was computed on the data set of its results folder (`info`: fer-bench.json):
    a foreign cell would be scored and retitle the report. A manifest or folder without a fingerprint (written
    before they recorded one) is not checked."""
    dataset, fingerprint = cell.manifest.dataset, info.get("fingerprint")
    if dataset is None or not dataset.fingerprint or not fingerprint or dataset.fingerprint == fingerprint:
        return
    raise FerBenchError(f"{cell.path}: a cell of other data ({dataset.name} fingerprint {dataset.fingerprint}) "
                        f"in {out}, whose fer-bench.json says {info.get('dataset')} fingerprint {fingerprint}; "
                        "move it to a results folder of its data set or delete it")


# --- integrity records: what the manifest says each stored file is -----------------------------------------------

def csv_data_rows(content: bytes) -> int | None:
    """The data rows (records after the header) of CSV bytes; None when they are not UTF-8 CSV."""
    try:
        rows = sum(1 for _ in csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None
    return max(rows - 1, 0)


def file_record(path: Path) -> dict:
    """The record of one stored file: {"bytes", "sha256"} and, for a CSV, "rows" (data rows)."""
    path = Path(path)
    content = path.read_bytes()
    record = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    if path.suffix == ".csv":
        rows = csv_data_rows(content)
        if rows is None:
            raise FerBenchError(f"{path}: not UTF-8 CSV, its rows cannot be recorded")
        record["rows"] = rows
    return record


def file_records(cell: Path) -> dict:
    """The records of the RECORDED_FILES the cell folder `cell` holds, for its manifest's `files`."""
    return {name: file_record(Path(cell) / name) for name in RECORDED_FILES if (Path(cell) / name).is_file()}


def _record_problem(path: Path, record: dict) -> str | None:
    """What differs between the file at `path` and its record, or None."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return f"missing, the manifest records a file of {record['bytes']:,} bytes"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if "rows" in record:
        rows = csv_data_rows(content)
        if rows is None:
            return f"not UTF-8 CSV any more, the manifest records {record['rows']:,} data rows"
        if rows != record["rows"]:
            return f"{rows:,} data rows, the manifest records {record['rows']:,}"
    if len(content) != record["bytes"]:
        return f"{len(content):,} bytes, the manifest records {record['bytes']:,}"
    digest = hashlib.sha256(content).hexdigest()
    if digest != record["sha256"]:
        return f"sha256 {digest[:12]}…, the manifest records {record['sha256'][:12]}… (same size)"
    return None


def check_file_records(cell: Path, records: dict, *, unchecked: Iterable[str] = ()) -> None:
    """FerBenchError naming the first stored file of the cell folder `cell` that differs from its record in
    `records` (the manifest's `files`): missing, another size, sha256 or row count, or present but unrecorded."""
    cell, unchecked = Path(cell), set(unchecked)
    missing = [name for name in REQUIRED_RECORDS if name not in records]
    if missing:
        raise FerBenchError(f"{cell / MANIFEST_FILE}: its records name no {', '.join(missing)} (damaged manifest)")
    for name in sorted(set(records) | set(RECORDED_FILES)):
        if name in unchecked:
            continue
        path = cell / name
        repair = (f"; `{RECOMPUTED_BY[name]}` recomputes it where the cell's model/ is" if name in RECOMPUTED_BY
                  else "")
        if name not in records:
            if path.exists():
                raise FerBenchError(f"{path}: not in the manifest's records (added after the cell was stored{repair})")
            continue
        problem = _record_problem(path, records[name])
        if problem is not None:
            raise FerBenchError(f"{path}: {problem} (damaged or edited after the cell was stored{repair})")


def record_files(cell: Path, names: Iterable[str] | None = None) -> Manifest:
    """Rewrite the cell's manifest.json (atomically) with the records of `names` (default: every stored file of
    RECORDED_FILES) recomputed from the files as they are now; the new Manifest. Only `files` changes: the rest
    of the manifest keeps its text, so an older manifest is not rewritten with what its version did not record."""
    path = Path(cell) / MANIFEST_FILE
    read_manifest(path)  # a damaged manifest is refused, not extended
    info = read_json(path)
    if names is None:
        info["files"] = file_records(cell)
    else:
        info["files"] = {**info.get("files", {}), **{name: file_record(Path(cell) / name) for name in names}}
    updated = Manifest.from_json(info)
    atomic_write(path, dumps_json(info))
    return updated


def unrecorded_note(cells: Iterable[StoredCell]) -> str | None:
    """One line naming the cells (of one or more results folders) stored without integrity records, verified by
    their structure only, and how to add records; None when every cell has them."""
    by_folder: dict[Path, list[str]] = {}
    for cell in cells:
        if cell.manifest.files is None:
            folder = cell.path.parents[3]  # <out>/runs/<task>/<model>/seed<k>
            by_folder.setdefault(folder, []).append(cell.path.relative_to(folder / "runs").as_posix())
    if not by_folder:
        return None
    total = sum(len(names) for names in by_folder.values())
    listed = "; ".join(f"{folder}: {_first_names(names)}" for folder, names in by_folder.items())
    commands = " and ".join(f"`fer-bench verify --out {folder} --record`" for folder in by_folder)
    return (f"fer-bench: note: {total} cell{'s' if total != 1 else ''} stored without integrity records, checked "
            f"by their structure only ({listed}); {commands} adds them")


def _first_names(names: list[str], shown: int = 6) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def list_cells(out: Path) -> list[Path]:
    """Finished cells (those with a manifest), in sorted order."""
    runs = Path(out) / "runs"
    return sorted(p.parent for p in runs.glob("*/*/seed*/manifest.json"))


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """A cell folder written whole or not at all: the block writes into the (not yet created) staging folder it
    is given, which is renamed onto `final` when the block ends without an error. After an error the staging
    folder stays until the next attempt's fresh_staging_dir removes it; `final` is untouched."""
    staging = fresh_staging_dir(final)
    yield staging
    replace_dir(staging, final)


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
