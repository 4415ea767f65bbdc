"""The spatial pyramid of a bag of visual words (Lazebnik, Schmid & Ponce 2006): which region of each grid level
every dense descriptor falls in, the regions' weights, and the per-region word histograms of hard-assigned
descriptors (bow_svm's histogram encoding; its Fisher encoding uses the same regions, fisher_vectors.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .dense_descriptors import IMAGE_SIDE


def pyramid_regions(centres: np.ndarray, pyramid: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(region of each descriptor at each level (levels, P), weight of every region (regions,)).

    Regions are numbered level by level, row-major within a level. A level's weight (Lazebnik et al.: 1/2^(L-1)
    for the coarsest, 1/2^(L-l) for level l >= 1 of L; they sum to 1) is shared evenly among its regions that
    hold descriptors; a region no descriptor falls in weighs 0."""
    grids = sorted(int(g) for g in pyramid)
    levels = len(grids)
    level_weights = [1 / 2 ** (levels - 1)] + [1 / 2 ** (levels - level) for level in range(1, levels)]
    regions, weights, offset = [], [], 0
    for grid, level_weight in zip(grids, level_weights, strict=True):
        cell = np.minimum((centres * grid / IMAGE_SIDE).astype(np.intp), grid - 1)
        index = cell[:, 0] * grid + cell[:, 1]
        occupied = np.bincount(index, minlength=grid * grid) > 0
        regions.append(offset + index)
        weights.append(np.where(occupied, level_weight / occupied.sum(), 0.0))
        offset += grid * grid
    return np.stack(regions), np.concatenate(weights)


def pyramid_histograms(words: np.ndarray, regions: np.ndarray, region_weights: np.ndarray,
                       vocabulary_size: int) -> np.ndarray:
    """(N, regions x vocabulary_size) float32: per image, each region's word histogram normalised to sum to the
    region's weight. words: (N, P) word of every descriptor; regions, region_weights: from pyramid_regions."""
    n, n_regions = len(words), len(region_weights)
    slots = (np.arange(n)[:, None, None] * n_regions + regions[None, :, :]) * vocabulary_size + words[:, None, :]
    counts = np.bincount(slots.ravel(), minlength=n * n_regions * vocabulary_size)
    counts = counts.reshape(n, n_regions, vocabulary_size).astype(np.float64)
    per_region = np.bincount(regions.ravel(), minlength=n_regions)  # descriptors per region (each level once)
    scale = np.divide(region_weights, per_region, out=np.zeros(n_regions), where=per_region > 0)
    return (counts * scale[None, :, None]).reshape(n, -1).astype(np.float32)


def nearest_words(descriptors: np.ndarray, centres: np.ndarray, centre_norms: np.ndarray) -> np.ndarray:
    """(N, P) index of each descriptor's nearest vocabulary word (squared Euclidean distance)."""
    flat = descriptors.reshape(-1, descriptors.shape[-1])
    distances = centre_norms[None, :] - 2 * flat @ centres.T  # |d|^2 is the same for every word
    return np.argmin(distances, axis=1).reshape(descriptors.shape[:2])
