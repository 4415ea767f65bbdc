"""Which data set a results folder or a cell was computed on, and loading it again from that reference alone.

A `DatasetReference` (name, fingerprint, source, how to load or rebuild it) is written into every cell's
manifest and the results folder's fer-bench.json, travels to the workers that compute cells, and is the one
thing `load_reference` needs: workers, `fer-bench maps` and the report's image figures all load a data set
through it, with the same rules and the same fingerprint check.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fer_bench.data.dataset import Dataset, SyntheticRecipe
from fer_bench.errors import FerBenchError

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class DatasetReference:
    """A data set by what identifies it (`fingerprint`: its pixels, labels and usage) and how to load it again:
    FER-2013 from `source` (a folder or CSV path, with `rgb_to_gray` as it was loaded), the synthetic data by
    the generator's arguments (`synthetic`)."""

    name: str
    fingerprint: str
    source: str
    rgb_to_gray: bool = False
    synthetic: SyntheticRecipe | None = None

    @classmethod
    def of(cls, dataset: Dataset, *, rgb_to_gray: bool = False) -> DatasetReference:
        recipe = dataset.synthetic
        if recipe is None and dataset.name == SYNTHETIC:
            recipe = SyntheticRecipe()  # a synthetic Dataset built by hand: the default generator's, checked on load
        return cls(dataset.name, dataset.fingerprint, dataset.source, rgb_to_gray, recipe)

    def to_json(self) -> dict:
        """The manifest's "dataset" object: name, fingerprint and source as always, plus how to load it again."""
        info = {"name": self.name, "fingerprint": self.fingerprint, "source": self.source,
                "rgb_to_gray": self.rgb_to_gray}
        if self.synthetic is not None:
            info["synthetic"] = asdict(self.synthetic)
        return info

    @classmethod
    def from_json(cls, info: dict) -> DatasetReference:
        """Also reads the older shape {name, fingerprint, source}: its synthetic data is the default generator's
        (what every cell of that shape was computed on; the fingerprint check on loading says otherwise)."""
        name = info.get("name") or ""
        recipe = info.get("synthetic")
        if recipe is not None:
            recipe = SyntheticRecipe(**recipe)
        elif name == SYNTHETIC:
            recipe = SyntheticRecipe()
        return cls(name, info.get("fingerprint") or "", info.get("source") or "", bool(info.get("rgb_to_gray")),
                   recipe)

    @property
    def is_synthetic(self) -> bool:
        return self.name == SYNTHETIC


def load_reference(reference: DatasetReference, *, worker: str | None = None) -> Dataset:
    """The data set `reference` names: the synthetic data rebuilt from its recipe (identical everywhere), or
    FER-2013 from its source; on a `worker` (the name said in errors) from that machine's $FER2013_DIR when set.
    FerBenchError, in one line, when it cannot be loaded or its fingerprint is not the reference's."""
    where = f"worker {worker}: " if worker else ""
    if reference.is_synthetic:
        from fer_bench.data.synthetic import make_synthetic

        recipe = reference.synthetic or SyntheticRecipe()
        dataset = make_synthetic(recipe.n_train, recipe.n_public, recipe.n_private, recipe.seed,
                                 artifacts=recipe.artifacts)
    else:
        from fer_bench.data import load_path

        path = (os.environ.get("FER2013_DIR") if worker else None) or reference.source
        if not path or not Path(path).exists():
            raise FerBenchError(f"{where}the data set {path or '(no source recorded)'} is not found")
        try:
            dataset = load_path(path, rgb_to_gray=reference.rgb_to_gray)
        except OSError as exc:
            raise FerBenchError(f"{where}cannot load the data set {path}: {exc}") from None
    if dataset.fingerprint != reference.fingerprint:
        expected = (f"the client's has {reference.fingerprint}; point FER2013_DIR on that worker at the same "
                    "FER-2013 copy" if worker else f"the results were computed on {reference.fingerprint}")
        whose = "its" if worker else "the"
        raise FerBenchError(f"{where}{whose} data set {dataset.source} has fingerprint {dataset.fingerprint}, "
                            f"{expected}")
    return dataset


def loaded_or_reloaded(dataset: Dataset | None, reference: DatasetReference) -> Dataset:
    """`dataset` when it is the one `reference` names (no second load), else load_reference(reference)."""
    if dataset is not None and dataset.fingerprint == reference.fingerprint:
        return dataset
    return load_reference(reference)
