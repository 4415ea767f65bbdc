"""A short, labelled CNN run on part of FER-2013: per epoch, PublicTest accuracy of the trained weights and of
their moving average (with the BatchNorm statistics recomputed for it). For checks of a recipe ingredient on
hosts where the full 60-epoch run does not fit a sitting (docs/cnn-recipe.md); its numbers are PublicTest only
and say how many training images and epochs they come from.

    python benchmarks/cnn_short_run.py --data PATH --train-images 6000 --epochs 8 --ema 0.99

The training images are a seeded random subset of Training (the 7class task, its class weights); PrivateTest
is not loaded.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fer_bench.data import load_dataset
from fer_bench.models.cnn import make_cnn
from fer_bench.tasks import balance, get_task


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="FER-2013 folder (Kaggle layout) or fer2013.csv")
    parser.add_argument("--task", default="7class")
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None, help="resume here (same arguments)")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    task = get_task(args.task)
    train, public = dataset.split("Training"), dataset.split("PublicTest")
    X, y, _ = task.select(train.images, train.labels)
    keep = np.sort(np.random.default_rng(args.seed).permutation(len(X))[:args.train_images])
    X, y = X[keep], y[keep]
    X, y, weights = balance(X, y, task.balancing, n_classes=task.n_classes, seed=args.seed)
    X_val, y_val, _ = task.select(public.images, public.labels)

    model = make_cnn(seed=args.seed, epochs=args.epochs, ema=args.ema, checkpoint_dir=args.checkpoint_dir,
                     verbose=2)
    start = time.perf_counter()
    model.fit(X, y, sample_weight=weights, validation_data=(X_val, y_val))
    print(json.dumps({"dataset": dataset.fingerprint, "task": args.task, "train_images": len(X),
                      "epochs": args.epochs, "ema": args.ema, "seed": args.seed,
                      "seconds": round(time.perf_counter() - start, 1)}))
    print("| epoch | trained % | moving average % (own BatchNorm statistics) | seconds |")
    print("|---|---|---|---|")
    for record in model.history_:
        print(f"| {record['epoch']} | {100 * record['val_accuracy']:.1f} | {100 * record['ema_val_accuracy']:.1f} "
              f"| {record['seconds']:.0f} |")
    selected = model.selected_params_
    print(f"kept: epoch {selected['best_epoch']}, {selected['weights']} weights; PublicTest by views: "
          f"{selected['val_accuracy_by_views']}")


if __name__ == "__main__":
    main()
