"""Ablation of cnn_fast's recipe on FER-2013, scored on PublicTest only: each run fits one model variant on
Training (or a seeded stratified subset of it) with PublicTest as its validation data, exactly as a cell's fit
does, and appends one JSON line to --out. PrivateTest is never loaded.

    python benchmarks/cnn_fast_ablation.py --data /path/to/fer2013 --out cnn-fast-ablation.jsonl
    python benchmarks/cnn_fast_ablation.py --data ... --out ... --train-images 8000 --epochs 10 --runs cnn_fast,cnn
    python benchmarks/cnn_fast_ablation.py --out cnn-fast-ablation.jsonl --plot compute.png --cells results/fer2013

Every run trains cnn_fast's recipe with one ingredient changed (RUNS), at the same number of epochs (--epochs,
default cnn_fast's), except "cnn": cnn's recipe at the epochs that cost the same training FLOPs as cnn_fast's.
A line holds the run's name and model parameters, the task, training images and epochs, PublicTest accuracy of the
kept weights with 1, 2 and 10 test views and the views kept, the best epoch, the training TFLOP counted by the
model, the fit's minutes, the machine's load average around the fit (above its cores: the minutes were shared),
the machine and the commit. Runs already in --out (same name, training images and epochs) are skipped, so an
interrupted ablation resumes. docs/cnn-recipe.md ("cnn_fast") holds the table of such an ablation.

--plot draws PublicTest accuracy (the kept views) against training TFLOP for the full-data runs of --out (no
fitting), with each seed of `cnn`'s own cells in --cells (its default 60-epoch recipe: its PublicTest accuracy and
its TFLOP from the folder's timing table) beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from fer_bench.data import load_dataset
from fer_bench.models import make_model
from fer_bench.models.cnn_fast import FAST_PARAMS
from fer_bench.provenance import git_commit, machine_info, machine_label
from fer_bench.tasks import get_task, prepare_task_data

#: run name -> parameters changed from cnn_fast's recipe ("cnn" is cnn's recipe at equal training FLOPs)
RUNS = {
    "cnn_fast": {},
    "cnn": None,
    "no progressive resizing": {"progressive": None},
    "no patch whitening": {"whitening": 0},
    "no dirac init": {"dirac_init": False},
    "BatchNorm with scale": {"batchnorm_scale": True},
    "random flips": {"flip": True},
    "AdamW + cosine (cnn's optimiser)": {"optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 0.01,
                                         "schedule": "cosine"},
    "erasing 0.5 (cnn's)": {"erasing": 0.5},
    "weight average (EMA 0.999)": {"ema": 0.999},
}


#: the runs on all of FER-2013's Training images (28,709), not on a subset
FULL_TRAINING_IMAGES = 28_709


def epoch_flops_ratio(size: int, full: int, n_classes: int) -> float:
    """Training FLOPs per image of cnn_fast's network at size x size over those at full x full, counted as its
    fit counts them (the network of its own parameters, built at each size)."""
    from fer_bench.models.cnn_epochs import train_flops_per_image

    model = make_model("cnn_fast", seed=0)
    return train_flops_per_image(model, n_classes, size) / train_flops_per_image(model, n_classes, full)


def equal_compute_epochs(epochs: int, n_classes: int) -> int:
    """cnn's epochs (44 x 44 throughout) that cost what cnn_fast's `epochs` cost with progressive resizing."""
    size, fraction = FAST_PARAMS["progressive"]
    small = round(fraction * epochs)
    return max(1, round(small * epoch_flops_ratio(size, 44, n_classes) + (epochs - small)))


def run_params(name: str, epochs: int, n_classes: int) -> tuple[str, dict]:
    if RUNS[name] is None:
        return "cnn", {"epochs": equal_compute_epochs(epochs, n_classes)}
    return "cnn_fast", {**RUNS[name], "epochs": epochs}


def compute_points(lines: list[dict], cells=None, task: str = "7class") -> list[dict]:
    """Points of the accuracy-vs-compute figure: every full-data run of the ablation for `task` (label, model,
    TFLOP, PublicTest accuracy of its kept views) and each seed of cnn's cells in the results folder `cells`."""
    points = [{"label": f"{line['run']}, {line['epochs_run']} epochs", "model": line["model"],
               "tflop": line["train_tflop"], "machine": line["machine"],
               "accuracy": line["public_accuracy_by_views"][str(line["views_kept"])]}
              for line in lines if line["task"] == task and line["train_images"] >= FULL_TRAINING_IMAGES]
    if cells is not None:
        from fer_bench import open_results

        results = open_results(cells)
        timing = results.timing[(results.timing.task == task) & (results.timing.model == "cnn")]
        for row in timing.itertuples():
            selected = json.loads((Path(cells) / "runs" / task / "cnn" / f"seed{row.seed}" / "params.json")
                                  .read_text())["selected"]
            points.append({"label": f"cnn, {selected['epochs_run']} epochs (seed {row.seed})", "model": "cnn",
                           "tflop": float(row.train_tflop), "machine": row.machine,
                           "accuracy": selected["val_accuracy_by_views"][str(selected["test_views"])]})
    return points


def draw_compute(points: list[dict], title: str):
    """The figure of compute_points: one marker per point, by model, labelled."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for model, marker in (("cnn", "o"), ("cnn_fast", "s")):
        ours = [p for p in points if p["model"] == model]
        axes.scatter([p["tflop"] for p in ours], [100 * p["accuracy"] for p in ours], marker=marker, label=model)
        labels = {}  # runs that ended with the same numbers share one marker and one label
        for p in ours:
            labels.setdefault((p["tflop"], p["accuracy"]), []).append(p["label"])
        for (tflop, accuracy), names in labels.items():
            axes.annotate("\n".join(names), (tflop, 100 * accuracy), fontsize=7, xytext=(4, 3),
                          textcoords="offset points")
    axes.set_xlim(0, 1.25 * max(p["tflop"] for p in points))
    axes.set_xlabel("training TFLOP (counted: images x epochs x 3 x forward FLOPs)")
    axes.set_ylabel("PublicTest accuracy % (test views kept on PublicTest)")
    axes.set_title(title, fontsize=9)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER-2013 folder (Kaggle layout) or fer2013.csv (not with --plot)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--task", default="7class")
    parser.add_argument("--train-images", type=int, default=None, help="a seeded stratified subset (default: all)")
    parser.add_argument("--epochs", type=int, default=FAST_PARAMS["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated names of RUNS")
    parser.add_argument("--plot", type=Path, help="instead of fitting: draw the full-data runs of --out into this PNG")
    parser.add_argument("--cells", type=Path, help="with --plot: a results folder whose cnn cells join the figure")
    args = parser.parse_args(argv)
    if args.plot:
        lines = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        points = compute_points(lines, args.cells, args.task)
        machines = sorted({point["machine"] for point in points})
        title = (f"{args.task}: the ablation's full-data runs (seed {args.seed})"
                 f"{' and cnn cells of ' + str(args.cells) if args.cells else ''}; {', '.join(machines)}")
        draw_compute(points, title).savefig(
            args.plot, dpi=110)
        return
    if not args.data:
        parser.error("--data is required to fit")
    names = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        parser.error(f"unknown runs {', '.join(unknown)}; known: {', '.join(RUNS)}")

    dataset = load_dataset(args.data, fallback_to_synthetic=False)
    task = get_task(args.task)
    data = prepare_task_data(dataset, task, seed=args.seed)
    X, y, weights = data.X_train, data.y_train, data.sample_weight
    if args.train_images is not None and args.train_images < len(X):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(range(len(y)), train_size=args.train_images, stratify=y,
                                   random_state=args.seed)
        keep = sorted(keep)
        X, y, weights = X[keep], y[keep], weights[keep]
    X_public, y_public = data.tests["PublicTest"][:2]
    done = set()
    if args.out.exists():
        done = {(r["run"], r["train_images"], r["epochs"], r["task"], r["seed"])
                for r in map(json.loads, filter(str.strip, args.out.read_text().splitlines()))}
    machine, commit = machine_label(machine_info()), git_commit()
    for name in names:
        if (name, len(X), args.epochs, args.task, args.seed) in done:
            continue
        base, params = run_params(name, args.epochs, task.n_classes)
        model = make_model(base, seed=args.seed, verbose=2, **params)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        model.fit(X, y, sample_weight=weights, validation_data=(X_public, y_public))
        minutes = (time.perf_counter() - started) / 60
        selected = model.selected_params_
        record = {"run": name, "model": base, "params": params, "task": args.task, "seed": args.seed,
                  "train_images": len(X), "epochs": args.epochs, "epochs_run": selected["epochs_run"],
                  "public_accuracy_by_views": selected["val_accuracy_by_views"],
                  "views_kept": selected["test_views"], "best_epoch": selected["best_epoch"],
                  "weights": selected["weights"], "train_tflop": round(model.training_flops() / 1e12, 2),
                  "minutes": round(minutes, 1), "load_average": [round(load_before, 2),
                                                                 round(os.getloadavg()[0], 2)],
                  "cores": os.cpu_count(), "machine": machine, "commit": commit}
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
        accuracy = record["public_accuracy_by_views"][str(record["views_kept"])]
        print(f"{name}: PublicTest {100 * accuracy:.1f}% ({record['views_kept']} views), {record['train_tflop']} "
              f"TFLOP, {record['minutes']} min", flush=True)


if __name__ == "__main__":
    main()
