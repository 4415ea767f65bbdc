"""HOG features for 48x48 faces: scikit-image's HOG, computed for a whole batch of images at once.

`hog_features` returns, for every image, the concatenation of one `skimage.feature.hog` descriptor per cell
size (default 6x6 and 12x12 pixel cells: fine detail around eyes and mouth plus the coarse face layout).
Calling `skimage.feature.hog` image by image runs at ~1,500 images/s per core for these two scales, mostly
spent in its Python loop over blocks, so this module re-implements the same computation with array
operations over a chunk of images (gradients once for all scales, one `np.bincount` per scale, vectorised
block normalisation). It follows skimage's HOG exactly (central-difference gradients, unsigned orientations
hard-assigned to bins, cell mean of magnitudes, L2-Hys blocks with eps=1e-5); the tests check it against
`skimage.feature.hog` to 1e-6. Chunks of images are spread over the cores with joblib threads (the NumPy
work releases the GIL, and threads avoid copying images and features between processes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from fer_bench.data.dataset import check_images
from fer_bench.hog import (  # noqa: F401  (hog_visualisation: the baseline's HOG picture, importable from here too)
    CELL_SIZES,
    CELLS_PER_BLOCK,
    ORIENTATIONS,
    TRANSFORM_SQRT,
    check_hog_settings,
    hog_visualisation,
)

#: skimage's default epsilon in block normalisation
_BLOCK_NORM_EPS = 1e-5
#: L2-Hys clips normalised block values at this level before renormalising
_L2_HYS_CLIP = 0.2
#: inputs larger than this show a progress bar (when verbose)
PROGRESS_MIN_IMAGES = 5000
DEFAULT_CHUNK_SIZE = 128


def hog_feature_length(image_shape=(48, 48), *, orientations: int = ORIENTATIONS,
                       cell_sizes: Sequence[int] = CELL_SIZES, cells_per_block: int = CELLS_PER_BLOCK) -> int:
    """Number of features hog_features returns per image for these settings."""
    total = 0
    for cell in cell_sizes:
        blocks_row = image_shape[0] // cell - cells_per_block + 1
        blocks_col = image_shape[1] // cell - cells_per_block + 1
        total += blocks_row * blocks_col * cells_per_block ** 2 * orientations
    return total


def _gradient_bins(images: np.ndarray, orientations: int, transform_sqrt: bool):
    """Gradient magnitude and orientation bin of every pixel, as skimage.feature.hog computes them.

    Bins are 0..orientations-1; a pixel whose folded angle rounds to exactly 180 degrees gets bin
    `orientations`, which skimage's histogram also leaves out (it falls in no [start, end) interval)."""
    pixels = images.astype(np.float64)
    if transform_sqrt:
        pixels = np.sqrt(pixels)
    g_row = np.zeros_like(pixels)
    g_col = np.zeros_like(pixels)
    g_row[:, 1:-1, :] = pixels[:, 2:, :] - pixels[:, :-2, :]
    g_col[:, :, 1:-1] = pixels[:, :, 2:] - pixels[:, :, :-2]
    magnitude = np.hypot(g_col, g_row)
    degrees = np.rad2deg(np.arctan2(g_row, g_col))
    # Same values as `degrees % 180` (NumPy's floored modulo adds 180 to negatives, maps +180 to 0), cheaper.
    folded = degrees + 180.0 * (degrees < 0) - 180.0 * (degrees >= 180.0)
    width = 180.0 / orientations
    bins = np.zeros(folded.shape, dtype=np.intp)
    for edge in width * np.arange(1, orientations + 1):  # the edges skimage compares against, incl. 180
        bins += folded >= edge
    return magnitude, bins


def _cell_histograms(magnitude: np.ndarray, bins: np.ndarray, orientations: int, cell: int) -> np.ndarray:
    """(n, cells_row, cells_col, orientations): mean gradient magnitude per orientation bin in each cell.

    Pixels past the last whole cell (and bin `orientations`) go to an extra slot that is cut off."""
    n, height, width = magnitude.shape
    cells_row, cells_col = height // cell, width // cell
    row_cell = np.minimum(np.arange(height) // cell, cells_row)
    col_cell = np.minimum(np.arange(width) // cell, cells_col)
    cell_index = row_cell[:, None] * (cells_col + 1) + col_cell[None, :]
    slots_per_image = (cells_row + 1) * (cells_col + 1) * (orientations + 1)
    index = (np.arange(n)[:, None, None] * ((cells_row + 1) * (cells_col + 1)) + cell_index) * (orientations + 1)
    index = index + bins
    sums = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=n * slots_per_image)
    sums = sums.reshape(n, cells_row + 1, cells_col + 1, orientations + 1)[:, :cells_row, :cells_col, :orientations]
    return sums / (cell * cell)


def _l2_hys_blocks(histograms: np.ndarray, cells_per_block: int) -> np.ndarray:
    """Overlapping blocks of cells, each L2-Hys normalised, flattened in skimage's order
    (block row, block col, cell row, cell col, orientation)."""
    n, cells_row, cells_col, orientations = histograms.shape
    blocks_row = cells_row - cells_per_block + 1
    blocks_col = cells_col - cells_per_block + 1
    blocks = np.empty((n, blocks_row, blocks_col, cells_per_block, cells_per_block, orientations))
    for r in range(cells_per_block):
        for c in range(cells_per_block):
            blocks[:, :, :, r, c, :] = histograms[:, r:r + blocks_row, c:c + blocks_col, :]
    blocks = blocks.reshape(n, blocks_row, blocks_col, -1)
    eps2 = _BLOCK_NORM_EPS ** 2
    blocks /= np.sqrt(np.einsum("...k,...k->...", blocks, blocks) + eps2)[..., None]
    np.minimum(blocks, _L2_HYS_CLIP, out=blocks)
    blocks /= np.sqrt(np.einsum("...k,...k->...", blocks, blocks) + eps2)[..., None]
    return blocks.reshape(n, -1)


def _hog_chunk(images, orientations, cell_sizes, cells_per_block, transform_sqrt, dtype):
    magnitude, bins = _gradient_bins(images, orientations, transform_sqrt)
    parts = [_l2_hys_blocks(_cell_histograms(magnitude, bins, orientations, cell), cells_per_block)
             for cell in cell_sizes]
    return np.concatenate(parts, axis=1).astype(dtype, copy=False)


def hog_features(images, *, orientations: int = ORIENTATIONS, cell_sizes: Sequence[int] = CELL_SIZES,
                 cells_per_block: int = CELLS_PER_BLOCK, transform_sqrt: bool = TRANSFORM_SQRT,
                 n_jobs: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, verbose: bool = True,
                 dtype=np.float32) -> np.ndarray:
    """HOG descriptors of a batch of images, one row per image.

    images: (N, 48, 48) grayscale (uint8 or float; skimage converts to float64 the same way).
    Each row concatenates, for every size in cell_sizes, what
    ``skimage.feature.hog(image, orientations, (cell, cell), (cells_per_block,) * 2, block_norm="L2-Hys",
    transform_sqrt=transform_sqrt)`` returns. n_jobs: threads (default: every core, at most 2 chunks'
    worth of memory each); chunk_size: images per task; verbose: tqdm bar when N > PROGRESS_MIN_IMAGES.
    """
    images = check_images(images)
    cell_sizes = tuple(int(c) for c in cell_sizes)
    check_hog_settings(orientations, cell_sizes, cells_per_block, images.shape[1:])
    n_features = hog_feature_length(images.shape[1:], orientations=orientations, cell_sizes=cell_sizes,
                                    cells_per_block=cells_per_block)
    if len(images) == 0:
        return np.zeros((0, n_features), dtype=dtype)
    starts = range(0, len(images), chunk_size)
    n_jobs = n_jobs or os.cpu_count() or 1
    n_jobs = max(1, min(n_jobs, len(starts)))
    tasks = (delayed(_hog_chunk)(images[start:start + chunk_size], orientations, cell_sizes, cells_per_block,
                                 transform_sqrt, dtype) for start in starts)
    features = np.empty((len(images), n_features), dtype=dtype)
    show_bar = verbose and len(images) > PROGRESS_MIN_IMAGES
    # disable=None: drawn on a terminal only, never redrawn into a log file
    with tqdm(total=len(images), desc="HOG", unit="img", disable=None if show_bar else True, leave=False) as bar:
        chunks = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(tasks)
        for start, chunk in zip(starts, chunks, strict=True):
            features[start:start + len(chunk)] = chunk
            bar.update(len(chunk))
    return features


def check_labels_and_weights(X: np.ndarray, y, sample_weight):
    """Labels as a 1-D int array matching X, sample_weight as float array (or None); ValueError otherwise."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"expected {len(X)} labels in a 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if len(np.unique(y)) < 2:
        raise ValueError("training labels must contain at least two classes")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != y.shape:
            raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected {y.shape}")
        if (sample_weight < 0).any() or not np.isfinite(sample_weight).all():
            raise ValueError("sample_weight must be finite and non-negative")
    return y, sample_weight


def split_validation(X, y, sample_weight, validation_data, validation_fraction: float, random_state):
    """The validation set to choose hyper-parameters on, and the training data left to fit on.

    With validation_data (PublicTest) the training data is used whole. Without it a stratified, seeded
    `validation_fraction` of the training data is held out (like scikit-learn's early stopping), so fit
    works stand-alone. Returns (X, y, sample_weight, X_val, y_val, source)."""
    if validation_data is not None:
        X_val, y_val = validation_data
        X_val = check_images(X_val)
        y_val = np.asarray(y_val)
        if len(y_val) != len(X_val):
            raise ValueError(f"validation_data has {len(X_val)} images but {len(y_val)} labels")
        return X, y, sample_weight, X_val, y_val, "validation_data"
    index_fit, index_val = train_test_split(np.arange(len(y)), test_size=validation_fraction, stratify=y,
                                            random_state=random_state)
    weight_fit = None if sample_weight is None else sample_weight[index_fit]
    return X[index_fit], y[index_fit], weight_fit, X[index_val], y[index_val], "held-out training fraction"


def pixel_matrix(images: np.ndarray) -> np.ndarray:
    """(N, 48*48) float32 pixels in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
