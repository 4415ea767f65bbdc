"""manifest.json, the record of one finished cell, as a typed `Manifest`.

A cell's folder holds one; storage.read_cell reads it (storage.write_manifest writes it) through
`Manifest.from_json` and `Manifest.to_json` only, so every module reads the same fields the same way. The JSON
keys are stable across versions: version 1 (the manifests written before `version` existed, read as version 1)
and version 2 differ only in the data-set reference, which version 2 records with how to load it again
(fer_bench.data.reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from fer_bench.data.reference import DatasetReference

#: written into every new manifest; bumped when a field changes meaning
MANIFEST_VERSION = 2
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
    version: int = FIRST_VERSION
    #: keys this version does not know (written by a newer one), kept so that nothing read is lost
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, info: dict) -> Manifest:
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
