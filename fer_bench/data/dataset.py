"""The in-memory Dataset every loader returns, and the check every model applies to the images it is given."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from fer_bench import CLASS_NAMES, IMAGE_SIZE, USAGES


@dataclass(frozen=True)
class SyntheticRecipe:
    """The arguments of fer_bench.data.synthetic.make_synthetic that made a data set: enough to make it again,
    pixel for pixel, on any machine."""

    seed: int = 0
    n_train: int = 2800
    n_public: int = 700
    n_private: int = 700
    artifacts: bool = True


@dataclass(frozen=True)
class Dataset:
    """FER-2013-shaped data: uint8 images (N, 48, 48), canonical labels 0..6, a usage and an id per image.

    `name` is "fer2013" for the real data and "synthetic" for the built-in generator, and travels into every
    output so synthetic results are never mistaken for FER-2013 ones.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    ids: np.ndarray
    source: str = ""
    #: how the built-in generator made it (None: loaded from files)
    synthetic: SyntheticRecipe | None = None
    _fingerprint: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self):
        n = len(self.images)
        if self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, 48, 48), got {self.images.dtype} {self.images.shape}")
        for name in ("labels", "usage", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of pixels, labels and usage: the same images give the same
        fingerprint whichever format (folders or CSV) they were loaded from. Ids are not part of it."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.images).tobytes())
            h.update(np.asarray(self.labels, dtype=np.int64).tobytes())
            h.update("\n".join(map(str, self.usage)).encode())
            self._fingerprint.append(h.hexdigest()[:16])
        return self._fingerprint[0]

    def split(self, usage: str) -> Dataset:
        """The images of one usage (Training, PublicTest or PrivateTest), as a Dataset."""
        if usage not in USAGES:
            raise ValueError(f"unknown usage {usage!r}; expected one of {USAGES}")
        mask = self.usage == usage
        return self.subset(mask)

    def subset(self, index) -> Dataset:
        return Dataset(
            name=self.name,
            images=self.images[index],
            labels=self.labels[index],
            usage=self.usage[index],
            ids=self.ids[index],
            source=self.source,
            synthetic=self.synthetic,
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Per usage, per class name: number of images (classes in canonical order)."""
        out = {}
        for usage in USAGES:
            labels = self.labels[self.usage == usage]
            out[usage] = {c: int((labels == i).sum()) for i, c in enumerate(CLASS_NAMES)}
        return out


def check_images(X) -> np.ndarray:
    """Validate model input: uint8-compatible array of shape (N, 48, 48)."""
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[1:] != (48, 48):
        raise ValueError(f"expected images of shape (N, 48, 48), got {X.shape}")
    return X
