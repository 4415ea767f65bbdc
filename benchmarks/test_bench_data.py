"""Data loading (cold: decoding every image; warm: from fer-bench's cache), HOG feature extraction and bow_svm's dense
descriptors."""

from __future__ import annotations

import os

import pytest
from fer_bench.baselines.bow_svm import make_bow_svm
from fer_bench.baselines.dense_descriptors import DESCRIPTORS, dense_descriptors
from fer_bench.baselines.features import hog_features

from fer_bench.data import load_path
from fer_bench.data.cache import cache_dir

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.benchmark(group="data loading")
def test_load_cold(benchmark, bench_data, call_timer):
    """Decode the whole data set from its files, cache disabled (once: it is the slow path)."""
    timer = call_timer(load_path)
    dataset = benchmark.pedantic(timer, args=(bench_data.source,), kwargs={"use_cache": False}, rounds=1)
    assert len(dataset) == len(bench_data.dataset)
    benchmark.extra_info.update(bench_data.info(
        n_images=len(dataset), format="folder" if bench_data.source.is_dir() else "csv",
        images_per_s=round(len(dataset) / timer.seconds[-1], 1)))


@pytest.mark.benchmark(group="data loading")
def test_load_warm(benchmark, bench_data, call_timer):
    """Load the same data from the cache the session's first load wrote (a .npz read and a fingerprint check)."""
    assert any(cache_dir().glob("*.npz")), f"no cached data set in {cache_dir()}"
    timer = call_timer(load_path)
    dataset = benchmark.pedantic(timer, args=(bench_data.source,), rounds=3, warmup_rounds=1)
    assert dataset.fingerprint == bench_data.dataset.fingerprint
    benchmark.extra_info.update(bench_data.info(
        n_images=len(dataset), cache=str(cache_dir()),
        images_per_s=round(len(dataset) / min(timer.last(3)), 1)))


@pytest.mark.benchmark(group="HOG extraction")
@pytest.mark.parametrize("n_jobs", [CORES, 1], ids=[f"{CORES}-threads", "1-thread"])
def test_hog_throughput(benchmark, bench_data, call_timer, n_jobs):
    """HOG descriptors (the hog_svm model's default settings, see baselines/features.py) of Training images."""
    images = bench_data.dataset.split("Training").images[:bench_data.size.n_hog]
    timer = call_timer(hog_features)
    features = benchmark.pedantic(timer, args=(images,), kwargs={"n_jobs": n_jobs, "verbose": False}, rounds=3,
                                  warmup_rounds=1)
    assert features.shape[0] == len(images)
    benchmark.extra_info.update(bench_data.info(
        n_images=len(images), n_jobs=n_jobs, n_features=features.shape[1],
        images_per_s=round(len(images) / min(timer.last(3)), 1),
        **({"target": ">= 4,000 images/s on 2 cores"} if n_jobs == CORES else {})))


@pytest.mark.benchmark(group="bow_svm descriptors")
@pytest.mark.parametrize("kind", DESCRIPTORS)
def test_bow_descriptor_throughput(benchmark, bench_data, call_timer, kind):
    """One batch of bow_svm's dense descriptors (its default scales and step; one thread, as each of fit's batch
    threads runs) of Training images; daisy, computed face by face, on a tenth of them."""
    model = make_bow_svm(quick=bench_data.size.quick)
    images = bench_data.dataset.split("Training").images[:model.batch_size // (10 if kind == "daisy" else 1)]
    timer = call_timer(dense_descriptors)
    descriptors = benchmark.pedantic(timer, args=(images, kind, model.scales, model.step), rounds=3, warmup_rounds=1)
    assert descriptors.shape[0] == len(images)
    benchmark.extra_info.update(bench_data.info(
        kind=kind, n_images=len(images), descriptors_per_image=descriptors.shape[1],
        descriptor_length=descriptors.shape[2], images_per_s=round(len(images) / min(timer.last(3)), 1)))
