"""Tasks: which FER-2013 labels a model must tell apart, and how the training set is balanced.

A task maps the 7 canonical labels to its own classes (labels it does not use are dropped) and names a
default balancing strategy. Balancing only ever touches the training data; PublicTest and PrivateTest are
evaluated exactly as they are. `prepare_task_data` gives a task's view of a data set: what a cell fits and
predicts.

Register your own task::

    from fer_bench.tasks import Task, register_task
    register_task(Task("happy_vs_sad", class_names=("happy", "sad"),
                       source_labels=((3,), (4,)), balancing="undersample"))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from fer_bench import CLASS_NAMES
from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError
from fer_bench.storage import PREDICTION_SPLITS

BALANCING_STRATEGIES = ("none", "class_weight", "undersample", "oversample")


@dataclass(frozen=True)
class Task:
    """name; class_names[k] is made of the canonical labels source_labels[k]; balancing is the default."""

    name: str
    class_names: tuple[str, ...]
    source_labels: tuple[tuple[int, ...], ...]
    balancing: str = "class_weight"
    description: str = ""

    def __post_init__(self):
        if len(self.class_names) != len(self.source_labels):
            raise ValueError(f"task {self.name}: {len(self.class_names)} names for {len(self.source_labels)} groups")
        used = [lab for group in self.source_labels for lab in group]
        if len(used) != len(set(used)) or not set(used) <= set(range(len(CLASS_NAMES))):
            raise ValueError(f"task {self.name}: each canonical label 0..6 may appear in at most one class")
        if self.balancing not in BALANCING_STRATEGIES:
            raise ValueError(f"task {self.name}: unknown balancing {self.balancing!r}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def label_map(self) -> np.ndarray:
        """Array of length 7: canonical label -> task label, or -1 where the task drops the label."""
        mapping = np.full(len(CLASS_NAMES), -1, dtype=np.int64)
        for task_label, group in enumerate(self.source_labels):
            mapping[list(group)] = task_label
        return mapping

    def select(self, images: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None):
        """Keep the images whose label the task uses, relabelled to 0..n_classes-1.

        Returns (images, task_labels, ids) (ids is None when not given)."""
        mapped = self.label_map()[np.asarray(labels)]
        keep = mapped >= 0
        return images[keep], mapped[keep], (None if ids is None else np.asarray(ids)[keep])


_TASKS: dict[str, Task] = {}


def register_task(task: Task, *, overwrite: bool = False) -> Task:
    if task.name in _TASKS and not overwrite:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise FerBenchError(f"unknown task {name!r}; available: {', '.join(_TASKS)}") from None


def available_tasks() -> list[str]:
    return list(_TASKS)


register_task(Task(
    "7class", class_names=CLASS_NAMES, source_labels=tuple((i,) for i in range(7)),
    balancing="class_weight", description="all seven FER-2013 expressions",
))
register_task(Task(
    "5class", class_names=("angry", "fear", "happy", "sad", "surprise"),
    source_labels=((0,), (2,), (3,), (4,), (5,)),
    balancing="class_weight", description="without disgust and neutral",
))
register_task(Task(
    "binary", class_names=("negative", "positive"),
    source_labels=((0, 4, 2, 1), (3, 5)),
    balancing="undersample",
    description="positive = happy + surprise; negative = angry + sad + fear + disgust; neutral excluded",
))


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's 'balanced' class weights n / (k * count_c) over the k present classes; absent classes get 0."""
    weights = np.zeros(n_classes)
    present = np.unique(labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def balance(images: np.ndarray, labels: np.ndarray, strategy: str, *, n_classes: int, seed: int = 0):
    """Apply a balancing strategy to a training set.

    Returns (images, labels, sample_weight); sample_weight is None except for "class_weight", where it holds
    each image's class weight so every model can take it through fit(..., sample_weight=...).
    Resampling is seeded and keeps the original order of the images it keeps (undersample) or appends the
    duplicates after the originals (oversample).
    """
    if strategy not in BALANCING_STRATEGIES:
        raise FerBenchError(f"unknown balancing {strategy!r}; available: {', '.join(BALANCING_STRATEGIES)}")
    labels = np.asarray(labels)
    if strategy == "none":
        return images, labels, None
    if strategy == "class_weight":
        return images, labels, class_weights(labels, n_classes)[labels]
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=n_classes)
    present = np.flatnonzero(counts)
    if strategy == "undersample":
        target = counts[present].min()
        keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), target, replace=False) for c in present])
        keep.sort()
        return images[keep], labels[keep], None
    target = counts[present].max()  # oversample
    extra = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), target - counts[c], replace=True) for c in present
    ]).astype(np.int64)
    index = np.concatenate([np.arange(len(labels)), extra])
    return images[index], labels[index], None


@dataclass
class TaskData:
    """A task's view of the data set: balanced training set and the untouched test splits."""

    task: Task
    X_train: np.ndarray
    y_train: np.ndarray
    sample_weight: np.ndarray | None
    n_train_before_balancing: int
    train_class_counts: list[int]  # before balancing; the report's majority-class floor uses it
    tests: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # split -> (images, labels, ids)


def prepare_task_data(dataset: Dataset, task: Task, *, seed: int, balancing: str | None = None) -> TaskData:
    train = dataset.split("Training")
    X, y, _ = task.select(train.images, train.labels, train.ids)
    if len(X) == 0:
        raise FerBenchError(f"task {task.name}: no Training images with its labels in {dataset.source}")
    X_bal, y_bal, weights = balance(X, y, balancing or task.balancing, n_classes=task.n_classes, seed=seed)
    tests = {}
    for split in PREDICTION_SPLITS:
        part = dataset.split(split)
        tests[split] = task.select(part.images, part.labels, part.ids)
        if len(tests[split][0]) == 0:
            raise FerBenchError(f"task {task.name}: no {split} images with its labels in {dataset.source}")
    counts = np.bincount(y, minlength=task.n_classes).tolist()
    return TaskData(task, X_bal, y_bal, weights, len(X), counts, tests)
