"""manifest.json, the record of one finished cell, as a typed `Manifest`.

A cell's folder holds one; storage.read_cell reads it (storage.write_manifest writes it) through
`Manifest.from_json` and `Manifest.to_json` only, so every module reads the same fields the same way. The JSON
keys are stable across versions: version 1 (the manifests written before `version` existed, read as version 1)
and version 2 differ only in the data-set reference, which version 2 records with how to load it again
(fer_bench.data.reference). Version 3 adds `files`, the integrity records of the cell's stored files (size,
sha256 and, for a CSV, data rows; fer_bench.storage writes and verifies them), which every version-3 manifest
has. `fer-bench verify --record` adds records to an older manifest and leaves its version as it was: the version
says how the cell was written, `files` whether it can be verified byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

from fer_bench.data.reference import DatasetReference

#: written into every new manifest; bumped when a field changes meaning or is added
MANIFEST_VERSION = 3
#: the first version whose manifests always record their files (`files`)
RECORDS_VERSION = 3
#: what a manifest without a version was written as
FIRST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """One cell: what was computed (task, model, seed, quick), on which data and training set, by which command,
    when, with which code, packages, machine and threads, and where (execution: executor and worker)."""

    task: str
    model: str
    seed: int
    class_names: tuple[str, ...]
    dataset: DatasetReference | None = None
    quick: bool = False
    balancing: str | None = None
    n_train_before_balancing: int | None = None
    n_train: int | None = None
    #: Training images per class before balancing (the report's majority-class floor)
    train_class_counts: tuple[int, ...] | None = None
    command: str = ""
    started: str | None = None
    finished: str | None = None
    code: dict | None = None  # {"commit", "dirty"}
    packages: dict | None = None
    machine: dict | None = None
    threads: dict | None = None  # the thread variables as the cell saw them
    execution: dict | None = None  # {"executor", "worker", "threads"}; absent for older cells
    #: stored file name -> {"bytes", "sha256", "rows" (CSV data rows)}; None: a cell stored without records
    files: dict | None = None
    version: int = FIRST_VERSION
    #: keys this version does not know (written by a newer one), kept so that nothing read is lost
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, info: dict) -> Manifest:
        """The Manifest of a manifest.json object; ValueError or TypeError naming the field when a field has
        the wrong type (a damaged file), so that no reader fails later on it."""
        if not isinstance(info, dict):
            raise TypeError(f"a JSON object expected, got {type(info).__name__}")
        check_fields(info)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: value for key, value in info.items() if key in known}
        values["seed"] = int(values["seed"])
        values["class_names"] = tuple(values["class_names"])
        if values.get("dataset") is not None:
            values["dataset"] = DatasetReference.from_json(values["dataset"])
        if values.get("train_class_counts") is not None:
            values["train_class_counts"] = tuple(values["train_class_counts"])
        values.setdefault("version", FIRST_VERSION)
        return cls(**values, extra={key: value for key, value in info.items() if key not in known})

    def to_json(self) -> dict:
        """The manifest.json object (optional fields left out when unknown, as older cells have them)."""
        info = {**self.extra}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            if isinstance(value, DatasetReference):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            info[f.name] = value
        return info


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _check_time(value) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


#: field -> (what it must be, test); a field absent or null is not checked here (older cells lack some)
_RULES = {
    "task": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "model": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "seed": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "class_names": ("a list of two or more distinct non-empty strings",
                    lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(c, str) and c for c in v)
                    and len(set(v)) == len(v)),
    "dataset": ("an object of strings (name, fingerprint, source), rgb_to_gray and synthetic",
                lambda v: isinstance(v, dict) and all(isinstance(v.get(k, ""), str | type(None))
                                                      for k in ("name", "fingerprint", "source"))
                and isinstance(v.get("rgb_to_gray", False), bool | type(None))
                and _synthetic_ok(v.get("synthetic"))),
    "quick": ("true or false", lambda v: isinstance(v, bool)),
    "balancing": ("a string", lambda v: isinstance(v, str)),
    "n_train_before_balancing": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "n_train": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "train_class_counts": ("a list of integers >= 0",
                           lambda v: isinstance(v, list) and all(_is_int(c) and c >= 0 for c in v)),
    "command": ("a string", lambda v: isinstance(v, str)),
    "started": ("an ISO 8601 time", _check_time),
    "finished": ("an ISO 8601 time", _check_time),
    "code": ("an object with a string commit", lambda v: isinstance(v, dict) and isinstance(v.get("commit"), str)
             and all(_is_scalar(x) for x in v.values())),
    "packages": ("an object of versions", lambda v: isinstance(v, dict) and all(_is_scalar(x) for x in v.values())),
    "machine": ("an object of strings and numbers (cpu_features: a list of strings)",
                lambda v: isinstance(v, dict) and all(_is_scalar(x) for k, x in v.items() if k != "cpu_features")
                and (v.get("cpu_features") is None or isinstance(v["cpu_features"], list)
                     and all(isinstance(f, str) for f in v["cpu_features"]))),
    "threads": ("an object of thread settings", lambda v: isinstance(v, dict)
                and all(_is_scalar(x) for x in v.values())),
    "execution": ("an object", lambda v: isinstance(v, dict) and all(_is_scalar(x) for x in v.values())),
    "version": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "files": ("an object of file records {bytes, sha256, rows (CSV only)}",
              lambda v: isinstance(v, dict) and all(isinstance(name, str) and _record_ok(name, record)
                                                    for name, record in v.items())),
}
#: the fields every stored cell has, which the report reads
REQUIRED = ("task", "model", "seed", "class_names")


def _synthetic_ok(recipe) -> bool:
    if recipe is None:
        return True
    if not isinstance(recipe, dict):
        return False
    from fer_bench.data.dataset import SyntheticRecipe

    defaults = {f.name: f.default for f in fields(SyntheticRecipe)}
    return set(recipe) <= set(defaults) and all(
        isinstance(value, type(defaults[key])) and (isinstance(value, bool) == isinstance(defaults[key], bool))
        and (not _is_int(value) or value >= 0) for key, value in recipe.items())


def _record_ok(name: str, record) -> bool:
    """One file record: bytes (an integer >= 0), sha256 (64 lowercase hex digits) and, for a CSV only, rows (an
    integer >= 0)."""
    if not isinstance(record, dict) or name in ("", ".", "..") or "/" in name or "\\" in name:
        return False  # a plain file name of the cell folder
    expected = {"bytes", "sha256", "rows"} if name.endswith(".csv") else {"bytes", "sha256"}
    sha = record.get("sha256")
    return (set(record) == expected and _is_int(record["bytes"]) and record["bytes"] >= 0
            and isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
            and (not name.endswith(".csv") or _is_int(record["rows"]) and record["rows"] >= 0))


def check_fields(info: dict) -> None:
    """ValueError naming the first field of a manifest.json object that is missing (REQUIRED) or of the wrong
    type."""
    for key in REQUIRED:
        if info.get(key) is None:
            raise ValueError(f"no {key!r}")
    for key, (what, test) in _RULES.items():
        if info.get(key) is not None and not test(info[key]):
            raise ValueError(f"{key!r} must be {what}, got {info[key]!r:.60}")
    if info.get("files") is None and (info.get("version") or FIRST_VERSION) >= RECORDS_VERSION:
        raise ValueError(f"no 'files' (a version {info['version']} manifest records its files)")
    counts, names = info.get("train_class_counts"), info["class_names"]
    if counts is not None and len(counts) != len(names):
        raise ValueError(f"'train_class_counts' has {len(counts)} counts for {len(names)} classes")
