"""Speed, size and efficiency of the fitted models, and the report's timing table and figure.

`fer-bench run` times fit and batch prediction itself (timings.json: fit_seconds, predict seconds and images/s
per split, n_train, train_images_per_s). `timing_measurements` adds, per cell, what it costs to serve the
model (single-image latency), how big it is (parameters, bytes on disk), the process's peak memory, the thread
settings and, for the Keras CNN, the training arithmetic rate against the machine's measured matmul peak in
the CNN's compute dtype (float32, or bfloat16 under mixed precision). `report_sections` turns the stored
timings into `timing.csv`, a markdown table and `figures/timing.png`.

Every number is wall-clock time on the machine that ran the cell, which may have been shared with other work:
compare cells computed on the same machine (the manifest names it) and read them as measurements, not limits.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import resource
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.provenance import thread_settings
from fer_bench.storage import atomic_write_bytes

HEADLINE_SPLIT = "PrivateTest"
TIMING_FIGURE = Path("figures") / "timing.png"
MAX_FIGURE_BYTES = 300_000
#: the report's position of the timing section (after the tables, before the figure sections)
SECTION_ORDER = 55
#: measured matmul peaks of one dtype further apart than this factor mean the cells ran on machines of
#: different speed, which the timing section then says
PEAK_SPREAD_WARNING = 1.25
#: matrix size of the matmul peak measurement (large enough to be compute-bound, small enough to take ~0.1 s)
MATMUL_SIZE = 2048
MATMUL_WARMUP_CALLS = 3
#: backward pass ~ 2x the forward arithmetic (gradients w.r.t. inputs and weights), so training ~ 3x forward
TRAINING_FLOPS_PER_FORWARD = 3
PEAK_RSS_NOTE = "ru_maxrss of the process: its peak resident memory so far, including data and earlier cells"

#: timing.csv columns, in order (see TIMING_CSV_SCHEMA)
TIMING_COLUMNS = [
    "task", "model", "seed", "n_train", "fit_seconds", "train_images_per_s", "predict_images_per_s",
    "latency_p50_ms", "latency_p95_ms", "n_parameters", "model_bytes", "peak_rss_mb", "train_gflops",
    "matmul_peak_gflops", "matmul_dtype", "fraction_of_peak", "threads", "accuracy",
]

TIMING_CSV_SCHEMA = """\
timing.csv: one row per task x model x seed (the cells of runs/), in the report's order. Empty = not measured
for that cell (e.g. GFLOP/s for models that are not Keras networks, or cells run before a field existed).

    task, model, seed        the cell
    n_train                  training images after balancing
    fit_seconds              wall-clock seconds of model.fit, hyper-parameter/epoch selection included (3 decimals)
    train_images_per_s       n_train x passes / fit_seconds; passes = epochs this fit made (CNN), 1 for the classic
                             models (whose fit time includes their whole C grid) (1 decimal)
    predict_images_per_s     PrivateTest images / seconds of one batch predict_proba call (1 decimal)
    latency_p50_ms,          median and 95th percentile of single-image predict_proba calls (100 PrivateTest
    latency_p95_ms           images, after 10 warm-up calls), milliseconds (3 decimals)
    n_parameters             learned numbers the model predicts with: Keras count_params() for the CNN;
                             coefficients, intercepts, support vectors, dual coefficients and scaler
                             statistics of the fitted scikit-learn estimators for the classic models
    model_bytes              bytes on disk of the saved model folder (runs/.../model/)
    peak_rss_mb              peak resident memory of the process that ran the cell, up to the end of that cell
                             (ru_maxrss, MiB; includes the data set and cells run before it) (1 decimal)
    train_gflops             CNN only: 3 x forward FLOPs per image (Conv/Dense multiply-adds x 2) x
                             train_images_per_s / 1e9; train_images_per_s includes each epoch's PublicTest
                             evaluation and the first epoch's tracing, so this is a lower bound of the
                             steady training rate (`pytest benchmarks` measures that one) (3 decimals)
    matmul_peak_gflops       CNN only: the machine's measured matmul rate in the CNN's compute dtype (2048x2048,
                             fastest call, TensorFlow when installed, NumPy otherwise), measured once per process
                             and dtype (3 decimals)
    matmul_dtype             that compute dtype: float32, or bfloat16 under mixed precision
    fraction_of_peak         train_gflops / matmul_peak_gflops (4 decimals)
    threads                  thread settings of the process, `key=value` pairs joined by `;` (unset ones omitted)
    accuracy                 PrivateTest accuracy of the cell (from metrics.csv, subset all) (6 decimals)
"""

#: decimals of the float columns of timing.csv (fixed, so the same stored timings give the same bytes)
_DECIMALS = {"fit_seconds": 3, "train_images_per_s": 1, "predict_images_per_s": 1, "latency_p50_ms": 3,
             "latency_p95_ms": 3, "peak_rss_mb": 1, "train_gflops": 3, "matmul_peak_gflops": 3,
             "fraction_of_peak": 4, "accuracy": 6}

#: fitted scikit-learn arrays (and scalars) that a model predicts with
_LEARNED_ATTRIBUTES = ("coef_", "intercept_", "mean_", "scale_", "components_", "coefs_", "intercepts_",
                       "a_", "b_", "X_thresholds_", "y_thresholds_")
_SVM_ATTRIBUTES = ("support_vectors_", "dual_coef_", "intercept_", "probA_", "probB_")

MATMUL_DTYPES = ("float32", "bfloat16")
_MATMUL_CACHE: dict[tuple[str, str], dict] = {}


# --- measurements -------------------------------------------------------------------------------------------------

def latency_ms(model, X, *, n_latency: int = 100, warmup: int = 10) -> np.ndarray:
    """Milliseconds of `n_latency` single-image predict_proba calls on X[0], X[1], ... (cycling), after `warmup`
    untimed calls."""
    X = np.asarray(X)
    if len(X) == 0:
        raise ValueError("latency needs at least one image")
    if n_latency < 1 or warmup < 0:
        raise ValueError(f"n_latency must be >= 1 and warmup >= 0, got {n_latency} and {warmup}")
    for i in range(warmup):
        model.predict_proba(X[i % len(X)][None])
    times = np.empty(n_latency)
    for i in range(n_latency):
        image = X[(warmup + i) % len(X)][None]
        start = time.perf_counter()
        model.predict_proba(image)
        times[i] = time.perf_counter() - start
    return times * 1e3


def _keras_model(model):
    """The Keras network inside a model (its keras_model_), the model itself if it is one, else None."""
    if hasattr(model, "keras_model_"):
        return model.keras_model_
    if "keras" in sys.modules and isinstance(model, sys.modules["keras"].Model):
        return model
    return None


def _is_sklearn_object(value) -> bool:
    """scikit-learn classes and their subclasses (estimators, fer-bench's model wrappers, calibrators)."""
    return any(cls.__module__.startswith("sklearn.") for cls in type(value).__mro__)


def _size(value) -> int:
    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value)
    return int(np.size(value))


def _sklearn_parameter_counts(obj, seen: set[int]) -> tuple[int, int]:
    """(learned numbers, support vectors) of a fitted scikit-learn object and every scikit-learn object it holds
    (pipelines, calibrated classifiers, sub-estimators); each object is counted once."""
    if id(obj) in seen:
        return 0, 0
    seen.add(id(obj))
    n_parameters = n_support = 0
    if _is_sklearn_object(obj):
        support = getattr(obj, "support_vectors_", None)
        # An SVM predicts with its support vectors and dual coefficients; its coef_ (linear kernel only) is derived
        # from them, so it is not counted twice.
        names = _SVM_ATTRIBUTES if support is not None else _LEARNED_ATTRIBUTES
        for name in names:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # deprecated but still used (SVC probA_)
                    n_parameters += _size(getattr(obj, name, None))
            except (AttributeError, ValueError, TypeError):
                continue  # a property that does not apply to this estimator's configuration
        if support is not None:
            n_support += len(support)
    for value in _children(obj):
        params, support = _sklearn_parameter_counts(value, seen)
        n_parameters += params
        n_support += support
    return n_parameters, n_support


def _children(obj):
    """scikit-learn objects held in obj's attributes, also inside lists, tuples and dicts (e.g. Pipeline steps)."""
    try:
        values = list(vars(obj).values())
    except TypeError:
        return
    stack = values
    while stack:
        value = stack.pop()
        if isinstance(value, np.ndarray | str | bytes | int | float) or value is None:
            continue
        if isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif _is_sklearn_object(value):
            yield value


def count_parameters(model) -> dict:
    """{"n_parameters": ..., "n_support_vectors": ... or None}: learned numbers the fitted model predicts with.

    Keras networks: count_params(). scikit-learn models (and wrappers holding them as attributes): sizes of the
    fitted coefficients, intercepts, scaler statistics, PCA components, calibration parameters, and for SVMs the
    support vectors with their dual coefficients."""
    keras_model = _keras_model(model)
    if keras_model is not None:
        return {"n_parameters": int(keras_model.count_params()), "n_support_vectors": None}
    n_parameters, n_support = _sklearn_parameter_counts(model, set())
    return {"n_parameters": n_parameters, "n_support_vectors": n_support or None}


def directory_bytes(path) -> int:
    """Total size in bytes of the files under `path`."""
    path = Path(path)
    if not path.is_dir():
        raise FerBenchError(f"{path}: not a model folder")
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_inference(model, X, *, n_latency: int = 100, warmup: int = 10, model_dir=None, batch: bool = True) -> dict:
    """Inference speed, size and memory of a fitted model on images X (uint8, (N, 48, 48)).

    batch: time one predict_proba call on all of X (after one warm-up call on a few images) ->
    batch_images, batch_seconds, batch_images_per_s. Latency: `n_latency` single-image calls after `warmup` ->
    latency_n, latency_p50_ms, latency_p95_ms, latency_mean_ms. Size: n_parameters, n_support_vectors (SVMs) and,
    when `model_dir` (the saved model folder) is given, model_bytes. Memory: peak_rss_mb, the process peak so far
    (with peak_rss_note saying so)."""
    X = np.asarray(X)
    result = {}
    if batch:
        model.predict_proba(X[:8])
        start = time.perf_counter()
        model.predict_proba(X)
        seconds = time.perf_counter() - start
        result.update(batch_images=len(X), batch_seconds=seconds,
                      batch_images_per_s=len(X) / seconds if seconds > 0 else None)
    times = latency_ms(model, X, n_latency=n_latency, warmup=warmup)
    result.update(latency_n=len(times), latency_p50_ms=float(np.percentile(times, 50)),
                  latency_p95_ms=float(np.percentile(times, 95)), latency_mean_ms=float(times.mean()))
    result.update(count_parameters(model))
    if model_dir is not None:
        result["model_bytes"] = directory_bytes(model_dir)
    result.update(peak_rss_mb=peak_rss_mb(), peak_rss_note=PEAK_RSS_NOTE)
    return result


def _matmul_backend() -> str:
    return "tensorflow" if importlib.util.find_spec("tensorflow") is not None else "numpy"


def _time_matmuls(matmul, seconds: float) -> tuple[list[float], float]:
    """Wall-clock seconds of each call made back to back for ~`seconds` (at least 3, after the warm-up calls),
    and the process CPU seconds (all threads) they took together."""
    for _ in range(MATMUL_WARMUP_CALLS):
        matmul()
    durations = []
    cpu_start = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 3:
        start = time.perf_counter()
        matmul()
        durations.append(time.perf_counter() - start)
    return durations, time.process_time() - cpu_start


def matmul_peak(seconds: float = 3.0, *, backend: str | None = None, size: int = MATMUL_SIZE,
                dtype: str = "float32") -> dict:
    """The machine's matrix-multiply rate, measured once per process, backend and dtype (later calls return
    the cached result).

    Returns {"gflops": rate of the fastest call, "mean_gflops": mean rate, "cpu_gflops": GFLOP per CPU-second
    of the process (all threads; unlike wall time, hardly affected by other work on the machine), "backend",
    "dtype", "size", "calls", "seconds"}. backend "tensorflow" (tf.linalg.matmul; the default when TensorFlow
    is installed, since the CNN trains with it) or "numpy" (np.matmul on its BLAS; float32 only). dtype
    "float32" or "bfloat16". Calls run back to back for ~`seconds` after 3 warm-up calls."""
    backend = backend or _matmul_backend()
    if backend not in ("tensorflow", "numpy"):
        raise ValueError(f"unknown matmul backend {backend!r}; expected 'tensorflow' or 'numpy'")
    if dtype not in MATMUL_DTYPES or (backend == "numpy" and dtype != "float32"):
        raise ValueError(f"matmul dtype {dtype!r} is not measured with {backend}; expected one of "
                         f"{MATMUL_DTYPES if backend == 'tensorflow' else ('float32',)}")
    if (backend, dtype) in _MATMUL_CACHE:
        return dict(_MATMUL_CACHE[(backend, dtype)])
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    if backend == "tensorflow":
        import tensorflow as tf

        a_tf, b_tf = (tf.cast(tf.constant(m), dtype) for m in (a, b))

        def matmul():
            # .numpy() waits for the result (eager CPU ops are synchronous, but this makes sure)
            tf.linalg.matmul(a_tf, b_tf)[0, 0].numpy()
    else:
        def matmul():
            np.matmul(a, b)
    durations, cpu_seconds = _time_matmuls(matmul, seconds)
    durations = np.array(durations)
    flops = 2.0 * size ** 3
    result = {"gflops": float(flops / durations.min() / 1e9), "mean_gflops": float(flops / durations.mean() / 1e9),
              "cpu_gflops": float(flops * len(durations) / cpu_seconds / 1e9) if cpu_seconds > 0 else None,
              "backend": backend, "dtype": dtype, "size": size, "calls": len(durations),
              "seconds": float(durations.sum())}
    _MATMUL_CACHE[(backend, dtype)] = result
    return dict(result)


def matmul_peak_gflops(seconds: float = 3.0) -> float:
    """The measured float32 matmul peak in GFLOP/s (see matmul_peak), cached for the process."""
    return matmul_peak(seconds)["gflops"]


def compute_dtype(model) -> str:
    """The dtype a Keras model computes its Conv/Dense layers in ("float32", or "bfloat16"/"float16" under mixed
    precision): the compute dtype of the layers doing most of the forward FLOPs."""
    keras_model = _keras_model(model)
    if keras_model is None:
        raise ValueError(f"{type(model).__name__} is not a Keras model and holds no keras_model_")
    import keras

    flops_by_dtype = defaultdict(int)
    for layer in _leaf_layers(keras_model):
        flops_by_dtype[str(layer.compute_dtype)] += _layer_forward_flops(layer, keras.layers)
    return max(flops_by_dtype.items(), key=lambda item: item[1])[0] if flops_by_dtype else "float32"


def _leaf_layers(keras_model):
    for layer in keras_model.layers:
        if hasattr(layer, "layers") and isinstance(layer.layers, list):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _spatial(shape, data_format: str | None) -> int:
    """Product of the spatial dimensions of a (batch, ..., channels) or (batch, channels, ...) shape."""
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    return math.prod(int(d) for d in dims)


def _layer_forward_flops(layer, layers) -> int:
    if isinstance(layer, layers.Layer) and hasattr(layer, "layers") and isinstance(layer.layers, list):
        return sum(_layer_forward_flops(inner, layers) for inner in layer.layers)  # nested model
    kernels = [w for w in layer.weights if w.name in ("kernel", "depthwise_kernel", "pointwise_kernel")]
    if not kernels:
        return 0
    data_format = getattr(layer, "data_format", None)
    transposed = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    convolutions = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.DepthwiseConv1D, layers.DepthwiseConv2D,
                    layers.SeparableConv1D, layers.SeparableConv2D)
    if isinstance(layer, transposed):
        # every input position is multiplied by the whole kernel
        positions = _spatial(layer.input.shape, data_format)
    elif isinstance(layer, convolutions):
        # every output position is a dot product with the whole kernel (per group / per input channel for
        # depthwise); a separable layer's pointwise 1x1 kernel runs on the depthwise output, same positions
        positions = _spatial(layer.output.shape, data_format)
    elif isinstance(layer, layers.Dense):
        # Dense on (batch, ..., features) applies the kernel at every leading position
        positions = math.prod(int(d) for d in layer.output.shape[1:-1])
    else:
        return 0
    return sum(2 * math.prod(int(d) for d in w.shape) * positions for w in kernels)


def forward_flops(model) -> int:
    """Forward-pass FLOPs per image of a built Keras model (or a model holding one as keras_model_).

    Counts the multiply-adds of Conv (1-3D, depthwise, separable, transposed) and Dense layers as 2 FLOPs each:
    2*k_h*k_w*c_in*c_out*H_out*W_out for Conv2D, 2*k_h*k_w*c_in*depth_multiplier*H_out*W_out for depthwise,
    2*n_in*n_out for Dense. Bias adds, activations, normalisation and pooling are left out (a few percent of a
    CNN's arithmetic, and memory-bound)."""
    keras_model = _keras_model(model)
    if keras_model is None:
        raise ValueError(f"{type(model).__name__} is not a Keras model and holds no keras_model_")
    import keras

    return sum(_layer_forward_flops(layer, keras.layers) for layer in keras_model.layers)


def cnn_training_gflops(model, images_per_s: float, *, peak_gflops: float | None = None) -> dict:
    """Achieved training arithmetic rate of a Keras model trained at `images_per_s`.

    forward_flops_per_image (see forward_flops), train_flops_per_image = 3 x forward (forward + backward),
    train_gflops = train FLOPs per image x images/s / 1e9 and, with `peak_gflops` (see matmul_peak),
    fraction_of_peak = train_gflops / peak_gflops."""
    forward = forward_flops(model)
    train_flops = TRAINING_FLOPS_PER_FORWARD * forward
    result = {"forward_flops_per_image": forward, "train_flops_per_image": train_flops,
              "train_gflops": train_flops * float(images_per_s) / 1e9}
    if peak_gflops:
        result["fraction_of_peak"] = result["train_gflops"] / peak_gflops
    return result


def thread_info() -> dict:
    """Thread settings of the process (environment variables, TensorFlow's pools) and the usable cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"usable_cores": cores, **thread_settings()}


def timing_measurements(model, X_test, model_dir, *, train_images_per_s: float | None = None,
                        n_latency: int = 100, warmup: int = 10) -> dict:
    """Extra timings.json keys for a fitted cell: latency on X_test (PrivateTest), size, peak memory, threads and,
    for a Keras model, FLOPs per image, the matmul peak and (given train_images_per_s) the achieved training
    GFLOP/s and fraction of the peak. Batch throughput is not re-measured (run_cell times predict_proba itself).

    Costs ~n_latency+warmup single-image predictions, plus ~3 s once per process for the matmul peak."""
    result = measure_inference(model, X_test, n_latency=n_latency, warmup=warmup, model_dir=model_dir, batch=False)
    result["threads"] = thread_info()
    if _keras_model(model) is not None:
        dtype = compute_dtype(model)
        backend = _matmul_backend()
        if backend == "numpy" or dtype not in MATMUL_DTYPES:
            dtype = "float32"  # NumPy has no bfloat16 (and TensorFlow is what a Keras model computes with)
        peak = matmul_peak(backend=backend, dtype=dtype)
        result.update(matmul_peak_gflops=peak["gflops"], matmul_backend=peak["backend"], matmul_dtype=peak["dtype"])
        if train_images_per_s:
            result.update(cnn_training_gflops(model, train_images_per_s, peak_gflops=peak["gflops"]))
        else:
            forward = forward_flops(model)
            result.update(forward_flops_per_image=forward,
                          train_flops_per_image=TRAINING_FLOPS_PER_FORWARD * forward)
    return result


# --- report -------------------------------------------------------------------------------------------------------

def _threads_text(threads) -> str | None:
    if not isinstance(threads, dict):
        return None
    return ";".join(f"{key}={threads[key]}" for key in sorted(threads) if threads[key] is not None) or None


def _number(value):
    """A stored timing as a float (None when absent, not a number or not finite)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def timing_rows(report) -> list[dict]:
    """One row per stored cell with the TIMING_COLUMNS values (None where not measured)."""
    accuracy = {(r["task"], r["model"], r["seed"]): r["accuracy"] for r in report.metric_rows
                if r["split"] == HEADLINE_SPLIT and r["subset"] == "all"}
    rows = []
    for cell in report.cells:
        t = cell.timings
        train_rate = _number(t.get("train_images_per_s"))
        train_gflops = _number(t.get("train_gflops"))
        if train_gflops is None and _number(t.get("train_flops_per_image")) and train_rate:
            train_gflops = t["train_flops_per_image"] * train_rate / 1e9
        peak = _number(t.get("matmul_peak_gflops"))
        rows.append({
            "task": cell.task, "model": cell.model, "seed": cell.seed,
            "n_train": t.get("n_train", cell.manifest.get("n_train")),
            "fit_seconds": _number(t.get("fit_seconds")), "train_images_per_s": train_rate,
            "predict_images_per_s": _number(t.get(f"predict_images_per_s_{HEADLINE_SPLIT}")),
            "latency_p50_ms": _number(t.get("latency_p50_ms")), "latency_p95_ms": _number(t.get("latency_p95_ms")),
            "n_parameters": t.get("n_parameters"), "model_bytes": t.get("model_bytes"),
            "peak_rss_mb": _number(t.get("peak_rss_mb")), "train_gflops": train_gflops,
            "matmul_peak_gflops": peak,
            "matmul_dtype": t.get("matmul_dtype") if peak is not None else None,
            "fraction_of_peak": train_gflops / peak if train_gflops is not None and peak else None,
            "threads": _threads_text(t.get("threads", cell.manifest.get("threads"))),
            "accuracy": _number(accuracy.get((cell.task, cell.model, cell.seed))),
        })
    return rows


def _csv_value(column: str, value) -> str:
    if value is None:
        return ""
    if column in _DECIMALS:
        return f"{float(value):.{_DECIMALS[column]}f}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def timing_csv(rows: list[dict]) -> str:
    """timing.csv text (TIMING_COLUMNS, fixed decimals; see TIMING_CSV_SCHEMA)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TIMING_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(c, row.get(c)) for c in TIMING_COLUMNS])
    return buf.getvalue()


def _mean(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _grouped(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row["task"], row["model"])].append(row)
    return grouped


def _count_text(value) -> str:
    if value is None:
        return "–"
    for limit, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


def _bytes_text(value) -> str:
    if value is None:
        return "–"
    for limit, suffix in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f} B"


def _fixed(value, decimals: int, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{decimals}f}{suffix}"


def timing_markdown(rows: list[dict], figure_caption: str | None) -> str:
    lines = [
        f"Mean over seeds per task and model; accuracy on {HEADLINE_SPLIT}. Inference = one batch predict_proba "
        f"call on {HEADLINE_SPLIT}; latency = single-image predict_proba calls; train GFLOP/s = 3 × the CNN's "
        "forward Conv/Dense FLOPs per image × training images/s. Schema of every column: `timing.csv`.",
        "",
        "| task | model | accuracy % | fit time (s) | train img/s | inference img/s | latency p50 / p95 (ms) | "
        "parameters | size on disk | peak RSS | train GFLOP/s (% of matmul peak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, model), group in _grouped(rows).items():
        accuracy, p50, p95 = _mean(group, "accuracy"), _mean(group, "latency_p50_ms"), _mean(group, "latency_p95_ms")
        gflops, fraction = _mean(group, "train_gflops"), _mean(group, "fraction_of_peak")
        gflops_text = _fixed(gflops, 2) + (f" ({100 * fraction:.1f}%)" if fraction is not None else "")
        peak_rss = _mean(group, "peak_rss_mb")
        lines.append(
            f"| {task} | {model} | {_fixed(None if accuracy is None else 100 * accuracy, 1)} | "
            f"{_fixed(_mean(group, 'fit_seconds'), 1)} | {_fixed(_mean(group, 'train_images_per_s'), 0)} | "
            f"{_fixed(_mean(group, 'predict_images_per_s'), 0)} | {_fixed(p50, 2)} / {_fixed(p95, 2)} | "
            f"{_count_text(_mean(group, 'n_parameters'))} | {_bytes_text(_mean(group, 'model_bytes'))} | "
            f"{_bytes_text(None if peak_rss is None else peak_rss * 2**20)} | {gflops_text} |")
    peaks = sorted({(r["matmul_peak_gflops"], r["matmul_dtype"] or "float32") for r in rows
                    if r["matmul_peak_gflops"] is not None})
    threads = sorted({r["threads"] for r in rows if r["threads"]})
    notes = []
    if peaks:
        notes.append("Measured matmul peak (2048×2048, fastest call, in the CNN's compute dtype): "
                     + ", ".join(f"{gflops:.1f} GFLOP/s ({dtype})" for gflops, dtype in peaks) + ".")
    for dtype in sorted({dtype for _, dtype in peaks}):
        rates = [gflops for gflops, d in peaks if d == dtype]
        if max(rates) > PEAK_SPREAD_WARNING * min(rates):
            # cells resumed or rerun on another day may land on a host of the same name but another speed
            notes.append(f"**The cells were timed on machines of different speed** (measured {dtype} peaks differ "
                         f"{max(rates) / min(rates):.1f}×): compare times across rows with care; the % of peak "
                         "column is comparable.")
    if threads:
        notes.append("Thread settings: " + "; ".join(f"`{t}`" for t in threads) + ".")
    notes.append("Peak RSS is the process's maximum resident memory up to the end of the cell (it includes the "
                 "data set and any cells run before it in the same process). Times are wall-clock on the machine "
                 "named above, which may have been shared with other work.")
    lines += ["", " ".join(notes)]
    if figure_caption:
        lines += ["", f"![{figure_caption}]({TIMING_FIGURE.as_posix()})", f"*{figure_caption}*"]
    return "\n".join(lines)


def _short(value: float) -> str:
    """3 significant digits with a k/M suffix (bar labels)."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _positive(value):
    return value if value is not None and value > 0 else None


def timing_figure_png(rows: list[dict], *, dpi: int = 100) -> bytes | None:
    """The timing comparison figure as PNG bytes (None when nothing was timed): fit time, inference
    throughput and accuracy per task and model, and accuracy against fit time."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grouped = _grouped(rows)
    if not grouped or all(_mean(g, "fit_seconds") is None for g in grouped.values()):
        return None
    tasks = list(dict.fromkeys(task for task, _ in grouped))
    models = list(dict.fromkeys(model for _, model in grouped))
    palette = colormaps["tab10"]
    colors = {m: palette(i % 10) for i, m in enumerate(models)}
    markers = dict(zip(tasks, "osD^vP*X", strict=False))

    fig = Figure(figsize=(11, 7.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels = [(axes[0, 0], "fit_seconds", "fit time (s, log scale)", True, 1.0),
              (axes[0, 1], "predict_images_per_s", f"inference, {HEADLINE_SPLIT} batch (images/s, log scale)",
               True, 1.0),
              (axes[1, 0], "accuracy", f"{HEADLINE_SPLIT} accuracy (%)", False, 100.0)]
    width = 0.8 / max(len(models), 1)
    for ax, key, title, log, scale in panels:
        for j, model in enumerate(models):
            for i, task in enumerate(tasks):
                value = _mean(grouped.get((task, model), []), key)
                value = _positive(None if value is None else value * scale)
                if value is None:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(x, value, width, color=colors[model])
                ax.annotate(_short(value), (x, value), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
    model_handles = [Patch(color=colors[m], label=m) for m in models]
    axes[0, 0].legend(handles=model_handles, fontsize=8)
    scatter = axes[1, 1]
    for (task, model), group in grouped.items():
        fit, accuracy = _positive(_mean(group, "fit_seconds")), _mean(group, "accuracy")
        if fit is None or accuracy is None:
            continue
        scatter.scatter(fit, 100 * accuracy, color=colors[model], marker=markers.get(task, "o"), s=60)
    scatter.set_xscale("log")
    scatter.set_xlabel("fit time (s, log scale)")
    scatter.set_ylabel(f"{HEADLINE_SPLIT} accuracy (%)")
    scatter.set_title("trade-off: accuracy against fit time", fontsize=10)
    scatter.grid(alpha=0.3)
    task_handles = [Line2D([], [], color="grey", marker=markers.get(t, "o"), linestyle="", label=t) for t in tasks]
    scatter.legend(handles=model_handles + task_handles, fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def report_sections(report) -> None:
    """Add timing.csv to report.files, write figures/timing.png and add the timing section (order 55)."""
    from fer_bench.report import ReportSection

    rows = timing_rows(report)
    if not rows:
        return
    report.files["timing.csv"] = timing_csv(rows)
    caption = None
    png = None
    for dpi in (100, 80, 60):  # fall back to a coarser raster if the PNG would exceed MAX_FIGURE_BYTES
        png = timing_figure_png(rows, dpi=dpi)
        if png is None or len(png) <= MAX_FIGURE_BYTES:
            break
    if png is not None:
        path = Path(report.out) / TIMING_FIGURE
        try:
            atomic_write_bytes(path, png)
        except OSError as exc:
            raise FerBenchError(f"cannot write figure {path}: {exc.strerror or exc}") from None
        caption = ("Fit time, inference throughput and accuracy per task and model; bottom right: accuracy "
                   "against fit time (colour = model, marker = task).")
    report.sections.append(ReportSection("Timing: speed, size and efficiency", timing_markdown(rows, caption),
                                         order=SECTION_ORDER))
