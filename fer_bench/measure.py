"""What a fitted model costs: latency, throughput, size, memory, FLOPs and the machine's matmul peak.

Measurement only, used by `fer-bench run` (timings.json of every cell) and by `benchmarks/` alike; the report's
timing table and figure are drawn from the stored numbers in fer_bench.report.timing and fer_bench.figures.timing.

`fer-bench run` times fit and batch prediction itself (timings.json: fit_seconds, predict seconds and images/s
per split, n_train, train_images_per_s). `timing_measurements` adds, per cell, what it costs to serve the
model (single-image latency), how big it is (parameters, bytes on disk), the process's peak memory, the thread
settings and, for a Keras network, the training arithmetic rate against the machine's measured matmul peak in
the network's compute dtype (float32, or bfloat16 under mixed precision). The peak is measured once per
`MatmulPeaks` object (one per grid run or benchmark session), not cached in the module.

Every number is wall-clock time on the machine that ran the cell, which may have been shared with other work:
compare cells computed on the same machine (the manifest names it) and read them as measurements, not limits.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.models.capabilities import Capability, offered

# FLOP counting lives with the models (a model counts its own training FLOPs); re-exported here
from fer_bench.models.flops import (  # noqa: F401
    TRAINING_FLOPS_PER_FORWARD,
    _layer_forward_flops,
    _leaf_layers,
    forward_flops,
    keras_network,
)
from fer_bench.models.parameters import sklearn_support_vectors
from fer_bench.provenance import thread_settings

#: matrix size of the matmul peak measurement (large enough to be compute-bound, small enough to take ~0.1 s)
MATMUL_SIZE = 2048
MATMUL_WARMUP_CALLS = 3
PEAK_RSS_NOTE = "ru_maxrss of the process: its peak resident memory so far, including data and earlier cells"

MATMUL_DTYPES = ("float32", "bfloat16")


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




def count_parameters(model) -> dict:
    """{"n_parameters": ..., "n_support_vectors": ... or None}: learned numbers the fitted model predicts with, as
    the model offers them (parameter_count()), else a Keras network's count_params(); None when unknown (unknown
    is not zero). Support vectors: counted for scikit-learn-based models."""
    n_parameters = offered(model, Capability.PARAMETER_COUNT)
    network = keras_network(model)
    if n_parameters is None and network is not None:
        n_parameters = int(network.count_params())
    n_support = sklearn_support_vectors(model) if network is None else 0
    return {"n_parameters": None if n_parameters is None else int(n_parameters), "n_support_vectors": n_support or None}


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
    """The machine's matrix-multiply rate, measured now (MatmulPeaks keeps one measurement per backend and dtype).

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
    return result


@dataclass
class MatmulPeaks:
    """Matmul peaks measured once per (backend, dtype) and kept by whoever holds this object (a grid run, a
    benchmark session), so later cells reuse the first measurement instead of spending ~3 s each."""

    seconds: float = 3.0
    measured: dict[tuple[str, str], dict] = field(default_factory=dict)

    def get(self, *, backend: str | None = None, dtype: str = "float32") -> dict:
        backend = backend or _matmul_backend()
        if (backend, dtype) not in self.measured:
            self.measured[(backend, dtype)] = matmul_peak(self.seconds, backend=backend, dtype=dtype)
        return dict(self.measured[(backend, dtype)])


def compute_dtype(model) -> str:
    """The dtype a Keras model computes its Conv/Dense layers in ("float32", or "bfloat16"/"float16" under mixed
    precision): the compute dtype of the layers doing most of the forward FLOPs."""
    keras_model = keras_network(model)
    if keras_model is None:
        raise ValueError(f"{type(model).__name__} is not a Keras model and holds no keras_model_")
    import keras

    flops_by_dtype = defaultdict(int)
    for layer in _leaf_layers(keras_model):
        flops_by_dtype[str(layer.compute_dtype)] += _layer_forward_flops(layer, keras.layers)
    return max(flops_by_dtype.items(), key=lambda item: item[1])[0] if flops_by_dtype else "float32"










def cnn_training_gflops(model, images_per_s: float, *, peak_gflops: float | None = None,
                        counted_gflops: float | None = None) -> dict:
    """Achieved training arithmetic rate of a Keras model trained at `images_per_s`.

    forward_flops_per_image (see forward_flops), train_flops_per_image = 3 x forward (forward + backward),
    train_gflops = `counted_gflops` when the fit counted its training FLOPs (their total over its seconds:
    progressive resizing trains on smaller images part of the time), else train FLOPs per image x images/s / 1e9,
    and, with `peak_gflops` (see matmul_peak), fraction_of_peak = train_gflops / peak_gflops."""
    forward = forward_flops(model)
    train_flops = TRAINING_FLOPS_PER_FORWARD * forward
    rate = counted_gflops if counted_gflops is not None else train_flops * float(images_per_s) / 1e9
    result = {"forward_flops_per_image": forward, "train_flops_per_image": train_flops, "train_gflops": rate}
    if peak_gflops:
        result["fraction_of_peak"] = result["train_gflops"] / peak_gflops
    return result


def thread_info() -> dict:
    """Thread settings of the process (environment variables, TensorFlow's pools) and the usable cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"usable_cores": cores, **thread_settings()}


def timing_measurements(model, X_test, model_dir, *, train_images_per_s: float | None = None,
                        counted_train_gflops: float | None = None, n_latency: int = 100, warmup: int = 10,
                        peaks: MatmulPeaks | None = None) -> dict:
    """Extra timings.json keys for a fitted cell: latency on X_test (PrivateTest), size, peak memory, threads and,
    for a Keras model, FLOPs per image, the matmul peak and (given train_images_per_s) the achieved training
    GFLOP/s and fraction of the peak. Batch throughput is not re-measured (compute_cell times predict_proba itself).

    Costs ~n_latency+warmup single-image predictions, plus ~3 s once per `peaks` object for the matmul peak."""
    result = measure_inference(model, X_test, n_latency=n_latency, warmup=warmup, model_dir=model_dir, batch=False)
    result["threads"] = thread_info()
    if keras_network(model) is not None:
        dtype = compute_dtype(model)
        backend = _matmul_backend()
        if backend == "numpy" or dtype not in MATMUL_DTYPES:
            dtype = "float32"  # NumPy has no bfloat16 (and TensorFlow is what a Keras model computes with)
        peak = (peaks or MatmulPeaks()).get(backend=backend, dtype=dtype)
        result.update(matmul_peak_gflops=peak["gflops"], matmul_backend=peak["backend"], matmul_dtype=peak["dtype"])
        if train_images_per_s:
            result.update(cnn_training_gflops(model, train_images_per_s, peak_gflops=peak["gflops"],
                                              counted_gflops=counted_train_gflops))
        else:
            forward = forward_flops(model)
            result.update(forward_flops_per_image=forward,
                          train_flops_per_image=TRAINING_FLOPS_PER_FORWARD * forward)
    return result
