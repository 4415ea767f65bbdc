"""The CNN's test-time views, apart from the estimator (fer_bench.models.cnn): which crops of a 48x48 face the
network sees at prediction time, the mean of its softmax over them, and the choice of their number on the
validation data (PublicTest). NumPy only; the network is any object with predict_on_batch.

A network trained on random size x size crops predicts on 1 view (the centre crop), 2 (it and its mirror image)
or 10 (ten-crop: the 4 corner crops and the centre crop, and their mirror images); without crops (size 48) the
views are the full face and its mirror.
"""

from __future__ import annotations

import numpy as np

from fer_bench.models.cnn_training import IMAGE_SIZE, PREDICT_BATCH, accuracy_of

#: test_views choices: the centre crop; + its mirror image; ten-crop (4 corners + centre, and their mirrors)
VIEW_CHOICES = (1, 2, 10)


def available_views(size: int) -> list[int]:
    """The VIEW_CHOICES a network of input size x size can use (ten-crop needs crops smaller than the face)."""
    return [v for v in VIEW_CHOICES if v != 10 or size < IMAGE_SIZE]


def centre_crop(X: np.ndarray, size: int) -> np.ndarray:
    offset = (IMAGE_SIZE - size) // 2
    return X[:, offset:offset + size, offset:offset + size]


def view_inputs(X: np.ndarray, size: int, views: int) -> list[np.ndarray]:
    """The `views` inputs of the network for images X (N, 48, 48, 1): [centre] (1), [centre, mirrored
    centre] (2), or the centre and the 4 corner crops, then the 5 mirrored (10)."""
    centre, far = (IMAGE_SIZE - size) // 2, IMAGE_SIZE - size
    offsets = [(centre, centre)] + ([(0, 0), (0, far), (far, 0), (far, far)] if views == 10 else [])
    crops = [X[:, r:r + size, c:c + size] for r, c in offsets]
    return crops if views == 1 else crops + [crop[:, :, ::-1] for crop in crops]


def mean_softmax(network, X: np.ndarray, size: int, views: int, n_classes: int) -> np.ndarray:
    """The mean of the network's softmax over `views` views of (N, 48, 48, 1) float32 images, computed in
    calls of at most PREDICT_BATCH network inputs holding every view of their images (a single image then
    costs one call of `views`, not `views` calls).

    predict_on_batch, not predict: Keras' predict builds a data pipeline on every call, ~30 ms, which
    dominated single-image latency (predict_on_batch: ~2 ms on 2 cores); same batches, same numbers."""
    if len(X) == 0:
        return np.zeros((0, n_classes))
    step = max(1, PREDICT_BATCH // views)
    chunks = []
    for start in range(0, len(X), step):
        batch = X[start:start + step]
        inputs = view_inputs(batch, size, views)
        network_input = inputs[0] if views == 1 else np.concatenate(inputs)  # one view: no copy
        proba = np.asarray(network.predict_on_batch(network_input), dtype=np.float64)
        chunks.append(proba.reshape(views, len(batch), -1).mean(axis=0))
    return np.concatenate(chunks)


def choose_test_views(test_views, size: int, proba_with_views, y_val) -> tuple[int, dict]:
    """The views predict_proba uses, and the validation accuracies behind the choice.

    test_views: 1, 2, 10 or "auto"; proba_with_views(views) gives the validation probabilities with that many
    views, or is None without validation data; y_val: the validation label indices. For "auto" every available
    choice is evaluated and the best taken, ties going to fewer views (1 without validation data); for a fixed
    number only that one is evaluated (the validation accuracy of what predicts). The views never change which
    weights were selected (epochs are compared on the centre crop alone)."""
    choices = available_views(size)
    if proba_with_views is None:
        if test_views == "auto":
            return 1, {"test_views_selection": "1: no validation data"}
        return int(test_views), {}
    evaluated = choices if test_views == "auto" else [int(test_views)]
    by_views = {str(v): accuracy_of(proba_with_views(v), y_val) for v in evaluated}
    if test_views != "auto":
        return int(test_views), {"val_accuracy_by_views": by_views}
    best = choices[0]
    for v in choices[1:]:  # strictly better only: ties go to fewer views
        if by_views[str(v)] > by_views[str(best)]:
            best = v
    return best, {"val_accuracy_by_views": by_views,
                  "test_views_selection": f"{best}: best validation accuracy of {', '.join(map(str, choices))} "
                                          "views (ties: fewer)"}
