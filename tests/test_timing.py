"""fer_bench.measure (FLOP counting, latency, model size, the matmul peak) and the report's timing.csv,
section and figure (fer_bench.report.timing, fer_bench.figures.timing)."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from fer_bench import measure
from fer_bench.errors import FerBenchError
from fer_bench.figures import FigureContext, render_figures
from fer_bench.figures import timing as timing_figure
from fer_bench.figures.png import MAX_PNG_BYTES
from fer_bench.manifest import Manifest
from fer_bench.models.base import ImageClassifier
from fer_bench.models.parameters import sklearn_parameter_count
from fer_bench.report import timing
from fer_bench.report.inputs import ReportInputs
from fer_bench.report.sections import SectionContext
from fer_bench.report.tables import Tables
from fer_bench.settings import Settings
from fer_bench.storage import StoredCell

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(60, 48, 48), dtype=np.uint8)
LABELS = np.arange(60) % 3


class PixelModel(ImageClassifier):
    """A minimal scikit-learn model on raw pixels: a scaler and a classifier held as fitted attributes."""

    def __init__(self, classifier=None):
        self.classifier = classifier

    def fit(self, X, y, sample_weight=None, validation_data=None):
        pixels = X.reshape(len(X), -1).astype(float)
        self.scaler_ = StandardScaler().fit(pixels)
        self.model_ = (self.classifier or LogisticRegression(max_iter=50)).fit(self.scaler_.transform(pixels), y)
        self.classes_ = self.model_.classes_
        self.candidates_ = [self.model_]  # a second reference to the same estimator must not be counted twice
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(self.scaler_.transform(X.reshape(len(X), -1).astype(float)))


class SlowEveryTenth:
    """predict_proba that records its inputs and takes >= 20 ms on every tenth call."""

    def __init__(self):
        self.shapes = []

    def predict_proba(self, X):
        self.shapes.append(X.shape)
        if len(self.shapes) % 10 == 0:
            time.sleep(0.02)
        return np.full((len(X), 2), 0.5)


# --- FLOPs (needs TensorFlow/Keras) ---------------------------------------------------------------------------

def _tiny_keras_model():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    from keras import layers

    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3)(inputs)                             # -> 6x6x4
    x = layers.DepthwiseConv2D(3, depth_multiplier=2)(x)        # -> 4x4x8
    x = layers.SeparableConv2D(3, 3, padding="same")(x)         # -> 4x4x3
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)                               # -> 2x2x3
    x = layers.Flatten()(x)                                     # -> 12
    outputs = layers.Dense(5, activation="softmax")(x)
    return keras.Model(inputs, outputs)


# 2*k_h*k_w*c_in*c_out*H_out*W_out per convolution, 2*n_in*n_out for the Dense layer
TINY_FORWARD_FLOPS = (2 * 3 * 3 * 1 * 4 * 6 * 6        # Conv2D
                      + 2 * 3 * 3 * 4 * 2 * 4 * 4      # DepthwiseConv2D, depth multiplier 2
                      + 2 * 3 * 3 * 8 * 1 * 4 * 4      # SeparableConv2D: depthwise part
                      + 2 * 1 * 1 * 8 * 3 * 4 * 4      # SeparableConv2D: pointwise part
                      + 2 * 12 * 5)                    # Dense


class KerasWrapper:
    """A model offering its network through the interface's keras_network()."""

    def __init__(self, network):
        self.keras_model_ = network

    def keras_network(self):
        return self.keras_model_

    def predict_proba(self, X):
        return np.asarray(self.keras_model_(X[..., None].astype("float32")[:, :8, :8], training=False))


def test_forward_flops_match_a_hand_count():
    network = _tiny_keras_model()
    assert measure.forward_flops(network) == TINY_FORWARD_FLOPS
    assert measure.forward_flops(KerasWrapper(network)) == TINY_FORWARD_FLOPS


def test_forward_flops_walk_nested_models():
    keras = pytest.importorskip("keras")
    inner = _tiny_keras_model()
    inputs = keras.Input((8, 8, 1))
    outer = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert measure.forward_flops(outer) == TINY_FORWARD_FLOPS + 2 * 5 * 2


def test_forward_flops_reject_non_keras_models():
    with pytest.raises(ValueError, match="not a Keras model"):
        measure.forward_flops(PixelModel())


def test_cnn_training_gflops_is_three_forward_passes_times_throughput():
    network = _tiny_keras_model()
    result = measure.cnn_training_gflops(KerasWrapper(network), 2500.0, peak_gflops=0.5)
    assert result["forward_flops_per_image"] == TINY_FORWARD_FLOPS
    assert result["train_flops_per_image"] == 3 * TINY_FORWARD_FLOPS
    assert result["train_gflops"] == pytest.approx(3 * TINY_FORWARD_FLOPS * 2500 / 1e9)
    assert result["fraction_of_peak"] == pytest.approx(result["train_gflops"] / 0.5)
    assert "fraction_of_peak" not in measure.cnn_training_gflops(network, 2500.0)
    # a fit that counted its FLOPs (progressive resizing: smaller images part of the time) gives its own rate
    counted = measure.cnn_training_gflops(network, 2500.0, peak_gflops=0.5, counted_gflops=0.2)
    assert counted["train_gflops"] == 0.2 and counted["fraction_of_peak"] == pytest.approx(0.4)


def test_compute_dtype_follows_the_layers_doing_the_arithmetic():
    keras = pytest.importorskip("keras")
    assert measure.compute_dtype(_tiny_keras_model()) == "float32"
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, dtype="mixed_bfloat16")(inputs)
    x = keras.layers.Flatten(dtype="mixed_bfloat16")(x)
    outputs = keras.layers.Dense(2, dtype="float32")(x)  # float32 logits, as mixed-precision models keep them
    assert measure.compute_dtype(keras.Model(inputs, outputs)) == "bfloat16"


def test_keras_parameters_are_count_params():
    network = _tiny_keras_model()
    assert measure.count_parameters(KerasWrapper(network)) == {"n_parameters": network.count_params(),
                                                              "n_support_vectors": None}


def test_timing_measurements_of_a_keras_model_add_flops_and_fraction_of_peak(monkeypatch, tmp_path):
    network = _tiny_keras_model()
    monkeypatch.setattr(measure, "matmul_peak", lambda *a, **k: {"gflops": 0.25, "backend": k["backend"],
                                                                "dtype": k["dtype"]})
    (tmp_path / "model.keras").write_bytes(b"x" * 100)
    result = measure.timing_measurements(KerasWrapper(network), IMAGES[:20], tmp_path, train_images_per_s=1000,
                                        n_latency=12, warmup=2)
    assert result["latency_n"] == 12
    assert result["model_bytes"] == 100
    assert result["matmul_peak_gflops"] == 0.25 and result["matmul_backend"] == "tensorflow"
    assert result["matmul_dtype"] == "float32"  # the network computes in float32
    assert result["train_gflops"] == pytest.approx(3 * TINY_FORWARD_FLOPS * 1000 / 1e9)
    assert result["fraction_of_peak"] == pytest.approx(result["train_gflops"] / 0.25)


# --- latency, size, memory -------------------------------------------------------------------------------------

def test_latency_calls_single_images_after_warmup():
    model = SlowEveryTenth()
    times = measure.latency_ms(model, IMAGES[:7], n_latency=30, warmup=4)
    assert len(times) == 30 and (times > 0).all()
    assert model.shapes == [(1, 48, 48)] * 34


def test_latency_rejects_empty_input_and_bad_counts():
    with pytest.raises(ValueError, match="at least one image"):
        measure.latency_ms(SlowEveryTenth(), IMAGES[:0])
    with pytest.raises(ValueError, match="n_latency"):
        measure.latency_ms(SlowEveryTenth(), IMAGES, n_latency=0)


def test_measure_inference_percentiles_count_and_batch():
    model = SlowEveryTenth()
    result = measure.measure_inference(model, IMAGES, n_latency=100, warmup=0)
    assert result["latency_n"] == 100
    # 10 of the 100 timed calls sleep 20 ms: the 95th percentile is one of them, the median is not
    assert result["latency_p50_ms"] <= result["latency_p95_ms"]
    assert result["latency_p95_ms"] >= 20.0
    assert result["latency_p50_ms"] < 20.0
    assert result["batch_images"] == len(IMAGES) and result["batch_images_per_s"] > 0
    assert (len(IMAGES), 48, 48) in model.shapes
    assert result["peak_rss_mb"] > 0 and "peak" in result["peak_rss_note"]


def test_sklearn_parameter_count_sums_the_fitted_arrays():
    model = PixelModel().fit(IMAGES, LABELS)
    expected = (model.scaler_.mean_.size + model.scaler_.scale_.size + model.model_.coef_.size
                + model.model_.intercept_.size)
    assert sklearn_parameter_count(model) == {"n_parameters": expected, "n_support_vectors": None}


def test_svm_parameter_count_is_support_vectors_and_dual_coefficients():
    model = PixelModel(SVC(kernel="linear")).fit(IMAGES, LABELS)
    svc = model.model_
    expected = (2 * model.scaler_.mean_.size + svc.support_vectors_.size + svc.dual_coef_.size
                + svc.intercept_.size)
    assert sklearn_parameter_count(model) == {"n_parameters": expected,
                                              "n_support_vectors": len(svc.support_vectors_)}


def test_directory_bytes_counts_nested_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"1" * 10)
    (tmp_path / "sub" / "b.bin").write_bytes(b"2" * 250)
    assert measure.directory_bytes(tmp_path) == 260
    with pytest.raises(FerBenchError, match="not a model folder"):
        measure.directory_bytes(tmp_path / "missing")


def test_timing_measurements_of_a_classic_model(tmp_path):
    model = PixelModel().fit(IMAGES, LABELS)
    model.save(tmp_path / "model")
    result = measure.timing_measurements(model, IMAGES, tmp_path / "model", n_latency=100)
    assert result["latency_n"] == 100
    assert result["model_bytes"] == (tmp_path / "model" / "model.joblib").stat().st_size
    assert result["n_parameters"] == measure.count_parameters(model)["n_parameters"]
    assert result["threads"]["usable_cores"] >= 1
    assert "batch_images" not in result  # compute_cell times the batch prediction itself
    assert not {"matmul_peak_gflops", "train_gflops"} & result.keys()


def test_matmul_peak_is_measured_once_per_holder(monkeypatch):
    first = measure.matmul_peak(0.05, backend="numpy", size=128)
    assert first["backend"] == "numpy" and first["dtype"] == "float32" and first["size"] == 128
    assert first["calls"] >= 3
    assert first["gflops"] >= first["mean_gflops"] > 0 and first["cpu_gflops"] > 0
    calls = []
    monkeypatch.setattr(measure, "matmul_peak", lambda seconds, **kw: calls.append(kw) or {"gflops": len(calls)})
    peaks, other = measure.MatmulPeaks(0.05), measure.MatmulPeaks(0.05)
    assert peaks.get(backend="numpy") == peaks.get(backend="numpy") == {"gflops": 1}  # measured once per holder
    assert other.get(backend="numpy") == {"gflops": 2}  # a second holder measures again: no module-level cache
    assert len(calls) == 2
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown matmul backend"):
        measure.matmul_peak(backend="fortran")
    with pytest.raises(ValueError, match="bfloat16"):
        measure.matmul_peak(backend="numpy", dtype="bfloat16")


# --- report: timing.csv and the figure -----------------------------------------------------------------------

def _cell(task, model, seed, timings):
    manifest = {"task": task, "model": model, "seed": seed, "class_names": ["a", "b"], "n_train": 100,
                "threads": {"OMP_NUM_THREADS": None}}
    empty = np.array([])
    return StoredCell(path=None, manifest=Manifest.from_json(manifest), params={}, timings=timings, splits=empty,
                      image_ids=empty, labels=empty.astype(int), proba=np.zeros((0, 2)))


CNN_TIMINGS = {"fit_seconds": 120.5, "n_train": 3000, "train_images_per_s": 250.0,
               "predict_images_per_s_PrivateTest": 1500.0, "predict_images_per_s_PublicTest": 1400.0,
               "latency_p50_ms": 2.5, "latency_p95_ms": 4.0, "n_parameters": 1176359, "model_bytes": 4_800_000,
               "peak_rss_mb": 1600.25, "train_flops_per_image": 704702976, "matmul_peak_gflops": 110.0,
               "matmul_dtype": "bfloat16",
               "threads": {"usable_cores": 2, "tf_intra_op": 0, "OMP_NUM_THREADS": None}}
SVM_TIMINGS = {"fit_seconds": 30.0, "n_train": 3000, "train_images_per_s": 100.0,
               "predict_images_per_s_PrivateTest": 5000.0, "latency_p50_ms": 0.8, "latency_p95_ms": 1.5,
               "n_parameters": 500000, "model_bytes": 2_000_000, "peak_rss_mb": 900.0,
               "threads": {"usable_cores": 2}}
OLD_TIMINGS = {"fit_seconds": 5.0, "n_train": 3000, "train_images_per_s": 600.0,
               "predict_images_per_s_PrivateTest": 90000.0}  # a cell run before timing_measurements existed


def _timing(out, cells, metric_rows):
    """timing.csv text, the timing section's markdown and the timing PNG bytes (None when not drawn), as the
    report computes them."""
    inputs = ReportInputs(out=out, cells=cells, settings=Settings())
    rows = timing.timing_rows(inputs, metric_rows)
    figures = render_figures(FigureContext([], Settings(), out, timing_rows=rows),
                             figures=(timing_figure.TIMING,))
    section = timing.timing_section(SectionContext(inputs, Tables(timing_rows=rows), figures))
    return timing.timing_csv(rows), section, figures.files.get("figures/timing.png")


def _report(out):
    cells = [_cell("7class", "cnn", 0, CNN_TIMINGS), _cell("7class", "hog_svm", 0, SVM_TIMINGS),
             _cell("binary", "logreg", 1, OLD_TIMINGS)]
    metric_rows = [
        {"task": "7class", "model": "cnn", "seed": 0, "split": "PrivateTest", "subset": "all", "accuracy": 0.65},
        {"task": "7class", "model": "cnn", "seed": 0, "split": "PrivateTest", "subset": "clean", "accuracy": 0.6},
        {"task": "7class", "model": "cnn", "seed": 0, "split": "PublicTest", "subset": "all", "accuracy": 0.7},
        {"task": "7class", "model": "hog_svm", "seed": 0, "split": "PrivateTest", "subset": "all",
         "accuracy": 0.5},
        {"task": "binary", "model": "logreg", "seed": 1, "split": "PrivateTest", "subset": "all",
         "accuracy": 0.75},
    ]
    return _timing(out, cells, metric_rows)


def test_timing_csv_columns_and_values(tmp_path):
    text, _, _ = _report(tmp_path)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(timing.TIMING_COLUMNS)
    assert [(r["task"], r["model"], r["seed"]) for r in rows] == [
        ("7class", "cnn", "0"), ("7class", "hog_svm", "0"), ("binary", "logreg", "1")]
    cnn, svm, old = rows
    assert cnn["accuracy"] == "0.650000"  # PrivateTest, subset all
    assert cnn["fit_seconds"] == "120.500" and cnn["predict_images_per_s"] == "1500.0"
    assert cnn["train_gflops"] == f"{704702976 * 250.0 / 1e9:.3f}"  # derived from the stored FLOPs per image
    assert cnn["fraction_of_peak"] == f"{704702976 * 250.0 / 1e9 / 110.0:.4f}"
    assert cnn["matmul_dtype"] == "bfloat16"
    assert cnn["threads"] == "tf_intra_op=0;usable_cores=2"
    assert cnn["n_parameters"] == "1176359" and cnn["model_bytes"] == "4800000"
    assert svm["train_gflops"] == svm["matmul_peak_gflops"] == svm["matmul_dtype"] == svm["fraction_of_peak"] == ""
    assert old["latency_p50_ms"] == old["n_parameters"] == old["peak_rss_mb"] == ""
    assert old["threads"] == ""  # falls back to the manifest, where nothing was set
    assert old["accuracy"] == "0.750000"


def test_the_rate_of_a_counted_fit_and_the_fraction_of_the_machines_highest_peak(tmp_path):
    """A fit that counted its FLOPs trains at their total over its seconds (progressive resizing trains smaller
    images part of the time: full-size FLOPs x images/s would overstate it); the fraction is of the highest peak
    measured on that machine and dtype (a cell that measured it while the machine was shared read it low)."""
    counted = _cell("7class", "cnn_fast", 0, {**CNN_TIMINGS, "train_flops": 12.05e12, "matmul_peak_gflops": 55.0})
    full = _cell("5class", "cnn", 0, CNN_TIMINGS)  # peak 110 on the same machine
    rows = timing.timing_rows(ReportInputs(out=tmp_path, cells=[counted, full], settings=Settings()), [])
    assert rows[0]["train_gflops"] == pytest.approx(12.05e12 / 120.5 / 1e9)  # not 704702976 x 250 / 1e9
    assert rows[0]["fraction_of_peak"] == pytest.approx(rows[0]["train_gflops"] / 110.0)
    assert rows[1]["fraction_of_peak"] == pytest.approx(704702976 * 250.0 / 1e9 / 110.0)
    assert rows[0]["matmul_peak_gflops"] == 55.0  # the cell's own measurement is kept as it was


def test_training_tflop_is_the_recorded_count_else_derived_from_the_epochs(tmp_path):
    """train_tflop: the cell's own train_flops; for a network's cell stored before that was recorded, its FLOPs
    per training image x training images x epochs run (params.json); empty for a model without counted FLOPs."""
    recorded = _cell("7class", "cnn", 0, {**CNN_TIMINGS, "train_flops": 2.5e15})
    derived = _cell("5class", "cnn", 0, CNN_TIMINGS)
    derived.params["selected"] = {"epochs_run": 60}
    unknown_epochs = _cell("binary", "cnn", 0, CNN_TIMINGS)
    inputs = ReportInputs(out=tmp_path, cells=[recorded, derived, unknown_epochs,
                                               _cell("7class", "hog_svm", 0, SVM_TIMINGS)], settings=Settings())
    rows = timing.timing_rows(inputs, [])
    assert [r["train_tflop"] for r in rows] == [pytest.approx(2500.0), pytest.approx(704702976 * 3000 * 60 / 1e12),
                                                None, None]
    section = timing.timing_markdown(rows, "PrivateTest")
    assert f"| {2500:,.0f} TFLOP at " in section and f"| {704702976 * 3000 * 60 / 1e12:,.0f} TFLOP at " in section
    figures = render_figures(FigureContext([], Settings(), tmp_path, timing_rows=rows),
                             figures=(timing_figure.COMPUTE,))
    assert "figures/accuracy_vs_compute.png" not in figures.files  # no accuracy: nothing to plot


def test_the_compute_figure_plots_the_counted_models_only(tmp_path):
    cells = [_cell("7class", "cnn", 0, {**CNN_TIMINGS, "train_flops": 2.5e15}),
             _cell("7class", "hog_svm", 0, SVM_TIMINGS)]
    metric_rows = [{"task": "7class", "model": m, "seed": 0, "split": "PrivateTest", "subset": "all",
                    "accuracy": a} for m, a in (("cnn", 0.65), ("hog_svm", 0.5))]
    rows = timing.timing_rows(ReportInputs(out=tmp_path, cells=cells, settings=Settings()), metric_rows)
    fig = timing_figure.compute_figure(rows, "PrivateTest")
    (ax,) = fig.axes
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert np.allclose(offsets, [[2500.0, 65.0], [2500.0, 65.0]])  # the seed and the mean of the one model
    assert ax.get_xscale() == "log"
    assert timing_figure.compute_figure(rows[1:], "PrivateTest") is None


def test_timing_report_is_deterministic_and_embeds_the_figure(tmp_path):
    first_csv, first_section, png = _report(tmp_path / "a")
    second_csv, second_section, second_png = _report(tmp_path / "b")
    assert second_csv == first_csv and second_png == png
    assert png.startswith(b"\x89PNG") and len(png) <= MAX_PNG_BYTES
    assert b"Software" not in png and b"matplotlib" not in png
    assert "](figures/timing.png)" in first_section
    assert first_section == second_section
    assert "| 7class | cnn | M1 | 65.0 |" in first_section  # M1: the machine the legend names


def test_timing_report_without_fit_times_has_no_figure(tmp_path):
    text, section, png = _timing(tmp_path, [_cell("7class", "logreg", 0, {})], [])
    assert png is None
    assert "figures/timing.png" not in section
    assert text.splitlines()[1] == "7class,logreg,0,100" + "," * (len(timing.TIMING_COLUMNS) - 4)


def test_timing_section_warns_when_cells_were_timed_on_machines_of_different_speed():
    def row(task, peak):
        values = {column: None for column in timing.TIMING_COLUMNS}
        values.update(task=task, model="cnn", seed=0, matmul_peak_gflops=peak, matmul_dtype="bfloat16",
                      threads="")
        return values

    same_speed = timing.timing_markdown([row("7class", 1000.0), row("5class", 1100.0)], "PrivateTest")
    assert "different speed" not in same_speed and "M1 1100.0 GFLOP/s (bfloat16)" in same_speed  # the highest
    mixed = timing.timing_markdown([row("7class", 1015.0), row("5class", 417.0)], "PrivateTest")
    assert "M1's cells measured bfloat16 peaks of different speed** (417.0–1015.0 GFLOP/s, 2.4×)" in mixed
