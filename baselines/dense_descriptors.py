"""Dense local descriptors of 48x48 faces for the bag of visual words (bow_svm), computed a batch at a time.

Every kind returns, for a batch of N images, an (N, P, D) float32 array: P descriptors per image at positions
fixed by the settings (the same for every image; `descriptor_centres` gives them), each of length D. A *scale* s
is a descriptor window of 4s x 4s pixels; descriptors are taken at every `step` pixels at every scale.

* "sift": SIFT-like (Lowe's layout), vectorised over the batch: gradient orientations soft-assigned to 8 signed
  bins, each bin's magnitudes pooled into a 4 x 4 grid of s x s cells with bilinear (triangular) weights (two
  matrix products per batch), cells weighted by a Gaussian over the window, then L2 / clip at 0.2 / L2 as SIFT
  does. D = 128.
* "hog": scikit-image's HOG blocks taken one by one as local descriptors: 2 x 2 blocks of 2s-pixel cells, 9
  unsigned orientations, L2-Hys (the batched HOG of features.py); the stride is one cell (2s pixels), not
  `step`. D = 36.
* "daisy": skimage.feature.daisy (radius 2s, 2 rings of 6 histograms of 8 orientations), image by image.
  D = 104.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.feature import daisy

from fer_bench.hog import TRANSFORM_SQRT

from .features import _cell_histograms, _gradient_bins, _l2_hys_blocks

DESCRIPTORS = ("sift", "hog", "daisy")
IMAGE_SIDE = 48
#: SIFT: orientation bins over 360 degrees, cells per window side, the clip before renormalising
SIFT_ORIENTATIONS = 8
SIFT_CELLS = 4
SIFT_CLIP = 0.2
#: Gaussian weight of the cells over the window: sigma of half the window, as SIFT weights its samples
SIFT_WINDOW_SIGMA = SIFT_CELLS / 2
HOG_ORIENTATIONS = 9
HOG_CELLS_PER_BLOCK = 2
DAISY_RINGS, DAISY_HISTOGRAMS, DAISY_ORIENTATIONS = 2, 6, 8
_EPS = 1e-7


def descriptor_length(kind: str) -> int:
    return {"sift": SIFT_ORIENTATIONS * SIFT_CELLS ** 2,
            "hog": HOG_ORIENTATIONS * HOG_CELLS_PER_BLOCK ** 2,
            "daisy": (DAISY_RINGS * DAISY_HISTOGRAMS + 1) * DAISY_ORIENTATIONS}[kind]


def check_descriptor_settings(kind: str, scales: Sequence[int], step: int) -> None:
    """ValueError naming the setting when `kind` is unknown or a scale's window does not fit a 48-pixel side."""
    if kind not in DESCRIPTORS:
        raise ValueError(f"descriptor must be one of {', '.join(DESCRIPTORS)}, got {kind!r}")
    for scale in scales:
        if not 1 <= 4 * scale <= IMAGE_SIDE:
            raise ValueError(f"scale {scale} (a {4 * scale}-pixel window) does not fit a {IMAGE_SIDE}-pixel face")
    if step < 1:
        raise ValueError(f"step must be at least 1 pixel, got {step}")


def _window_starts(scale: int, step: int) -> np.ndarray:
    """Top (or left) pixel of every window of one scale along a side."""
    return np.arange(0, IMAGE_SIDE - SIFT_CELLS * scale + 1, step)


def _axis_centres(kind: str, scale: int, step: int) -> np.ndarray:
    """Centres (continuous pixel coordinates, 0..48) of one scale's descriptors along a side."""
    if kind == "sift":
        return _window_starts(scale, step) + SIFT_CELLS * scale / 2
    if kind == "hog":
        cell = 2 * scale
        blocks = IMAGE_SIDE // cell - HOG_CELLS_PER_BLOCK + 1
        return np.arange(blocks) * cell + cell * HOG_CELLS_PER_BLOCK / 2
    radius = 2 * scale  # daisy: the centres skimage uses, radius .. 48 - radius - 1, every step
    return np.arange(radius, IMAGE_SIDE - radius, step) + 0.5


def descriptor_centres(kind: str, scales: Sequence[int], step: int) -> np.ndarray:
    """(P, 2) row and column centres of the descriptors, in the order dense_descriptors returns them."""
    blocks = []
    for scale in scales:
        axis = _axis_centres(kind, scale, step)
        rows, cols = np.meshgrid(axis, axis, indexing="ij")
        blocks.append(np.stack([rows.ravel(), cols.ravel()], axis=1))
    return np.concatenate(blocks)


# --- SIFT ---------------------------------------------------------------------------------------------------

def _orientation_maps(images: np.ndarray) -> np.ndarray:
    """(N, 8, 48, 48): gradient magnitude of every pixel split between its two nearest signed orientation bins."""
    pixels = images.astype(np.float32)
    g_row = np.zeros_like(pixels)
    g_col = np.zeros_like(pixels)
    g_row[:, 1:-1, :] = pixels[:, 2:, :] - pixels[:, :-2, :]
    g_col[:, :, 1:-1] = pixels[:, :, 2:] - pixels[:, :, :-2]
    magnitude = np.hypot(g_row, g_col)
    position = (np.arctan2(g_row, g_col) % (2 * np.pi)) * (SIFT_ORIENTATIONS / (2 * np.pi))
    lower = np.floor(position)
    upper_share = (position - lower).astype(np.float32)
    lower = lower.astype(np.intp) % SIFT_ORIENTATIONS
    upper = (lower + 1) % SIFT_ORIENTATIONS
    maps = np.empty((len(images), SIFT_ORIENTATIONS, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    for k in range(SIFT_ORIENTATIONS):
        maps[:, k] = magnitude * ((lower == k) * (1 - upper_share) + (upper == k) * upper_share)
    return maps


def _cell_weights(scale: int, cell_starts: np.ndarray) -> np.ndarray:
    """(cells, 48): each cell's bilinear pooling weights over the pixels of a side (1 at the cell's centre, 0 a
    cell width away), so a pixel is shared between the two nearest cell centres as SIFT interpolates."""
    pixel_centres = np.arange(IMAGE_SIDE) + 0.5
    cell_centres = cell_starts + scale / 2
    return np.maximum(0.0, 1 - np.abs(pixel_centres[None, :] - cell_centres[:, None]) / scale).astype(np.float32)


def _normalise_sift(descriptors: np.ndarray) -> np.ndarray:
    descriptors /= np.linalg.norm(descriptors, axis=-1, keepdims=True) + _EPS
    np.minimum(descriptors, SIFT_CLIP, out=descriptors)
    descriptors /= np.linalg.norm(descriptors, axis=-1, keepdims=True) + _EPS
    return descriptors


def _sift_scale(maps: np.ndarray, scale: int, step: int) -> np.ndarray:
    starts = _window_starts(scale, step)
    cell_starts = (starts[:, None] + scale * np.arange(SIFT_CELLS)[None, :])  # (windows, 4)
    distinct, cell_index = np.unique(cell_starts, return_inverse=True)
    cell_index = cell_index.reshape(cell_starts.shape)
    weights = _cell_weights(scale, distinct)
    pooled = weights @ (maps @ weights.T)  # (N, 8, cells, cells): every cell of every window, pooled once
    n, windows = len(maps), len(starts)
    grid = pooled[:, :, cell_index[:, None, :, None], cell_index[None, :, None, :]]  # (N, 8, wr, wc, 4, 4)
    grid = grid.transpose(0, 2, 3, 4, 5, 1)  # (N, wr, wc, cell row, cell col, orientation)
    offsets = np.arange(SIFT_CELLS) - (SIFT_CELLS - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * SIFT_WINDOW_SIGMA ** 2))
    grid = grid * window[:, :, None].astype(np.float32)
    return _normalise_sift(grid.reshape(n, windows * windows, -1))


# --- the three kinds ------------------------------------------------------------------------------------------

def _dense_hog(images: np.ndarray, scales: Sequence[int]) -> np.ndarray:
    magnitude, bins = _gradient_bins(images, HOG_ORIENTATIONS, TRANSFORM_SQRT)
    parts = []
    for scale in scales:
        histograms = _cell_histograms(magnitude, bins, HOG_ORIENTATIONS, 2 * scale)
        blocks = _l2_hys_blocks(histograms, HOG_CELLS_PER_BLOCK)
        parts.append(blocks.reshape(len(images), -1, descriptor_length("hog")))
    return np.concatenate(parts, axis=1)


def _dense_daisy(images: np.ndarray, scales: Sequence[int], step: int) -> np.ndarray:
    per_scale = []
    for scale in scales:
        per_scale.append(np.stack([
            daisy(image, step=step, radius=2 * scale, rings=DAISY_RINGS, histograms=DAISY_HISTOGRAMS,
                  orientations=DAISY_ORIENTATIONS).reshape(-1, descriptor_length("daisy"))
            for image in images.astype(np.float64) / 255.0]))
    return np.concatenate(per_scale, axis=1)


def dense_descriptors(images: np.ndarray, kind: str, scales: Sequence[int], step: int) -> np.ndarray:
    """(N, P, D) float32 descriptors of one batch of (N, 48, 48) images (see the module docstring)."""
    scales = tuple(int(s) for s in scales)
    check_descriptor_settings(kind, scales, step)
    if kind == "sift":
        maps = _orientation_maps(images)
        descriptors = np.concatenate([_sift_scale(maps, scale, step) for scale in scales], axis=1)
    elif kind == "hog":
        descriptors = _dense_hog(images, scales)
    else:
        descriptors = _dense_daisy(images, scales, step)
    return descriptors.astype(np.float32, copy=False)
