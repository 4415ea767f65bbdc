"""Set-up of the pytest-benchmark suite: sizes, data, fixed training subsets and the fitted models.

    pytest benchmarks/                                   # the comparison tables (~2 minutes on 2 cores)
    pytest benchmarks/ --benchmark-autosave              # also save to .benchmarks/ (git-ignored)
    pytest benchmarks/ --benchmark-compare               # compare with the last saved run
    pytest benchmarks/ --benchmark-json=bench.json       # speed and quality (extra_info) as JSON
    FER_BENCH_BENCH_SIZE=tiny pytest benchmarks/ --benchmark-disable   # CI smoke run: every benchmark once

Data: $FER2013_DIR or ../shared/fer2013 (relative to the repository) when it holds FER-2013, else the built-in
synthetic data (written to a temporary fer2013.csv so the loading benchmarks have a file to read). Decoded data is
cached in a temporary folder of the session, never in ~/.cache, so "cold" and "warm" loads mean the same on every
machine.

Sizes (FER_BENCH_BENCH_SIZE):

* full (default): every fit uses a fixed seeded stratified sample of 3,000 of the task's Training images (then
  the task's balancing; binary undersamples to ~2,600) and 1,000 of its PublicTest images as validation data.
  The classic models use their full configuration (hyper-parameter grid included). The CNN uses its full
  architecture for 1 epoch (warmup_epochs=0, so the cosine schedule spans that epoch): the point is its
  training speed (steady images/s over the batches after the first two; GFLOP/s and the fraction of the matmul
  peak in its compute dtype, by wall clock and per CPU-second). One epoch of 3,000 images, with tracing and
  validation, already takes 30-50 s on 2 shared cores, so its accuracy is far below the headline CNN's (after
  one epoch its BatchNorm statistics have not settled: close to chance or worse); set
  FER_BENCH_BENCH_CNN_EPOCHS=N to train N epochs (~20-40 s each). Accuracy is measured on the task's whole
  PrivateTest; batch inference on 1,000 PrivateTest images; latency over 100 single-image calls after 10
  warm-up calls.
* tiny: 240 training images, the models' quick configurations, the CNN for 1 epoch, 100 test images and 10
  latency calls: every benchmark runs in seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from fer_bench.cell import tell_task
from fer_bench.data import load_path, write_csv
from fer_bench.data.dataset import Dataset
from fer_bench.measure import MatmulPeaks, thread_info
from fer_bench.models import (
    available_models,
    get_factory_spec,
    make_model,
    missing_requirements,
    parse_variant,
    split_top_level,
)
from fer_bench.models.contract import check_probabilities
from fer_bench.plugins import load_plugin
from fer_bench.tasks import TaskData, get_task, prepare_task_data  # task preparation: the library's own

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE_VARIABLE = "FER_BENCH_BENCH_SIZE"
CNN_EPOCHS_VARIABLE = "FER_BENCH_BENCH_CNN_EPOCHS"
SUBSET_SEED = 0
MIN_PER_CLASS = 20


@dataclass(frozen=True)
class BenchSize:
    name: str
    n_train: int  # training images sampled per fit (before the task's balancing)
    n_validation: int  # PublicTest images given to fit as validation data
    n_accuracy: int | None  # PrivateTest images the accuracy is measured on (None: all of the task's)
    n_inference: int  # PrivateTest images of the batch inference benchmark
    inference_rounds: int
    n_latency: int  # timed single-image calls
    latency_warmup: int
    n_hog: int  # Training images of the HOG throughput benchmark
    quick: bool  # the models' quick configurations
    cnn_params: dict = field(default_factory=dict)
    synthetic_sizes: tuple[int, int, int] = (2800, 700, 700)
    matmul_seconds: float = 3.0  # duration of the float32 matmul peak measurement


SIZES = {
    "full": BenchSize("full", n_train=3000, n_validation=1000, n_accuracy=None, n_inference=1000,
                      inference_rounds=3, n_latency=100, latency_warmup=10, n_hog=5000, quick=False,
                      cnn_params={"epochs": 1, "warmup_epochs": 0}),
    "tiny": BenchSize("tiny", n_train=240, n_validation=70, n_accuracy=100, n_inference=100, inference_rounds=1,
                      n_latency=10, latency_warmup=2, n_hog=500, quick=True,
                      cnn_params={"epochs": 1, "warmup_epochs": 0}, synthetic_sizes=(700, 140, 140),
                      matmul_seconds=0.3),
}


def bench_size() -> BenchSize:
    """The size named by $FER_BENCH_BENCH_SIZE, with the CNN's epochs from $FER_BENCH_BENCH_CNN_EPOCHS if set."""
    name = os.environ.get(SIZE_VARIABLE, "full") or "full"
    if name not in SIZES:
        raise pytest.UsageError(f"{SIZE_VARIABLE}={name!r}: expected one of {', '.join(SIZES)}")
    size = SIZES[name]
    epochs = os.environ.get(CNN_EPOCHS_VARIABLE)
    if epochs:
        if not epochs.isdigit() or int(epochs) < 1:
            raise pytest.UsageError(f"{CNN_EPOCHS_VARIABLE}={epochs!r}: expected a whole number >= 1")
        size = replace(size, cnn_params={**size.cnn_params, "epochs": int(epochs)})
    return size


def real_fer2013_dir() -> Path | None:
    """$FER2013_DIR, else ../shared/fer2013 next to the repository, when it holds train/ and test/."""
    candidate = Path(os.environ.get("FER2013_DIR") or REPO_ROOT.parent / "shared" / "fer2013")
    return candidate if (candidate / "train").is_dir() and (candidate / "test").is_dir() else None


def bench_models() -> tuple[str, ...]:
    """The models the benchmarks measure: every registered model (plugins imported from
    $FER_BENCH_BENCH_PLUGINS, comma-separated files or modules, and installed entry points included), or the
    comma-separated $FER_BENCH_BENCH_MODELS, which may name variants such as "cnn[test_views=10]"."""
    chosen = split_top_level(os.environ.get("FER_BENCH_BENCH_MODELS", ""))
    for name in chosen:
        get_factory_spec(name)  # an unknown name fails here, naming the registered ones
    return tuple(chosen or available_models())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """pyproject's `-n auto` (for tests/) means serial here: benchmarks running side by side would time each
    other, and pytest-benchmark switches itself off under xdist."""
    return 0


def pytest_configure(config):
    """Import the plugins named by $FER_BENCH_BENCH_PLUGINS once, before collection, so bench_models sees them."""
    for plugin in split_top_level(os.environ.get("FER_BENCH_BENCH_PLUGINS", "")):
        load_plugin(plugin)


def pytest_generate_tests(metafunc):
    """Every benchmark taking `model_name` runs for each of bench_models()."""
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", bench_models())


def machine_peak(peaks: MatmulPeaks, dtype: str = "float32") -> dict:
    """The matmul peak in `dtype` (fer_bench.measure.MatmulPeaks), measured once per session and dtype; float32
    when TensorFlow is missing (NumPy has no bfloat16)."""
    try:
        return peaks.get(dtype=dtype)
    except ValueError:
        return peaks.get(dtype="float32")


def load_average() -> float | None:
    """1-minute load average: other work on the machine slows every benchmark, so it is recorded with each."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class CallTimer:
    """Wraps a function and records the wall-clock seconds of every call (also with --benchmark-disable,
    where pytest-benchmark keeps no statistics)."""

    def __init__(self, function):
        self.function = function
        self.seconds: list[float] = []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.function(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        return result

    def last(self, n: int) -> np.ndarray:
        return np.array(self.seconds[-n:])


@dataclass
class BenchData:
    dataset: Dataset
    source: Path  # what the loading benchmarks read: the FER-2013 folder or the synthetic data's CSV
    size: BenchSize
    _prepared: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.dataset.name

    def info(self, **extra) -> dict:
        """extra_info every benchmark records: data set, size, `extra`, and the machine's load average."""
        return {"dataset": self.name, "bench_size": self.size.name, **extra, "load_average_1min": load_average()}

    def task_data(self, task_name: str) -> TaskData:
        """The task's data as a grid cell gets it (fer_bench's prepare_task_data: the task's images and labels,
        Training balanced as the task says, seed SUBSET_SEED), prepared once per task from the benchmarks'
        subset of the data set: a fixed seeded stratified sample of n_train of the task's Training images, one
        of n_validation of its PublicTest images (the validation data), and all of its PrivateTest images."""
        if task_name not in self._prepared:
            task = get_task(task_name)
            chosen = [self._sample_index(task, "Training", self.size.n_train, salt=1),
                      self._sample_index(task, "PublicTest", self.size.n_validation, salt=2),
                      self._sample_index(task, "PrivateTest", None, salt=3)]
            subset = self.dataset.subset(np.sort(np.concatenate(chosen)))
            self._prepared[task_name] = prepare_task_data(subset, task, seed=SUBSET_SEED)
        return self._prepared[task_name]

    def _sample_index(self, task, usage: str, n: int | None, salt: int) -> np.ndarray:
        """Indices into the data set of a fixed seeded stratified sample of about n of the task's `usage` images
        (all when n is None or larger): every class keeps its share, and at least MIN_PER_CLASS images (or all
        it has), so the rare class (disgust) is present even in the tiny size, in every split the models make
        (calibration, validation)."""
        rows = np.flatnonzero(self.dataset.usage == usage)
        _, labels, rows = task.select(self.dataset.images[rows], self.dataset.labels[rows], rows)
        if n is None or n >= len(rows):
            return rows
        rng = np.random.default_rng([SUBSET_SEED, salt])
        classes, counts = np.unique(labels, return_counts=True)
        quotas = np.floor(n * counts / counts.sum()).astype(int)
        remainders = n * counts / counts.sum() - quotas
        quotas[np.argsort(-remainders, kind="stable")[:n - quotas.sum()]] += 1  # largest remainders first
        quotas = np.minimum(np.maximum(quotas, MIN_PER_CLASS), counts)
        return rows[np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                            for c, k in zip(classes, quotas, strict=True)]))]

    def training(self, task_name: str):
        """(images, labels, sample_weight, n_before_balancing) of the fixed training subset of a task."""
        data = self.task_data(task_name)
        return data.X_train, data.y_train, data.sample_weight, data.n_train_before_balancing

    def validation(self, task_name: str):
        images, labels, _ = self.task_data(task_name).tests["PublicTest"]
        return images, labels

    def private(self, task_name: str, n: int | None):
        """The first n of the task's PrivateTest images (all when n is None)."""
        images, labels, _ = self.task_data(task_name).tests["PrivateTest"]
        return (images, labels) if n is None else (images[:n], labels[:n])

    def majority_floor(self, task_name: str) -> float:
        """Accuracy, on the images the benchmarks score, of always predicting the training subset's majority."""
        _, y_train, _, _ = self.training(task_name)
        _, y_test = self.private(task_name, self.size.n_accuracy)
        return float(np.mean(y_test == np.bincount(y_train).argmax()))


@dataclass
class FittedModel:
    model: object
    task: str
    name: str
    n_train: int
    fit_seconds: float
    accuracy: float
    n_accuracy: int
    info: dict = field(default_factory=dict)  # model-specific measurements of the fit (CNN: steady rate, FLOPs)


class FittedModels:
    """The models fitted in this session, so the inference and latency benchmarks reuse the fit benchmark's
    model (or fit one, untimed, when run on their own)."""

    def __init__(self, data: BenchData):
        self.data = data
        self._models: dict[tuple[str, str], FittedModel] = {}
        self._cnn_warm = False

    def new_model(self, name: str, **params):
        if missing_requirements(name):
            pytest.skip(f"model {name} needs {', '.join(missing_requirements(name))}")
        if is_cnn(name):
            params = {**self.data.size.cnn_params, "verbose": 0, **params}
        return make_model(name, seed=0, quick=self.data.size.quick, **params)

    def warm_up_cnn(self) -> None:
        """Pay TensorFlow's one-time start-up (thread pools, kernel selection) before the first timed CNN fit,
        with an untimed 1-epoch fit of the same configuration on 256 images."""
        if self._cnn_warm:
            return
        X, y, _, _ = self.data.training("7class")
        self.new_model("cnn").fit(X[:256], y[:256])
        self._cnn_warm = True

    def fit(self, task: str, name: str, fit_function=None) -> FittedModel:
        """Fit `name` on the task's training subset; `fit_function(model, X, y, weights, validation)` lets the
        fit benchmark time the call. Measures the PrivateTest accuracy afterwards (untimed)."""
        X, y, weights, _ = self.data.training(task)
        validation = self.data.validation(task)
        info = {}
        if is_cnn(name):
            self.warm_up_cnn()
            timer = make_batch_timer()
            model = self.new_model(name, callbacks=[timer])
        else:
            model = self.new_model(name)
        tell_task(model, get_task(task))  # as compute_cell does: a pretrained model maps its outputs onto the task
        start = time.perf_counter()
        (fit_function or _plain_fit)(model, X, y, weights, validation)
        fit_seconds = time.perf_counter() - start
        if is_cnn(name):
            model.set_params(callbacks=None)
            info["steady_train_images_per_s"] = timer.steady_images_per_s(model.batch_size)
            info["steady_train_images_per_cpu_s"] = timer.steady_images_per_cpu_s(model.batch_size)
        X_test, y_test = self.data.private(task, self.data.size.n_accuracy)
        proba = check_probabilities(model, X_test, get_task(task).n_classes)
        accuracy = float(np.mean(model.classes_[proba.argmax(axis=1)] == y_test))
        fitted = FittedModel(model, task, name, len(X), fit_seconds, accuracy, len(X_test), info)
        self._models[(task, name)] = fitted
        return fitted

    def get(self, task: str, name: str) -> FittedModel:
        if (task, name) not in self._models:
            self.fit(task, name)
        return self._models[(task, name)]


def is_cnn(name: str) -> bool:
    """The CNN and its variants ("cnn[test_views=10]"), which get the size's CNN settings and timers."""
    return parse_variant(name)[0] == "cnn"


def _plain_fit(model, X, y, weights, validation):
    model.fit(X, y, sample_weight=weights, validation_data=validation)


def make_batch_timer():
    """A Keras callback timing every training batch in wall-clock and process CPU seconds, for the steady-state
    training rate (the first batches include tracing the training function; the last may be partial)."""
    import keras

    class BatchTimer(keras.callbacks.Callback):
        SKIPPED_FIRST_BATCHES = 2

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self._start = self._cpu_start = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu_start)

        def _rate(self, seconds: list[float], batch_size: int) -> float | None:
            steady = seconds[self.SKIPPED_FIRST_BATCHES:-1]
            return batch_size * len(steady) / sum(steady) if steady and sum(steady) > 0 else None

        def steady_images_per_s(self, batch_size: int) -> float | None:
            return self._rate(self.seconds, batch_size)

        def steady_images_per_cpu_s(self, batch_size: int) -> float | None:
            """Images per CPU-second of the process (all its threads): hardly affected by other work."""
            return self._rate(self.cpu_seconds, batch_size)

    return BatchTimer()


@pytest.fixture(scope="session")
def size() -> BenchSize:
    return bench_size()


@pytest.fixture(scope="session")
def bench_data(size, tmp_path_factory) -> BenchData:
    """The data set, loaded once per session through a session-private cache (FER_BENCH_CACHE)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_BENCH_CACHE", str(tmp_path_factory.mktemp("fer-bench-cache")))
        real = real_fer2013_dir()
        if real is not None:
            source = real
        else:
            from fer_bench.data.synthetic import make_synthetic

            n_train, n_public, n_private = size.synthetic_sizes
            synthetic = make_synthetic(n_train, n_public, n_private, seed=0)
            source = write_csv(synthetic, tmp_path_factory.mktemp("synthetic") / "fer2013.csv")
        dataset = load_path(source)
        if real is None:
            # load_csv names every CSV "fer2013"; these are the synthetic faces
            dataset = Dataset("synthetic", dataset.images, dataset.labels, dataset.usage, dataset.ids,
                              source=str(source))
        yield BenchData(dataset, Path(source), size)


@pytest.fixture(scope="session")
def fitted_models(bench_data) -> FittedModels:
    return FittedModels(bench_data)


@pytest.fixture(scope="session")
def peak_for():
    """dtype -> the matmul peak in that dtype, measured once per session (one MatmulPeaks for the session)."""
    peaks = MatmulPeaks(bench_size().matmul_seconds)
    return lambda dtype="float32": machine_peak(peaks, dtype)


@pytest.fixture
def call_timer():
    """The CallTimer class: wrap a function to record the seconds of each call."""
    return CallTimer


def pytest_benchmark_update_machine_info(config, machine_info):
    # Only settings that stay the same between runs on one machine: --benchmark-compare warns when they differ.
    # (The load average changes all the time; each benchmark records it in its extra_info.)
    machine_info["fer_bench"] = {"bench_size": bench_size().name, "threads": thread_info()}
