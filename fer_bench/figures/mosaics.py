"""Figures made of faces, placed pixel for pixel: the mosaic machinery (tiles, blocks, `mosaic_figure`) and the
face grids of the images the reference model gets right and another model wrong, the reverse, and both wrong.

Grids of faces are composed as one RGB image per tile and placed pixel for pixel with figimage (no resampling, no
Axes per face), which keeps them sharp, small and fast to draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fer_bench import outline
from fer_bench.cell_maps import pick
from fer_bench.figures.data import FigureContext, FigureSpec, Needs, SectionOutput, TaskResults
from fer_bench.figures.png import DPI

#: face grids: rows x columns of one group of faces
FACE_GRID = (2, 8)
#: 48x48 faces are drawn 2x enlarged, as 96x96 pixel tiles
TILE_SCALE = 2
TILE = 48 * TILE_SCALE
_GAP = 6
_LINE = 11  # pixels per text line at 7 pt and 100 dpi
_TITLE_BAND = 30
_HEADING_BAND = 24


@dataclass
class MosaicBlock:
    """A grid of tiles under an optional heading: tiles[r][c] is an RGB uint8 (TILE, TILE, 3) array or None."""

    tiles: list[list[np.ndarray | None]]
    titles: list[list[str]] | None = None  # text above each tile ("\n" for several lines)
    row_labels: list[str] | None = None
    heading: str = ""


def gray_tile(image) -> np.ndarray:
    """A 0..255 gray image as an RGB float image in [0, 1]."""
    gray = np.clip(np.asarray(image, dtype=np.float64) / 255.0, 0, 1)
    return np.repeat(gray[..., None], 3, axis=-1)


def heat_tile(image, heat, cmap: str, vmin: float, vmax: float, *, strength: float = 0.8,
              signed: bool = False) -> np.ndarray:
    """The face in gray with `heat` painted over it in `cmap`; the paint's opacity grows with |heat| (relative to
    the colour range), so pixels without saliency show the plain face."""
    heat = np.asarray(heat, dtype=np.float64)
    span = max(vmax - vmin, 1e-12)
    scaled = np.clip((heat - vmin) / span, 0, 1)
    colour = matplotlib.colormaps[cmap](scaled)[..., :3]
    weight = np.abs(2 * scaled - 1) if signed else scaled
    alpha = strength * weight[..., None]
    return (1 - alpha) * gray_tile(image) + alpha * colour


def colour_tile(values, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    scaled = np.clip((np.asarray(values, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return matplotlib.colormaps[cmap](scaled)[..., :3]


def to_tile(rgb: np.ndarray) -> np.ndarray:
    """RGB float [0, 1] 48x48 image -> uint8 tile, each pixel drawn as a TILE_SCALE x TILE_SCALE block (sharp,
    and repeated pixels cost almost nothing in the PNG)."""
    pixels = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return np.repeat(np.repeat(pixels, TILE_SCALE, axis=0), TILE_SCALE, axis=1)


def mosaic_figure(title: str, blocks: list[MosaicBlock], *, label_width: int = 0) -> Figure:
    """Blocks of tiles stacked under a title, each tile placed pixel for pixel; rows get room for their titles."""

    def title_of(block: MosaicBlock, r: int, c: int) -> str:
        titles = block.titles or []
        return titles[r][c] if r < len(titles) and c < len(titles[r]) else ""

    def row_title_height(block: MosaicBlock, r: int) -> int:
        texts = [title_of(block, r, c) for c in range(len(block.tiles[r]))]
        return max((t.count("\n") + 1 for t in texts if t), default=0) * _LINE

    # Pixel rows from the top: (block, heading top or None, [(row index, tile top)]).
    layout, y = [], _TITLE_BAND
    for block in blocks:
        heading_top = y if block.heading else None
        y += _HEADING_BAND if block.heading else 0
        rows = []
        for r in range(len(block.tiles)):
            y += row_title_height(block, r)
            rows.append((r, y))
            y += TILE + _GAP
        layout.append((block, heading_top, rows))
    height = y + _GAP
    width = label_width + max(len(row) for block in blocks for row in block.tiles) * (TILE + _GAP) + _GAP
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)

    def text(x: float, y_top: float, value: str, **kwargs) -> None:
        fig.text(x / width, 1 - y_top / height, value, **kwargs)

    text(width / 2, _TITLE_BAND / 2, title, ha="center", va="center", fontsize=9.5)
    for block, heading_top, rows in layout:
        if heading_top is not None:
            text(width / 2, heading_top + _HEADING_BAND / 2, block.heading, ha="center", va="center", fontsize=9,
                 fontweight="bold")
        for r, top in rows:
            if block.row_labels:
                text(label_width - 6, top + TILE / 2, block.row_labels[r], ha="right", va="center", fontsize=7.5)
            for c, tile in enumerate(block.tiles[r]):
                left = label_width + _GAP + c * (TILE + _GAP)
                if tile is not None:
                    fig.figimage(tile, xo=left, yo=height - top - TILE, origin="upper")
                if title_of(block, r, c):
                    text(left + TILE / 2, top - 2, title_of(block, r, c), ha="center", va="bottom", fontsize=7,
                         linespacing=1.05)
    return fig


def _rows_of(items: list, n_cols: int) -> list[list]:
    return [items[i:i + n_cols] for i in range(0, len(items), n_cols)] or [[]]


def face_grid_figure(tr: TaskResults, baseline: str, faces: np.ndarray, split: str) -> Figure:
    """PrivateTest faces the CNN gets right and `baseline` wrong, the reverse, and both wrong."""
    ref, names = tr.reference, tr.class_names
    right = {m: tr.pred(m) == tr.labels for m in (ref, baseline)}
    confidence = {m: tr.proba[m].max(axis=1) for m in (ref, baseline)}
    groups = [
        (f"{ref} right, {baseline} wrong", right[ref] & ~right[baseline], confidence[baseline], [baseline]),
        (f"{baseline} right, {ref} wrong", ~right[ref] & right[baseline], confidence[ref], [ref]),
        ("both wrong", ~right[ref] & ~right[baseline], confidence[ref] + confidence[baseline], [ref, baseline]),
    ]
    rows, cols = FACE_GRID
    blocks = []
    for heading, mask, score, wrong in groups:
        chosen = pick(np.flatnonzero(mask), tr.labels, score, rows * cols)
        tiles = [to_tile(gray_tile(faces[i])) for i in chosen]
        titles = ["\n".join([f"true {names[tr.labels[i]]}"] + [f"{m}: {names[tr.pred(m)[i]]}" for m in wrong])
                  for i in chosen]
        shown = f"; the {len(chosen)} most confident mistakes" if len(chosen) < mask.sum() else ""
        blocks.append(MosaicBlock(_rows_of(tiles, cols), _rows_of(titles, cols),
                                  heading=f"{heading}: {int(mask.sum())} of {len(mask)} images{shown}"))
    return mosaic_figure(f"{tr.task}: {split} faces, {ref} vs {baseline}", blocks)


def face_grid_names(tr: TaskResults) -> list[str]:
    return [f"faces_{tr.task}_{b}" for b in tr.baselines] if tr.reference else []


def draw_face_grids(output: SectionOutput, ctx: FigureContext, tr: TaskResults) -> None:
    if not (tr.reference and tr.baselines):
        return
    faces, why = ctx.faces(tr)
    if faces is None:
        output.needs_images(face_grid_names(tr), why)
        return
    split = ctx.settings.headline_split
    for baseline, name in zip(tr.baselines, face_grid_names(tr), strict=True):
        output.figure(face_grid_figure(tr, baseline, faces, split), name,
                      f"{tr.task} faces, {tr.reference} vs {baseline}",
                      f"{tr.task}: {split} faces {tr.reference} gets right and {baseline} wrong, the reverse, and both "
                      f"wrong ({tr.seeds_text()}).")


FACE_GRIDS = FigureSpec("face_grids", outline.GAIN_FIGURES, Needs.IMAGES, draw_face_grids)

#: this module's figures, in the order their markdown appears within a section
FIGURES = (FACE_GRIDS,)
