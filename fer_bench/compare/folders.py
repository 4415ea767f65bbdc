"""Computing a comparison of two results folders (`compare_folders` -> `Comparison`); what it holds and how
each number is made is described in fer_bench.compare."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.metrics import brief_metrics, format_number, mcnemar_exact
from fer_bench.report.inputs import cell_provenance, load_cells
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell, check_results_folder, list_cells, unrecorded_note

#: an accuracy difference is significant (flagged, counted, able to fail --fail-if-worse) below this p
SIGNIFICANCE_LEVEL = 0.05
#: the metrics of the per-task tables (text, markdown, HTML); CSV and JSON hold every brief metric
TABLE_METRICS = ("accuracy", "f1_macro")


@dataclass(frozen=True)
class Timing:
    """A cell timing (a key of timings.json), printed with `decimals`, never in percent."""

    name: str
    label: str
    higher_is_better: bool
    decimals: int = 1

    def format(self, value) -> str:
        return format_number(value, percent=False, decimals=self.decimals)


TIMINGS: tuple[Timing, ...] = (
    Timing("fit_seconds", "fit time (s)", higher_is_better=False),
    Timing("predict_images_per_s", "inference images/s", higher_is_better=True),
)


# --- what is compared --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One compared folder: where it is, which data, and where its cells come from (their manifests)."""

    name: str  # "A" or "B"
    path: Path
    info: dict  # fer-bench.json
    commits: list[tuple[str, bool]]  # (commit prefix, uncommitted changes)
    machines: list[str]
    finished: tuple[str, str]  # first and last cell's `finished`

    @property
    def dataset(self) -> str:
        return str(self.info.get("dataset"))

    @property
    def fingerprint(self) -> str:
        return str(self.info.get("fingerprint"))


@dataclass(frozen=True)
class PairedTest:
    """The exact McNemar test on the images both folders predicted (seed majority per folder)."""

    n_images: int
    a_right_b_wrong: int
    a_wrong_b_right: int
    p_value: float  # NaN without paired images


@dataclass(frozen=True)
class ModelComparison:
    """One (task, model) present in both folders: seed means of the brief metrics and timings, and the test."""

    task: str
    model: str
    seeds_a: int
    seeds_b: int
    metrics_a: dict[str, float]
    metrics_b: dict[str, float]
    timings_a: dict[str, float | None]
    timings_b: dict[str, float | None]
    test: PairedTest

    @property
    def name(self) -> str:
        return f"{self.task} / {self.model}"

    def difference(self, metric: str) -> float:
        return self.metrics_b[metric] - self.metrics_a[metric]

    @property
    def accuracy_points(self) -> float:
        """B's accuracy minus A's, in percentage points."""
        return 100 * self.difference("accuracy")

    @property
    def significant(self) -> bool:
        return self.test.n_images > 0 and self.test.p_value < SIGNIFICANCE_LEVEL

    @property
    def flag(self) -> str:
        """"better" or "worse" (B against A) when the accuracy difference is significant, else ""."""
        if not self.significant:
            return ""
        if self.accuracy_points == 0:  # the seed majorities differ, the seed means do not
            return "differs"
        return "better" if self.accuracy_points > 0 else "worse"


@dataclass
class Comparison:
    a: Side
    b: Side
    settings: Settings
    models: list[ModelComparison] = field(default_factory=list)
    only_a: list[tuple[str, str]] = field(default_factory=list)
    only_b: list[tuple[str, str]] = field(default_factory=list)
    #: one line naming the cells of A and B stored without integrity records (storage.unrecorded_note), or None
    unrecorded_note: str | None = None

    @property
    def split(self) -> str:
        return self.settings.headline_split

    @property
    def same_data(self) -> bool:
        return self.a.info.get("fingerprint") == self.b.info.get("fingerprint")

    @property
    def same_machine(self) -> bool:
        """Every cell of both folders ran on one machine: their timings can be compared."""
        return len(set(self.a.machines) | set(self.b.machines)) == 1

    @property
    def significant(self) -> list[ModelComparison]:
        return [m for m in self.models if m.significant]

    def worse_by_more_than(self, points: float) -> list[ModelComparison]:
        """What --fail-if-worse `points` fails on: significantly less accurate in B by more than `points`."""
        return [m for m in self.significant if -m.accuracy_points > points]


# --- computing ---------------------------------------------------------------------------------------------------

def _check_folder(folder: Path, name: str) -> None:
    if not folder.exists():
        raise FerBenchError(f"compare: {name} folder {folder} does not exist")
    if not folder.is_dir():
        raise FerBenchError(f"compare: {name} = {folder} is not a folder")
    check_results_folder(folder)
    if not list_cells(folder):
        raise FerBenchError(f"compare: {folder} holds no finished cells under {folder / 'runs'}")


def _side(name: str, folder: Path, cells: list[StoredCell]) -> Side:
    facts = cell_provenance(cells)
    return Side(name=name, path=folder, info=check_results_folder(folder), commits=facts["commits"],
                machines=facts["machines"], finished=facts["finished"])


def different_data_message(c: Comparison) -> str:
    return (f"{c.a.path} and {c.b.path} hold results for different data ({c.a.dataset} fingerprint "
            f"{c.a.fingerprint} vs {c.b.dataset} fingerprint {c.b.fingerprint})")


def _by_model(cells: list[StoredCell]) -> dict[tuple[str, str], list[StoredCell]]:
    """The cells by (task, model), seeds in a list, in report order."""
    grouped: dict[tuple[str, str], list[StoredCell]] = {}
    for cell in cells:
        grouped.setdefault((cell.task, cell.model), []).append(cell)
    return grouped


def seed_mean_metrics(cells: list[StoredCell], split: str, settings: Settings) -> dict[str, float]:
    """Each brief metric of `split`, averaged over the cells (the seeds of one (task, model))."""
    values: dict[str, list[float]] = {metric.name: [] for metric in brief_metrics()}
    for cell in cells:
        _, labels, proba = cell.split(split)
        for metric in brief_metrics():
            values[metric.name].append(metric.value(labels, proba, len(cell.class_names), settings))
    return {name: float(np.mean(seeds)) for name, seeds in values.items()}


def seed_mean_timings(cells: list[StoredCell], split: str) -> dict[str, float | None]:
    """Fit seconds and `split` inference images/s averaged over the cells; None where a cell lacks one."""
    keys = {"fit_seconds": "fit_seconds", "predict_images_per_s": f"predict_images_per_s_{split}"}
    means: dict[str, float | None] = {}
    for name, key in keys.items():
        values = [cell.timings.get(key) for cell in cells]
        means[name] = None if any(v is None for v in values) else float(np.mean(values))
    return means


def seed_majority_correct(cells: list[StoredCell], split: str) -> dict[str, bool]:
    """Per image id of `split` that every cell predicted: right in more than half of the cells (a tie is wrong)."""
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    for cell in cells:
        ids, labels, proba = cell.split(split)
        for image_id, correct in zip(ids.tolist(), (proba.argmax(axis=1) == labels).tolist(), strict=True):
            seen[image_id] = seen.get(image_id, 0) + 1
            right[image_id] = right.get(image_id, 0) + correct
    return {image_id: 2 * right[image_id] > len(cells) for image_id, n in seen.items() if n == len(cells)}


def paired_test(cells_a: list[StoredCell], cells_b: list[StoredCell], split: str) -> PairedTest:
    """The exact McNemar test of A's against B's seed-majority correctness, on the images both predicted."""
    correct_a, correct_b = seed_majority_correct(cells_a, split), seed_majority_correct(cells_b, split)
    paired = [image_id for image_id in correct_a if image_id in correct_b]
    if not paired:
        return PairedTest(0, 0, 0, math.nan)
    test = mcnemar_exact([correct_a[i] for i in paired], [correct_b[i] for i in paired])
    return PairedTest(len(paired), test["a_right_b_wrong"], test["a_wrong_b_right"], test["p_value"])


def compare_folders(a, b, *, allow_different_data: bool = False, settings: Settings | None = None) -> Comparison:
    """Compare results folders `a` and `b` (see the module docstring). Raises FerBenchError for a missing or
    non-results folder, a damaged cell, and folders of different data fingerprints unless
    `allow_different_data`."""
    settings = settings or Settings()
    a, b = Path(a), Path(b)
    _check_folder(a, "A")
    _check_folder(b, "B")
    cells_a = load_cells(a)
    cells_b = cells_a if a.resolve() == b.resolve() else load_cells(b)
    comparison = Comparison(_side("A", a, cells_a), _side("B", b, cells_b), settings)
    if not comparison.same_data and not allow_different_data:
        raise FerBenchError(f"compare: {different_data_message(comparison)}; "
                            f"pass --allow-different-data to compare them anyway")
    split = settings.headline_split
    comparison.unrecorded_note = unrecorded_note(cells_a if cells_b is cells_a else [*cells_a, *cells_b])
    models_a, models_b = _by_model(cells_a), _by_model(cells_b)
    comparison.only_a = [key for key in models_a if key not in models_b]
    comparison.only_b = [key for key in models_b if key not in models_a]
    for (task, model), seeds_a in models_a.items():
        seeds_b = models_b.get((task, model))
        if seeds_b is None:
            continue
        comparison.models.append(ModelComparison(
            task=task, model=model, seeds_a=len(seeds_a), seeds_b=len(seeds_b),
            metrics_a=seed_mean_metrics(seeds_a, split, settings),
            metrics_b=seed_mean_metrics(seeds_b, split, settings),
            timings_a=seed_mean_timings(seeds_a, split), timings_b=seed_mean_timings(seeds_b, split),
            test=paired_test(seeds_a, seeds_b, split)))
    return comparison
