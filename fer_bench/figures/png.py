"""The one PNG writer and palette of every figure.

Figures are drawn by matplotlib's Agg canvas alone (no pyplot state) and encoded without any timestamp or version
text, so the same figure always gives the same bytes.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 100
#: PNGs above this size are re-encoded with a 256-colour palette
MAX_PNG_BYTES = 250_000


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg alone (no pyplot, so nothing global changes and nothing leaks between reports)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of `fig` without metadata text, so the same figure always gives the same bytes: grayscale when
    the figure has no colour (lossless, a third of RGB), otherwise RGB, palette-encoded when large."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return _encode_png(Image.fromarray(np.ascontiguousarray(rgb[..., 0])))
    image = Image.fromarray(rgb)
    data = _encode_png(image)
    if len(data) > MAX_PNG_BYTES:
        data = _encode_png(image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE))
    return data


def _encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=6, dpi=(DPI, DPI))
    return buf.getvalue()


def model_colors(models: list[str]) -> dict[str, tuple]:
    """One colour per model, the same in every figure of a report."""
    palette = matplotlib.colormaps["tab10"]
    return {m: palette(i % 10) for i, m in enumerate(models)}


def pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"
