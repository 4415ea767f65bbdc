"""HOG settings and skimage's HOG picture of a face: shared by the HOG baseline (fer_bench.baselines.features,
which computes the descriptors) and the report's HOG figure (fer_bench.figures.saliency, which draws the picture
from the settings a cell stored), so the figures need not import a model's module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.feature import hog

# Default HOG settings (chosen on PublicTest with an RBF SVM, see hog_svm): 6, 8 and 12 pixel cells (eyes
# and mouth corners, facial parts, face layout), 9 unsigned orientations, 2x2-cell L2-Hys blocks, and
# square-root gamma compression, which evens out lighting and added ~1 point of accuracy.
ORIENTATIONS = 9
CELL_SIZES = (6, 8, 12)
CELLS_PER_BLOCK = 2
TRANSFORM_SQRT = True


def check_hog_settings(orientations: int, cell_sizes: Sequence[int], cells_per_block: int, shape) -> None:
    """ValueError unless the settings describe HOG cells and blocks that fit images of `shape`."""
    if int(orientations) < 1:
        raise ValueError(f"orientations must be >= 1, got {orientations}")
    if not len(cell_sizes):
        raise ValueError("cell_sizes must name at least one cell size")
    for cell in cell_sizes:
        if int(cell) < 1 or min(shape) // int(cell) < int(cells_per_block) or int(cells_per_block) < 1:
            raise ValueError(f"cell size {cell} with {cells_per_block} cells per block does not fit "
                             f"{shape[0]}x{shape[1]} images")


def hog_visualisation(image, *, orientations: int = ORIENTATIONS, cell_sizes: Sequence[int] = CELL_SIZES,
                      cells_per_block: int = CELLS_PER_BLOCK, transform_sqrt: bool = TRANSFORM_SQRT,
                      scale: int = 0) -> np.ndarray:
    """skimage's HOG picture (2-D float array, same shape as the image) for one image.

    Takes the same settings as the HOG baseline's hog_features (fer_bench.baselines.features); `scale` picks which
    of cell_sizes to draw (default the finest first one), since skimage draws one cell grid at a time."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {image.shape}")
    cell_sizes = tuple(int(c) for c in cell_sizes)
    check_hog_settings(orientations, cell_sizes, cells_per_block, image.shape)
    cell = cell_sizes[scale]
    _, picture = hog(image, orientations=orientations, pixels_per_cell=(cell, cell),
                     cells_per_block=(cells_per_block, cells_per_block), block_norm="L2-Hys",
                     visualize=True, transform_sqrt=transform_sqrt)
    return picture
