"""The corruption suite at a glance: one face under every corruption (rows) at every severity (columns), the clean
face first, drawn pixel for pixel (docs/corruptions.png).

The face is a synthetic one (fer_bench.data.synthetic), so the picture holds nothing from FER-2013. The corrupted
images come from fer_bench.corruptions; this module only draws them. Regenerate the picture with

    python -m fer_bench.figures.corruptions docs/corruptions.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fer_bench.atomic import atomic_write
from fer_bench.corruptions import CORRUPTIONS, SEVERITIES, Corruption, every_corruption
from fer_bench.data.synthetic import make_synthetic
from fer_bench.figures.mosaics import MosaicBlock, gray_tile, mosaic_figure, to_tile
from fer_bench.figures.png import figure_png

#: the face shown: PrivateTest face FACE_INDEX of make_synthetic(**FACE_DATA), chosen among those 70 for its eyes
#: and mouth at the rows FER-2013's faces have them (darkest rows 17 and 37), where the eye and mouth bands fall
FACE_DATA = {"n_train": 7, "n_public": 7, "n_private": 70, "seed": 0, "artifacts": False}
FACE_INDEX = 68
#: pixels left of the tiles for the corruption names
_LABEL_WIDTH = 110


def example_face() -> tuple[np.ndarray, str]:
    """The synthetic face the figure shows, uint8 (48, 48), and its id."""
    faces = make_synthetic(**FACE_DATA).split("PrivateTest")
    return faces.images[FACE_INDEX], str(faces.ids[FACE_INDEX])


def plot_corruption_grid(clean: np.ndarray, corrupted: np.ndarray,
                         corruptions: tuple[Corruption, ...] = tuple(CORRUPTIONS.values())) -> Figure:
    """`clean` (48, 48) and `corrupted` (len(corruptions), 5, 48, 48), 0..255: one row per corruption, the clean face
    then severities 1 to 5, each titled with its parameter."""
    if corrupted.shape[:2] != (len(corruptions), len(SEVERITIES)):
        raise ValueError(f"corrupted images of shape {corrupted.shape} for {len(corruptions)} corruptions")
    tiles = [[to_tile(gray_tile(clean))] + [to_tile(gray_tile(image)) for image in row] for row in corrupted]
    titles = [["clean"] + [f"{severity}: {c.label(severity)}" for severity in SEVERITIES] for c in corruptions]
    block = MosaicBlock(tiles, titles, row_labels=[c.name for c in corruptions])
    return mosaic_figure("A synthetic face under each corruption at severities 1 (mild) to 5 (severe)", [block],
                         label_width=_LABEL_WIDTH)


def corruption_grid_png() -> bytes:
    """docs/corruptions.png's bytes: the example face under every corruption and severity."""
    face, face_id = example_face()
    return figure_png(plot_corruption_grid(face, every_corruption(face, face_id)))


def main(argv: list[str] | None = None) -> int:
    """`python -m fer_bench.figures.corruptions PATH`: write the picture to PATH."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m fer_bench.figures.corruptions PATH.png", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.parent.is_dir():
        print(f"error: folder {path.parent} does not exist", file=sys.stderr)
        return 2
    try:
        atomic_write(path, corruption_grid_png())
    except OSError as error:
        print(f"error: cannot write {path}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
