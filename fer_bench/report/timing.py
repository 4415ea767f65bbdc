"""The report's timing table: timing.csv and the timing section, from each cell's stored timings.json (measured
by fer_bench.measure at run time; the figure: fer_bench.figures.timing)."""

from __future__ import annotations

import math
from collections import defaultdict

from fer_bench import outline
from fer_bench.figures.timing import grouped_rows, mean_of
from fer_bench.provenance import machine_label
from fer_bench.report.seeds import mean_and_std
from fer_bench.report.tables import csv_text

#: fit times marked: a seed's fit shared the CPUs with other work; the seeds' fits ran on different machines
SHARED_FIT_MARK, MIXED_MACHINES_MARK = "†", "‡"
FIT_MARK_MEANINGS = {SHARED_FIT_MARK: "a seed's fit shared the CPUs with other work",
                     MIXED_MACHINES_MARK: "seeds fitted on different machines"}
#: measured matmul peaks of one dtype further apart than this factor mean the cells ran on machines of
#: different speed, which the timing section then says
PEAK_SPREAD_WARNING = 1.25
#: timing.csv columns, in order (see TIMING_CSV_SCHEMA)
TIMING_COLUMNS = [
    "task", "model", "seed", "n_train", "fit_seconds", "train_images_per_s", "predict_images_per_s", "views",
    "single_view_images_per_s", "latency_p50_ms", "latency_p95_ms", "n_parameters", "model_bytes", "peak_rss_mb",
    "train_gflops", "matmul_peak_gflops", "matmul_dtype", "fraction_of_peak", "threads", "accuracy", "machine",
    "fit_load_average", "fit_shared", "train_tflop",
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
    views                    test-time views per image of that call (network passes per image, e.g. the CNN's
                             crops); empty for cells run before it was recorded
    single_view_images_per_s the same images / seconds with one view per image, when views > 1 (1 decimal)
    latency_p50_ms,          median and 95th percentile of single-image predict_proba calls (100 PrivateTest
    latency_p95_ms           images, after 10 warm-up calls), milliseconds (3 decimals)
    n_parameters             learned numbers the model predicts with: Keras count_params() for the CNN;
                             coefficients, intercepts, support vectors, dual coefficients and scaler
                             statistics of the fitted scikit-learn estimators for the classic models
    model_bytes              bytes on disk of the saved model folder (runs/.../model/)
    peak_rss_mb              peak resident memory of the process that ran the cell, up to the end of that cell
                             (ru_maxrss, MiB; includes the data set and cells run before it) (1 decimal)
    train_gflops             CNN only: the counted training FLOPs of the fit (train_flops) / fit_seconds / 1e9,
                             for cells stored before fits counted them 3 x forward FLOPs per image (Conv/Dense
                             multiply-adds x 2) x train_images_per_s / 1e9 (the same for a fixed input size);
                             the fit's time includes each epoch's PublicTest evaluation and the first epoch's
                             tracing, so this is a lower bound of the steady training rate (`pytest
                             benchmarks` measures that one) (3 decimals)
    matmul_peak_gflops       CNN only: the machine's measured matmul rate in the CNN's compute dtype (2048x2048,
                             fastest call, TensorFlow when installed, NumPy otherwise), measured once per process
                             and dtype (3 decimals)
    matmul_dtype             that compute dtype: float32, or bfloat16 under mixed precision
    fraction_of_peak         train_gflops / the machine's peak: the highest matmul_peak_gflops of the folder's
                             cells on the same machine and dtype (one measured while the machine was shared
                             reads low) (4 decimals)
    threads                  thread settings of the process, `key=value` pairs joined by `;` (unset ones omitted)
    accuracy                 PrivateTest accuracy of the cell (from metrics.csv, subset all) (6 decimals)
    machine                  where the cell ran: CPU, cores and widest instruction set (AVX2, AVX-512,
                             AVX512_BF16, AMX-BF16...; "instruction set not recorded" for cells run before it was):
                             compare times within one machine
    fit_load_average         the machine's 1-minute load average at the start or end of fit, whichever is higher
                             (empty for cells run before it was recorded) (2 decimals)
    fit_shared               1 when that load exceeded the machine's cores (the fit shared the CPUs with other
                             work, so its time is inflated), 0 when not, empty when not recorded
    train_tflop              networks only: the training arithmetic of the whole fit in TFLOP (10^12): every
                             epoch's training images x 3 x forward FLOPs per image (timings.json train_flops;
                             for cells stored before it was recorded, train_flops_per_image x n_train x the
                             epochs params.json records); validation passes and test views excluded (3 decimals)
"""

#: decimals of the float columns of timing.csv (fixed, so the same stored timings give the same bytes)
_DECIMALS = {"fit_seconds": 3, "train_images_per_s": 1, "predict_images_per_s": 1, "single_view_images_per_s": 1,
             "latency_p50_ms": 3, "latency_p95_ms": 3, "peak_rss_mb": 1, "train_gflops": 3, "matmul_peak_gflops": 3,
             "fraction_of_peak": 4, "accuracy": 6, "fit_load_average": 2, "train_tflop": 3}


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


def timing_rows(inputs, metric_rows: list[dict]) -> list[dict]:
    """One row per stored cell with the TIMING_COLUMNS values (None where not measured)."""
    split = inputs.settings.headline_split
    accuracy = {(r["task"], r["model"], r["seed"]): r["accuracy"] for r in metric_rows
                if r["split"] == split and r["subset"] == "all"}
    rows = []
    for cell in inputs.cells:
        t = cell.timings
        train_rate = _number(t.get("train_images_per_s"))
        train_gflops = _number(t.get("train_gflops"))
        train_flops, fit_seconds = _number(t.get("train_flops")), _number(t.get("fit_seconds"))
        if train_flops is not None and fit_seconds:
            # the counted FLOPs of the whole fit: with progressive resizing part of it trains on smaller images,
            # so full-size FLOPs per image x images/s (what cells recorded) would overstate the rate
            train_gflops = train_flops / fit_seconds / 1e9
        elif train_gflops is None and _number(t.get("train_flops_per_image")) and train_rate:
            train_gflops = t["train_flops_per_image"] * train_rate / 1e9
        peak = _number(t.get("matmul_peak_gflops"))
        rows.append({
            "task": cell.task, "model": cell.model, "seed": cell.seed,
            "n_train": t.get("n_train", cell.manifest.n_train),
            "fit_seconds": _number(t.get("fit_seconds")), "train_images_per_s": train_rate,
            "predict_images_per_s": _number(t.get(f"predict_images_per_s_{split}")),
            "views": t.get("prediction_views"),
            "single_view_images_per_s": _number(t.get("predict_images_per_s_single_view")),
            "latency_p50_ms": _number(t.get("latency_p50_ms")), "latency_p95_ms": _number(t.get("latency_p95_ms")),
            "n_parameters": t.get("n_parameters"), "model_bytes": t.get("model_bytes"),
            "peak_rss_mb": _number(t.get("peak_rss_mb")), "train_gflops": train_gflops,
            "matmul_peak_gflops": peak,
            "matmul_dtype": t.get("matmul_dtype") if peak is not None else None,
            "fraction_of_peak": None,  # against the machine's peak, below
            "threads": _threads_text(t.get("threads", cell.manifest.threads)),
            "accuracy": _number(accuracy.get((cell.task, cell.model, cell.seed))),
            "machine": machine_label(cell.manifest.machine) if cell.manifest.machine is not None else None,
            # not a timing.csv column: the timing section's stages table
            "stages": t.get("stages") if isinstance(t.get("stages"), dict) else None,
            **_fit_load(t.get("load_average_fit"), (cell.manifest.machine or {}).get("cores")),
            "train_tflop": _training_tflop(t, cell.params),
        })
    # The machine's peak: the highest measured on it in the compute dtype. Each cell measures the peak once (a
    # few seconds), so a measurement while the machine was shared with other work reads low (half the peak was
    # seen), and a rate against it would read near 100%.
    peaks = {}
    for row in rows:
        if row["matmul_peak_gflops"] is not None:
            key = (row["machine"], row["matmul_dtype"])
            peaks[key] = max(peaks.get(key, 0.0), row["matmul_peak_gflops"])
    for row in rows:
        peak = peaks.get((row["machine"], row["matmul_dtype"]))
        if row["train_gflops"] is not None and peak:
            row["fraction_of_peak"] = row["train_gflops"] / peak
    return rows


def _training_tflop(timings: dict, params: dict) -> float | None:
    """TFLOP of the whole training: as the cell recorded it, else (a network's cell stored before that was
    recorded) its FLOPs per training image x training images x the epochs it ran; None for other models."""
    flops = _number(timings.get("train_flops"))
    if flops is None:
        per_image, n_train = _number(timings.get("train_flops_per_image")), _number(timings.get("n_train"))
        epochs = _number(((params or {}).get("selected") or {}).get("epochs_run"))
        if per_image is None or n_train is None or epochs is None:
            return None
        flops = per_image * n_train * epochs
    return flops / 1e12


def fit_time_marks(timing_rows: list[dict]) -> dict[tuple[str, str], str]:
    """(task, model) -> the marks of its fit time over the seeds, from the timing rows: † when a seed's fit shared
    the machine with other work (fit_shared: the time is inflated), ‡ when the seeds ran on different machines (a
    mean mixes them: the timing table has a row per machine)."""
    return {key: (SHARED_FIT_MARK if any(r.get("fit_shared") for r in rows) else "")
            + (MIXED_MACHINES_MARK if len({r["machine"] for r in rows if r["machine"] is not None}) > 1 else "")
            for key, rows in grouped_rows(timing_rows).items()}


def _fit_load(loads, cores) -> dict:
    """The higher recorded load average around the fit, and whether it exceeded the machine's cores."""
    loads = [value for value in (loads or []) if value is not None]
    if not loads:
        return {"fit_load_average": None, "fit_shared": None}
    load = float(max(loads))
    return {"fit_load_average": load, "fit_shared": None if not cores else load > cores}


def _csv_value(column: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if column in _DECIMALS:
        return f"{float(value):.{_DECIMALS[column]}f}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def timing_csv(rows: list[dict]) -> str:
    """timing.csv text (TIMING_COLUMNS, fixed decimals; see TIMING_CSV_SCHEMA)."""
    return csv_text(TIMING_COLUMNS, rows, _csv_value)


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


def _spread(group: list[dict], key: str, decimals: int, scale: float = 1.0) -> str:
    """A column over seeds: the value for one seed, mean ± std (n - 1) for several, "–" when not measured."""
    values = [scale * r[key] for r in group if r.get(key) is not None]
    if len(values) <= 1:
        return _fixed(values[0] if values else None, decimals)
    mean, std = mean_and_std(values)
    return f"{_fixed(mean, decimals)} ± {_fixed(std, decimals)}"


def _inference_text(group: list[dict]) -> str:
    """Batch images/s as the model predicts; with several test-time views, their number and one view's rate."""
    text = _spread(group, "predict_images_per_s", 0)
    views = [r["views"] for r in group if r.get("views") is not None]
    if views and max(views) > 1:
        # seeds may have chosen different views on PublicTest: each seed's, not their mean
        shown = f"{views[0]:g}" if len(set(views)) == 1 else "/".join(f"{v:g}" for v in views)
        text += f" ({shown} views; 1 view: {_spread(group, 'single_view_images_per_s', 0)})"
    return text


def _compute_text(group: list[dict]) -> str:
    """Training TFLOP, then the achieved GFLOP/s and its fraction of the matmul peak ("972 TFLOP at 255.8 (61.4%)";
    "–" for models without counted FLOPs)."""
    fraction = mean_of(group, "fraction_of_peak")
    rate = _spread(group, "train_gflops", 1) + (f" ({100 * fraction:.1f}%)" if fraction is not None else "")
    tflop = mean_of(group, "train_tflop")
    if tflop is None:
        return rate
    decimals = 0 if tflop >= 100 else 1 if tflop >= 1 else 3  # a full FER-2013 fit, a short one, a synthetic one
    counts = {round(r["train_tflop"], decimals) for r in group if r.get("train_tflop") is not None}
    # seeds of one recipe and data count the same FLOPs: one number, not "± 0"
    text = _fixed(tflop, decimals) if len(counts) == 1 else _spread(group, "train_tflop", decimals)
    return f"{text} TFLOP at {rate}"


def _table_head(split: str, several: bool) -> list[str]:
    """The timing section's opening sentence and table header (a seeds column when some model has several)."""
    return [
        ("Mean ± std over seeds (n − 1) per task, model and machine (parameters, size on disk and peak RSS: the "
         "mean)" if several else "Mean over seeds per task, model and machine")
        + f"; accuracy on {split}. Inference = one batch predict_proba "
        f"call on {split}; latency = single-image predict_proba calls; training compute = the fit's "
        "TFLOP (3 × the network's forward Conv/Dense FLOPs per image × images × epochs) at the achieved "
        "GFLOP/s. Compare times between rows of one machine only. Schema of every column: `timing.csv`.",
        "",
        "| task | model | machine | " + ("seeds | " if several else "") + "accuracy % | fit time (s) | train img/s | "
        "inference img/s | latency p50 / p95 (ms) | parameters | size on disk | peak RSS | training compute: TFLOP "
        "at GFLOP/s (% of matmul peak) |",
        "|---|---|---|" + ("---|" if several else "") + "---|---|---|---|---|---|---|---|---|",
    ]


def _accuracy_text(group: list[dict]) -> str:
    """Accuracy over seeds; one value when every seed scored the same (a deterministic model)."""
    values = {r["accuracy"] for r in group if r.get("accuracy") is not None}
    return _spread(group[:1] if len(values) == 1 else group, "accuracy", 1, scale=100)


def _fit_time_text(group: list[dict]) -> str:
    """Fit seconds over seeds, marked † when a seed's fit shared the machine with other work."""
    return _spread(group, "fit_seconds", 1) + (f" {SHARED_FIT_MARK}" if any(r.get("fit_shared") for r in group)
                                               else "")


def _table_line(task: str, model: str, machine: str, group: list[dict], several: bool) -> str:
    peak_rss = mean_of(group, "peak_rss_mb")
    return (f"| {task} | {model} | {machine} | " + (f"{len(group)} | " if several else "")
            + f"{_accuracy_text(group)} | {_fit_time_text(group)} | "
            f"{_spread(group, 'train_images_per_s', 0)} | {_inference_text(group)} | "
            f"{_spread(group, 'latency_p50_ms', 2)} / {_spread(group, 'latency_p95_ms', 2)} | "
            f"{_count_text(mean_of(group, 'n_parameters'))} | {_bytes_text(mean_of(group, 'model_bytes'))} | "
            f"{_bytes_text(None if peak_rss is None else peak_rss * 2**20)} | {_compute_text(group)} |")


def _stage_text(group: list[dict]) -> str | None:
    """The stages one model timed in its fits ("vocabulary 12.3 s; encode 456 images/s"), each the mean over the
    seeds; None when it timed none."""
    stages = [r["stages"] for r in group if r.get("stages")]
    parts = []
    for key in dict.fromkeys(key for timed in stages for key in timed):
        value = mean_of([{"value": _number(timed.get(key))} for timed in stages], "value")
        if value is None:
            continue
        if key.endswith("_images_per_s"):
            parts.append(f"{key.removesuffix('_images_per_s').replace('_', ' ')} {value:,.0f} images/s")
        else:
            parts.append(f"{key.removesuffix('_seconds').replace('_', ' ')} {value:,.1f} s")
    return "; ".join(parts) or None


def _stages_sentence(grouped: dict) -> str | None:
    """The sentences on the stages the models timed in their fits (timings.json `stages`), when any did, a clause
    per (task, model, machine); `grouped`: the timing rows by (task, model, machine label), as the timing table
    groups them. Sentences closing the notes' paragraph, not a table, so summary.md stays within its length."""
    sentences = [f"**{task} {model}** ({machine}): {text}." for (task, model, machine), group in grouped.items()
                 if (text := _stage_text(group)) is not None]
    if not sentences:
        return None
    return "Stages of fit, as the models timed them (mean over seeds; `stages` in timings.json). " + " ".join(sentences)


def timing_markdown(rows: list[dict], split: str, figure_parts: list[str] | None = None) -> str:
    """The timing section: the table, the notes on peaks and threads, then the timing figure when drawn."""
    machines = {name: f"M{k}" for k, name in enumerate(sorted({r["machine"] or "not recorded" for r in rows}), 1)}
    grouped = defaultdict(list)  # by task, model and machine: times of different machines side by side
    for (task, model), group in grouped_rows(rows).items():
        for row in group:
            grouped[(task, model, machines[row["machine"] or "not recorded"])].append(row)
    several = any(len(group) > 1 for group in grouped.values())
    lines = _table_head(split, several)
    lines += [_table_line(task, model, machine, group, several) for (task, model, machine), group in grouped.items()]
    measured_peaks = defaultdict(list)  # (machine, dtype) -> every cell's measured peak
    for r in rows:
        if r["matmul_peak_gflops"] is not None:
            measured_peaks[(r["machine"], r["matmul_dtype"] or "float32")].append(r["matmul_peak_gflops"])
    peaks = {key: max(values) for key, values in measured_peaks.items()}
    threads = sorted({r["threads"] for r in rows if r["threads"]})
    notes = ["Machines: " + "; ".join(f"{label} {name}" for name, label in machines.items()) + "."]
    if any(r.get("fit_shared") for r in rows):
        notes.append("†: a seed's fit ran while the machine's load average exceeded its cores (shared with other "
                     "work), so its time is inflated (`fit_load_average` in `timing.csv`).")
    if peaks:
        notes.append("Matmul peak (2048×2048, fastest call, in the CNN's compute dtype), the highest its cells "
                     "measured on each machine, which the % of peak divides by: "
                     + ", ".join(f"{machines[machine or 'not recorded']} {gflops:.1f} GFLOP/s ({dtype})"
                                 for (machine, dtype), gflops in peaks.items()) + ".")
    for (machine, dtype), measured in measured_peaks.items():
        if max(measured) > PEAK_SPREAD_WARNING * min(measured):
            # a peak measured while the machine was shared reads low; cells resumed or rerun on another day may
            # also land on a host of the same name but another speed
            notes.append(f"**{machines[machine or 'not recorded']}'s cells measured {dtype} peaks of different speed** "
                         f"({min(measured):.1f}–{max(measured):.1f} GFLOP/s, {max(measured) / min(measured):.1f}×): "
                         "a machine shared with other work reads low, a host of the same name may be slower; "
                         "compare times across rows with care.")
    if threads:
        notes.append("Thread settings: " + "; ".join(f"`{t}`" for t in threads) + ".")
    notes.append("Peak RSS is the process's maximum resident memory up to the end of the cell (it includes the "
                 "data set and any cells run before it in the same process). Times are wall-clock on the machine "
                 "named in the row.")
    stages = _stages_sentence(grouped)
    lines += ["", " ".join([*notes, stages] if stages else notes)]
    if figure_parts:
        lines += ["", "\n".join(figure_parts)]  # one list: a figure a line
    return "\n".join(lines)


def timing_section(ctx) -> str | None:
    """The timing section of summary.md (None when no cell was timed)."""
    if not ctx.tables.timing_rows:
        return None
    return timing_markdown(ctx.tables.timing_rows, ctx.inputs.settings.headline_split,
                           ctx.figures.parts.get(outline.TIMING))
