"""Short-run ablation of bow_svm on a stratified subset of FER-2013 (7 emotions), scored on PublicTest.

    python benchmarks/bow_svm_ablation.py --data /path/to/fer2013 --out bow-ablation.jsonl [--runs base,k200,...]

Each run fits bow_svm (seed 0) on a seeded stratified sample of Training and chooses C on a seeded stratified
sample of PublicTest, then appends one JSON line to --out: the run's settings, the subset sizes, the calibrated
PublicTest accuracy of the chosen C and of every C of the grid, wall-clock and CPU minutes, the model's stage
timings, the machine (fer_bench.provenance.machine_label) and the commit. PrivateTest is never read. A run already
in --out is skipped, so an interrupted ablation resumes. docs/bow-svm.md holds the table of one such ablation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from fer_bench.baselines.bow_svm import make_bow_svm
from sklearn.model_selection import train_test_split

from fer_bench.data import load_dataset
from fer_bench.provenance import git_commit, machine_info, machine_label

#: the C grid every run scores, so each run also says which C it would pick
ABLATION_CS = (0.1, 0.3, 1.0, 3.0, 10.0)
#: run name -> (Training images, PublicTest images, bow_svm parameters)
RUNS = {
    "base": (3000, None, {}),
    "k200": (3000, None, {"vocabulary_size": 200}),
    "k800": (3000, None, {"vocabulary_size": 800}),
    "pyramid1": (3000, None, {"pyramid": (1,)}),
    "pyramid12": (3000, None, {"pyramid": (1, 2)}),
    "linear": (3000, None, {"kernel_map": "linear"}),
    "chi2": (3000, None, {"kernel_map": "chi2"}),
    "hog": (3000, None, {"descriptor": "hog"}),
    "small_sift": (1000, 1000, {}),
    "small_hog": (1000, 1000, {"descriptor": "hog"}),
    "small_daisy": (1000, 1000, {"descriptor": "daisy"}),
}


def stratified(images, labels, n, seed):
    if n is None or n >= len(labels):
        return images, labels
    index, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed)
    index = np.sort(index)
    return images[index], labels[index]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--runs", default=",".join(RUNS))
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        parser.error(f"unknown runs {', '.join(unknown)}; known: {', '.join(RUNS)}")
    done = set()
    if args.out.exists():
        done = {json.loads(line)["run"] for line in args.out.read_text().splitlines() if line.strip()}
    dataset = load_dataset(args.data, fallback_to_synthetic=False)
    training, public = dataset.split("Training"), dataset.split("PublicTest")
    machine = machine_label(machine_info())
    for name in names:
        if name in done:
            continue
        n_train, n_public, params = RUNS[name]
        X, y = stratified(training.images, training.labels, n_train, seed=1)
        X_val, y_val = stratified(public.images, public.labels, n_public, seed=2)
        model = make_bow_svm(seed=0, Cs=ABLATION_CS, verbose=False, **params)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(X, y, validation_data=(X_val, y_val))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        record = {"run": name, "params": params, "n_train": len(y), "n_public": len(y_val),
                  "public_accuracy": model.selected_params_["validation_accuracy"], "C": model.selected_params_["C"],
                  "scores": model.validation_scores_, "n_features": model.selected_params_["n_features"],
                  "minutes": round(wall / 60, 2), "cpu_minutes": round(cpu / 60, 2), "stages": model.timings_,
                  "machine": machine, "commit": git_commit()}
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(f"{name}: PublicTest {100 * record['public_accuracy']:.1f}% (C={record['C']}), "
              f"{record['minutes']} min", flush=True)


if __name__ == "__main__":
    main()
