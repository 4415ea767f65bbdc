"""The corruption suite's cost per model: corrupting the task's fixed inference batch of PrivateTest images under
every corruption at every severity and predicting them, as a cell does for robustness.npz
(fer_bench.cell_robustness.compute_cell_robustness), on the benchmarks' fitted models.

Group "robustness: <task>" puts the models side by side. extra_info holds the images corrupted and predicted, the
seconds per clean image (the suite's time divided by the batch size: multiply by a task's PrivateTest size for a
cell's cost), the same for the corruptions alone, and the mean accuracy over the corruptions and severities next
to the clean accuracy on the same batch. Nothing is asserted about speed: it depends on the machine.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fer_bench.cell_robustness import compute_cell_robustness
from fer_bench.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from fer_bench.tasks import get_task

TASKS = ("7class", "binary")


@pytest.mark.parametrize("task", TASKS)
def test_corruption_suite(benchmark, bench_data, fitted_models, task, model_name):
    benchmark.group = f"robustness: {task}"
    fitted = fitted_models.get(task, model_name)
    X, y = bench_data.private(task, bench_data.size.n_inference)
    ids = np.array([f"bench{k}" for k in range(len(X))])
    n_classes = get_task(task).n_classes
    start = time.perf_counter()
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            corrupt(X, name, severity, ids)
    corrupt_seconds = time.perf_counter() - start

    start = time.perf_counter()  # one round: benchmark.stats is None under --benchmark-disable
    robustness = benchmark.pedantic(compute_cell_robustness, args=(fitted.model, X, ids, n_classes),
                                    kwargs={"where": f"benchmark {model_name}"}, rounds=1, iterations=1)
    seconds = time.perf_counter() - start
    corrupted = np.mean([np.mean(robustness.probabilities(c, s).argmax(axis=1) == y)
                         for c in robustness.corruptions for s in robustness.severities])
    clean = np.mean(fitted.model.predict_proba(X).argmax(axis=1) == y)
    benchmark.extra_info.update(bench_data.info(
        task=task, model=model_name, n_images=len(X), n_predicted=len(X) * len(CORRUPTIONS) * len(SEVERITIES),
        seconds_per_clean_image=round(seconds / len(X), 5),
        corrupt_seconds_per_clean_image=round(corrupt_seconds / len(X), 5),
        clean_accuracy=round(float(clean), 4), mean_corrupted_accuracy=round(float(corrupted), 4)))
    assert robustness.proba.shape == (len(CORRUPTIONS), len(SEVERITIES), len(X), n_classes)
