"""Per model and task: fit time, batch inference throughput and single-image latency, with accuracy.

Groups ("fit: 7class", "inference: 7class", "latency: 7class", ...) put the three models side by side for each
task. Every benchmark's extra_info holds the task, the model, the subset sizes, the PrivateTest accuracy of the
fitted model and its images/s, so `--benchmark-json` has speed and quality together. Targets from the project
brief are recorded next to the measurements (extra_info "target"), not asserted: timings depend on the machine
and on whatever else runs on it (see extra_info "load_average_1min").
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from fer_bench.measure import cnn_training_gflops, compute_dtype, count_parameters, forward_flops
from fer_bench.models import make_model, parse_variant
from fer_bench.models.capabilities import Capability, offered
from fer_bench.models.contract import check_probabilities
from fer_bench.tasks import get_task

TASKS = ("7class", "5class", "binary")
# model_name: every registered model, or those $FER_BENCH_BENCH_MODELS names (conftest.pytest_generate_tests)


def _fit(model, X, y, weights, validation):
    model.fit(X, y, sample_weight=weights, validation_data=validation)


def _training_efficiency(model, fit_info: dict, peak_for) -> dict:
    """The CNN's steady training arithmetic rate against the matmul peak in its compute dtype: by wall clock
    (GFLOP/s), and per CPU-second of the process on both sides, which other work on the machine hardly moves.
    Tracing (first batches) and validation are not training arithmetic, so the steady batch rate is used."""
    dtype = compute_dtype(model)
    peak = peak_for(dtype)
    info = {"compute_dtype": dtype, "matmul_dtype": peak["dtype"], "matmul_peak_gflops": round(peak["gflops"], 2),
            "matmul_gflops_per_cpu_s": round(peak["cpu_gflops"], 2), "forward_flops_per_image": forward_flops(model)}
    for suffix, rate, peak_rate in (("", fit_info["steady_train_images_per_s"], peak["gflops"]),
                                    ("_cpu", fit_info["steady_train_images_per_cpu_s"], peak["cpu_gflops"])):
        if not rate:
            continue
        gflops = cnn_training_gflops(model, rate, peak_gflops=peak_rate)
        unit = "_per_cpu_s" if suffix else "_per_s"
        info[f"steady_train_images{unit}"] = round(rate, 1)
        info[f"train_gflops{unit if suffix else ''}"] = round(gflops["train_gflops"], 2)
        info[f"fraction_of_peak{suffix}"] = round(gflops["fraction_of_peak"], 4)
    return info


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_peak(benchmark, bench_data, peak_for, dtype):
    """The machine's matmul rate (what the CNN's training GFLOP/s are compared with, in its compute dtype)."""
    benchmark.group = "machine: matmul 2048x2048"
    peak = peak_for(dtype)
    if peak["dtype"] != dtype:
        pytest.skip(f"{dtype} matmul needs TensorFlow")
    size = peak["size"]
    a, b = (np.random.default_rng(seed).standard_normal((size, size), dtype=np.float32) for seed in (1, 2))
    if peak["backend"] == "tensorflow":
        import tensorflow as tf

        a, b = (tf.cast(tf.constant(m), dtype) for m in (a, b))
        benchmark.pedantic(lambda: tf.linalg.matmul(a, b)[0, 0].numpy(), rounds=5, warmup_rounds=1)
    else:
        benchmark.pedantic(np.matmul, args=(a, b), rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(bench_data.info(
        matmul_backend=peak["backend"], dtype=dtype, matrix_size=size, peak_gflops=round(peak["gflops"], 2),
        mean_gflops=round(peak["mean_gflops"], 2), gflops_per_cpu_s=round(peak["cpu_gflops"], 2),
        calls=peak["calls"]))


@pytest.mark.parametrize("task", TASKS)
def test_fit(benchmark, bench_data, fitted_models, request, task, model_name):
    """fit() on the task's fixed training subset, once (a fit is seconds to minutes; see conftest for sizes)."""
    benchmark.group = f"fit: {task}"

    def timed_fit(model, X, y, weights, validation):
        benchmark.pedantic(_fit, args=(model, X, y, weights, validation), rounds=1, iterations=1)

    fitted = fitted_models.fit(task, model_name, fit_function=timed_fit)
    model = fitted.model
    passes = int(offered(model, Capability.TRAINING_PASSES) or 1)  # epochs; 1 for a model that trains nothing
    info = bench_data.info(
        task=task, model=model_name, n_train=fitted.n_train,
        n_validation=bench_data.size.n_validation, accuracy=round(fitted.accuracy, 4),
        n_accuracy=fitted.n_accuracy, fit_seconds=round(fitted.fit_seconds, 3),
        images_per_s=round(fitted.n_train * passes / fitted.fit_seconds, 1), passes=passes,
        n_parameters=count_parameters(model)["n_parameters"])
    floor = bench_data.majority_floor(task)
    info["majority_floor"] = round(floor, 4)
    if not bench_data.size.quick and not parse_variant(model_name)[0] == "cnn":
        # fitted on enough images to learn something: a model at the majority floor is broken, not slow
        assert fitted.accuracy > floor, f"{model_name} {task}: accuracy {fitted.accuracy:.3f} <= majority {floor:.3f}"
    if parse_variant(model_name)[0] == "cnn":
        info.update(_training_efficiency(model, fitted.info, request.getfixturevalue("peak_for")))
        info["target"] = "training >= 70% of the measured matmul peak"
        default_epochs = make_model(model_name, quick=bench_data.size.quick).epochs
        if passes < default_epochs:
            info["accuracy_note"] = (f"after {passes} of the configuration's {default_epochs} epochs (a speed "
                                     "measurement): not the CNN's accuracy, see the results' summary.md")
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("task", TASKS)
def test_batch_inference(benchmark, bench_data, fitted_models, call_timer, peak_for, task, model_name):
    """predict_proba on a fixed batch of the task's PrivateTest images (one warm-up call, then timed rounds)."""
    benchmark.group = f"inference: {task}"
    fitted = fitted_models.get(task, model_name)
    n_images, images_per_s = _time_batch_inference(benchmark, bench_data, call_timer, fitted.model, task)
    check_probabilities(fitted.model, bench_data.private(task, 16)[0], get_task(task).n_classes)
    info = bench_data.info(task=task, model=model_name, n_train=fitted.n_train, n_images=n_images,
                     accuracy=round(fitted.accuracy, 4), n_accuracy=fitted.n_accuracy,
                     images_per_s=round(images_per_s, 1))
    if parse_variant(model_name)[0] == "cnn":
        info["target"] = "CNN batch inference >= 1,000 images/s"
        info.update(_inference_efficiency(fitted.model, images_per_s, peak_for))
    benchmark.extra_info.update(info)


def _time_batch_inference(benchmark, bench_data, call_timer, model, task: str) -> tuple[int, float]:
    """Times model.predict_proba on the task's fixed inference batch (one warm-up call, then the size's rounds);
    returns (images in the batch, images/s of the median round)."""
    X, _ = bench_data.private(task, bench_data.size.n_inference)
    timer = call_timer(model.predict_proba)
    rounds = bench_data.size.inference_rounds
    benchmark.pedantic(timer, args=(X,), rounds=rounds, warmup_rounds=1)
    return len(X), len(X) / float(np.median(timer.last(rounds)))


def _inference_efficiency(model, images_per_s: float, peak_for) -> dict:
    """The CNN's forward arithmetic rate in batch inference against the matmul peak in its compute dtype. With
    test views the network runs once per view and image (forward_flops counts one view, on the crop size the
    network takes), so the images/s at 100% of the peak divide by the views too."""
    passes = model.prediction_views()
    peak = peak_for(compute_dtype(model))
    flops = forward_flops(model)
    gflops = flops * passes * images_per_s / 1e9
    return {"test_views": passes, "network_passes_per_image": passes, "inference_gflops": round(gflops, 2),
            "inference_fraction_of_peak": round(gflops / peak["gflops"], 4),
            "images_per_s_at_peak": round(peak["gflops"] * 1e9 / (flops * passes), 1)}


def _latency(benchmark, bench_data, timer, task: str):
    """Single-image calls of `timer` (a CallTimer) on the task's PrivateTest images in turn; returns the seconds
    of the timed calls."""
    X, _ = bench_data.private(task, max(bench_data.size.n_latency, 1))
    images = itertools.cycle(X[:, None])
    size = bench_data.size
    benchmark.pedantic(timer, setup=lambda: ((next(images),), {}), rounds=size.n_latency,
                       warmup_rounds=size.latency_warmup)
    return timer.last(size.n_latency)


@pytest.mark.parametrize("task", TASKS)
def test_latency(benchmark, bench_data, fitted_models, call_timer, task, model_name):
    """Single-image predict_proba: p50 and p95 over the timed calls (after the warm-up calls)."""
    benchmark.group = f"latency: {task}"
    fitted = fitted_models.get(task, model_name)
    ms = _latency(benchmark, bench_data, call_timer(fitted.model.predict_proba), task) * 1e3
    check_probabilities(fitted.model, bench_data.private(task, 1)[0], get_task(task).n_classes)
    info = bench_data.info(task=task, model=model_name, n_train=fitted.n_train, latency_n=len(ms),
                     latency_warmup=bench_data.size.latency_warmup, latency_p50_ms=round(float(np.median(ms)), 3),
                     latency_p95_ms=round(float(np.percentile(ms, 95)), 3), accuracy=round(fitted.accuracy, 4),
                     n_accuracy=fitted.n_accuracy, images_per_s=round(1e3 / float(np.median(ms)), 1))
    if parse_variant(model_name)[0] == "cnn":
        info["target"] = "CNN single-image p50 <= 5 ms"
        info["test_views"] = fitted.model.prediction_views()  # network passes per image
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("views", [1, 2, 10])
def test_cnn_inference_by_views(benchmark, bench_data, fitted_models, call_timer, peak_for, views):
    """The batch inference benchmark for the fitted 7class CNN with each number of test views (1: the single
    centre crop, what predict_proba_single_view costs; 2: + mirror; 10: ten-crop), beside the chosen one of
    test_batch_inference; extra_info images_per_s_at_peak is what the machine's peak allows."""
    task = "7class"
    benchmark.group = f"inference: {task}"
    fitted = fitted_models.get(task, "cnn")
    if views == 10 and fitted.model.crop_size is None:
        pytest.skip("ten-crop needs crop_size")
    model = copy.copy(fitted.model).set_params(test_views=views)  # shares the trained network
    n_images, images_per_s = _time_batch_inference(benchmark, bench_data, call_timer, model, task)
    X_test, y_test = bench_data.private(task, bench_data.size.n_accuracy)
    benchmark.extra_info.update(bench_data.info(
        task=task, model=f"cnn (test_views={views})", n_train=fitted.n_train, n_images=n_images,
        chosen_test_views=fitted.model.prediction_views(),
        accuracy=round(float(np.mean(model.predict(X_test) == y_test)), 4), n_accuracy=len(X_test),
        images_per_s=round(images_per_s, 1), **_inference_efficiency(model, images_per_s, peak_for)))


def test_cnn_network_call_latency(benchmark, bench_data, fitted_models, call_timer):
    """Diagnostic: the CNN's network alone on one view of one image (Keras predict_on_batch on the centre crop,
    no per-call data pipeline), to separate the network's own latency from the overhead of predict_proba."""
    task = "7class"
    benchmark.group = f"latency: {task}"
    fitted = fitted_models.get(task, "cnn")
    network = fitted.model.keras_network()
    size = int(network.input.shape[1])
    start = (48 - size) // 2
    timer = call_timer(lambda image: network.predict_on_batch(
        image[:, start:start + size, start:start + size].astype(np.float32)[..., None]))
    ms = _latency(benchmark, bench_data, timer, task) * 1e3
    benchmark.extra_info.update(bench_data.info(
        task=task, model="cnn (network only: predict_on_batch)", latency_n=len(ms),
        latency_p50_ms=round(float(np.median(ms)), 3), latency_p95_ms=round(float(np.percentile(ms, 95)), 3),
        accuracy=round(fitted.accuracy, 4), n_accuracy=fitted.n_accuracy,
        images_per_s=round(1e3 / float(np.median(ms)), 1)))
