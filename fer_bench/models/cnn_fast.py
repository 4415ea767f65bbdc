"""`cnn_fast`: the CNN (fer_bench.models.cnn, same network family, same estimator) with a recipe for accuracy
per unit of training compute, assembled from the fast-training ingredients of small-image work (airbench; David
Page's "How to train your ResNet"):

    make_model("cnn_fast", seed=0)                  # CNNClassifier with FAST_PARAMS
    make_model("cnn_fast[progressive=None]", seed=0)  # one ingredient off, for an ablation

* SGD with Nesterov momentum, larger batches and a linear one-cycle schedule (warmup, then linear decay to 0);
* progressive resizing: the first half of the epochs on the crops resampled to 32 x 32 (about half the FLOPs
  per image), the rest at 44 x 44, the size it predicts at;
* a frozen patch-whitening first convolution (2 x 2 patches of the training faces), dirac (identity)
  initialisation of the 3 x 3 convolutions, BatchNorm without scale weights;
* alternating flips (every image mirrored in every other epoch), lighter random erasing;
* test-time views chosen on PublicTest, as `cnn` does.

Each ingredient is a parameter of CNNClassifier, off in `cnn`'s defaults, so `cnn_fast[ingredient=off value]`
measures what it brings (docs/cnn-recipe.md, "cnn_fast"). Every cell records its training FLOPs
(timings.json train_flops), so the two recipes compare by accuracy per training compute.
"""

from __future__ import annotations

from fer_bench.models.cnn import QUICK_PARAMS, CNNClassifier

#: cnn_fast's recipe on top of CNNClassifier's defaults
FAST_PARAMS = dict(
    # 36 epochs: 476 TFLOP on all 7class Training faces, 0.49 of cnn's 60-epoch 972 (PublicTest: 30 epochs 63.9%,
    # 37 epochs 64.7%; docs/cnn-recipe.md), the most the fast recipe can spend within half of cnn's budget
    epochs=36,
    batch_size=256,
    optimizer="sgd",
    learning_rate=0.2,
    weight_decay=5e-4,
    schedule="onecycle",
    warmup_epochs=2,
    progressive=(32, 0.5),
    whitening=2,
    dirac_init=True,
    batchnorm_scale=False,
    flip="alternate",
    erasing=0.25,
)

#: quick=True (synthetic data, CI): cnn's quick network and epochs with the fast recipe's ingredients
QUICK_FAST_PARAMS = {**QUICK_PARAMS, "head": "gap", "filters": (16, 32, 64), "convs_per_block": 1,
                     "batch_size": 64, "learning_rate": 0.05, "progressive": (32, 0.5), "epochs": 6}


def make_cnn_fast(seed: int = 0, quick: bool = False, **params) -> CNNClassifier:
    """The registered "cnn_fast" factory: CNNClassifier with FAST_PARAMS, QUICK_FAST_PARAMS on top when quick, then
    `params`."""
    return CNNClassifier(seed=seed, **{**FAST_PARAMS, **(QUICK_FAST_PARAMS if quick else {}), **params})


__all__ = ["FAST_PARAMS", "QUICK_FAST_PARAMS", "make_cnn_fast"]
