"""Image corruptions for robustness checks: twelve ways a 48x48 grayscale face gets damaged, each at 5 severities
(ImageNet-C style: severity 1 is mild, 5 severe).

    corrupt(images, "gaussian_blur", 3, image_ids)   # (N, 48, 48) in -> the same shape and dtype out

`images` follow fer_bench.data's convention, uint8 pixels 0..255 (a Dataset's `images`); float images in
[0, 1] are accepted too. The result has the input's shape and dtype, clipped to its range (0..255 or [0, 1]);
the input is never changed. Each corruption is a `Corruption` in `CORRUPTIONS` (registry order), which holds its
5 parameters (`values`, one per severity) and says what they mean; `severity_table()` lists them all as a
markdown table (docs/robustness.md shows it).

Determinism: a corrupted image depends only on the image, its id, the corruption and the severity, never on the
batch around it. The random corruptions (noise, salt and pepper, the motion-blur direction, the rotation's
direction) draw from a numpy Generator seeded per image with a BLAKE2b hash of the text
"<image id>\\x1f<corruption>\\x1f<severity>" (`image_seed`), so the same image id gives the same pixels in any
batch order or batch size, on any machine, and different ids give different draws. The others are per-image
operations without randomness (per-image means, filters that do not mix images).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure, transform, util

from fer_bench import IMAGE_SIZE
from fer_bench.errors import FerBenchError

SEVERITIES = (1, 2, 3, 4, 5)

# The eye and mouth bands sit at fixed rows: FER-2013's faces are aligned well enough that the mean face has sharp
# features. Measured on the mean of all 28,709 Training images of FER-2013 (Kaggle folder layout), averaged pixel
# by pixel: the mean of each row over the columns of the eyes (10-21 and 26-37) is darkest at row 17 in both eyes
# (113-114 against 154-156 on the forehead at row 9 and 175 on the cheeks at row 25); over the centre columns
# (19-28), rows 28-44, the darkest row is 38 (118, the mouth: the row means fall from the nose down to it and rise
# again below). Each band is centred on its row and is 2 * severity + 1 rows tall, so
# severity 1 covers the middle of the feature and severity 5 all of it with a margin.
EYE_ROW = 17
MOUTH_ROW = 38

# Why each set of 5 parameters (the values are in CORRUPTIONS below), for 48x48 faces whose features (an eye, the
# mouth's opening) are 3-6 pixels tall: severity 1 leaves the face easy to read for a person, severity 5 leaves
# much of the face or of its expression hidden. Noise, salt-and-pepper and JPEG levels are of the order of
# ImageNet-C's; blur radii, pixel blocks and rotation angles are sized for a 48-pixel face rather than ImageNet's
# 224-pixel photos. Chosen by eye on synthetic faces (docs/corruptions.png); tests/test_corruptions.py checks that
# every corruption moves faces further from the clean image at each severity.


@dataclass(frozen=True)
class Corruption:
    """One corruption: what it does, and its parameter at severities 1..5.

    `apply` corrupts a float64 batch (N, 48, 48) in [0, 1] with one severity's parameter; `rngs` holds one
    Generator per image for the random corruptions (None for the others). Clipping and the conversion back to the
    input's dtype are done by `corrupt`."""

    name: str
    description: str
    #: what the 5 values are, with their unit
    parameter: str
    values: tuple
    #: what is drawn at random, from the image's own Generator ("" for a corruption without randomness)
    draws: str
    apply: Callable[[np.ndarray, object, list[np.random.Generator] | None], np.ndarray]
    #: a severity's short label, e.g. "σ 0.04" (figure titles): `{}` is the formatted value
    label_format: str = "{}"

    @property
    def random(self) -> bool:
        return bool(self.draws)

    def value(self, severity: int):
        """The parameter at `severity` (1..5)."""
        return self.values[check_severity(severity) - 1]

    def label(self, severity: int) -> str:
        return self.label_format.format(format_value(self.value(severity)))


def format_value(value) -> str:
    """A parameter as text: numbers without trailing zeros, row ranges as "first–last"."""
    if isinstance(value, tuple):
        return "–".join(format_value(v) for v in value)
    return f"{value:g}"


def _gaussian_noise(images, sigma, rngs):
    return np.stack([util.random_noise(image, mode="gaussian", var=sigma**2, rng=rng, clip=True)
                     for image, rng in zip(images, rngs, strict=True)])


def _salt_and_pepper(images, amount, rngs):
    return np.stack([util.random_noise(image, mode="s&p", amount=amount, rng=rng)
                     for image, rng in zip(images, rngs, strict=True)])


def _gaussian_blur(images, sigma, rngs):
    # sigma 0 along the batch axis: each image is filtered on its own
    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma), mode="nearest")


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    """A line `length` pixels long through the centre of a length x length kernel, at `angle` degrees
    (bilinear), summing to 1."""
    line = np.zeros((length, length))
    line[length // 2, :] = 1.0
    kernel = transform.rotate(line, angle, order=1, mode="constant", cval=0.0)
    return kernel / kernel.sum()


def _motion_blur(images, length, rngs):
    # the direction of the shake is drawn per image, any direction alike
    return np.stack([ndimage.convolve(image, _motion_kernel(length, rng.uniform(0.0, 180.0)), mode="nearest")
                     for image, rng in zip(images, rngs, strict=True)])


def _jpeg(images, quality, rngs):
    def round_trip(image):
        buffer = io.BytesIO()
        Image.fromarray(_to_uint8(image)).save(buffer, format="JPEG", quality=quality)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("L"), dtype=np.float64) / 255.0

    return np.stack([round_trip(image) for image in images])


def _pixelate(images, block, rngs):
    # block sizes divide 48: every block is whole, averaged, then drawn as a square of its mean
    means = measure.block_reduce(images, (1, block, block), np.mean)
    return np.repeat(np.repeat(means, block, axis=1), block, axis=2)


def _brightness(images, delta, rngs):
    return images + delta


def _contrast(images, factor, rngs):
    means = images.mean(axis=(1, 2), keepdims=True)
    return (images - means) * factor + means


def _gamma(images, gamma, rngs):
    return np.power(images, gamma)


def _band(images, rows, rngs):
    first, last = rows
    out = images.copy()
    out[:, first:last + 1, :] = 0.0
    return out


def _rotation(images, degrees, rngs):
    # clockwise or anticlockwise, drawn per image; the corners the rotation uncovers repeat the edge pixels
    return np.stack([transform.rotate(image, degrees * rng.choice((-1.0, 1.0)), order=1, mode="edge")
                     for image, rng in zip(images, rngs, strict=True)])


def _band_rows(centre: int) -> tuple[tuple[int, int], ...]:
    return tuple((centre - severity, centre + severity) for severity in SEVERITIES)


#: the registry, in the order tables and figures show it
CORRUPTIONS: MappingProxyType[str, Corruption] = MappingProxyType({c.name: c for c in (
    Corruption("gaussian_noise", "adds Gaussian noise to every pixel", "noise standard deviation (pixel range 0–1)",
               (0.04, 0.08, 0.13, 0.2, 0.3), "the noise", _gaussian_noise, "σ {}"),
    Corruption("salt_and_pepper", "sets random pixels to black or white, half each", "fraction of pixels replaced",
               (0.02, 0.05, 0.1, 0.17, 0.27), "which pixels, and black or white", _salt_and_pepper, "{} of pixels"),
    Corruption("gaussian_blur", "blurs with a Gaussian filter (edges extended)", "filter σ (pixels)",
               (0.6, 0.9, 1.3, 1.8, 2.5), "", _gaussian_blur, "σ {} px"),
    Corruption("motion_blur", "smears along a line in a random direction, like camera shake", "line length (pixels)",
               (3, 5, 7, 9, 11), "the direction (0–180°)", _motion_blur, "{} px"),
    Corruption("jpeg", "encodes and decodes as JPEG (Pillow)", "JPEG quality", (30, 20, 14, 9, 5), "", _jpeg,
               "quality {}"),
    Corruption("pixelate", "replaces each block of pixels by its mean", "block side (pixels)", (2, 3, 4, 6, 8), "",
               _pixelate, "{} px blocks"),
    Corruption("brightness", "adds a constant to every pixel (overexposure)", "added brightness (pixel range 0–1)",
               (0.1, 0.2, 0.3, 0.4, 0.5), "", _brightness, "+{}"),
    Corruption("contrast", "scales each pixel's distance from the image's mean", "contrast factor",
               (0.6, 0.45, 0.3, 0.2, 0.1), "", _contrast, "× {}"),
    Corruption("gamma", "raises pixels (range 0–1) to a power above 1: darker shadows (underexposure)", "gamma",
               (1.4, 1.8, 2.3, 3.0, 4.0), "", _gamma, "γ {}"),
    Corruption("eye_band", f"a black band across the whole width, centred on row {EYE_ROW} (the eyes)",
               "rows covered (first–last, 0 = top)", _band_rows(EYE_ROW), "", _band, "rows {}"),
    Corruption("mouth_band", f"a black band across the whole width, centred on row {MOUTH_ROW} (the mouth)",
               "rows covered (first–last, 0 = top)", _band_rows(MOUTH_ROW), "", _band, "rows {}"),
    Corruption("rotation", "rotates about the centre, either way; the uncovered corners repeat the edge pixels",
               "angle (degrees)", (4, 8, 12, 16, 20), "clockwise or anticlockwise", _rotation, "{}°"),
)})


def get_corruption(name: str) -> Corruption:
    """The registered corruption called `name`; an unknown name is a FerBenchError naming the valid ones."""
    try:
        return CORRUPTIONS[name]
    except (KeyError, TypeError):
        raise FerBenchError(f"unknown corruption {name!r}; expected one of: {', '.join(CORRUPTIONS)}") from None


def check_severity(severity) -> int:
    """`severity` as an int 1..5; anything else is a FerBenchError."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or severity not in SEVERITIES:
        raise FerBenchError(f"corruption severity must be an integer from {SEVERITIES[0]} to {SEVERITIES[-1]}, "
                            f"got {severity!r}")
    return int(severity)


def image_seed(image_id, corruption: str, severity: int) -> int:
    """The seed of one image's draws: a stable hash of (image id, corruption, severity) as text (not Python's
    hash(), which changes from run to run)."""
    text = f"{image_id}\x1f{corruption}\x1f{severity}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def corrupt(images, corruption: str, severity: int, image_ids: Sequence) -> np.ndarray:
    """`images` (N, 48, 48), uint8 0..255 or float in [0, 1], under `corruption` at `severity` (1..5): a new array
    of the same shape and dtype, clipped to the same range. `image_ids` (one per image, hashed as text) seed the
    random corruptions, so each image's result is the same whatever batch it comes in."""
    spec = get_corruption(corruption)
    severity = check_severity(severity)
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise FerBenchError(f"corrupt: images must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
    if images.dtype == np.uint8:
        pixels = images / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        if images.size and not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
            raise FerBenchError("corrupt: float images must lie in [0, 1] (uint8 images: 0..255)")
        pixels = images.astype(np.float64)
    else:
        raise FerBenchError(f"corrupt: images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
    image_ids = list(np.asarray(image_ids, dtype=object).reshape(-1)) if image_ids is not None else []
    if len(image_ids) != len(images):
        raise FerBenchError(f"corrupt: {len(image_ids)} image ids for {len(images)} images")
    if not len(images):
        return images.copy()

    rngs = ([np.random.default_rng(image_seed(image_id, spec.name, severity)) for image_id in image_ids]
            if spec.random else None)
    out = np.clip(spec.apply(pixels, spec.value(severity), rngs), 0.0, 1.0)
    return _to_uint8(out) if images.dtype == np.uint8 else out.astype(images.dtype)


def every_corruption(image, image_id) -> np.ndarray:
    """One image (48, 48) under every corruption at every severity: (len(CORRUPTIONS), 5, 48, 48), registry
    order, in the image's dtype."""
    image = np.asarray(image)
    return np.stack([np.concatenate([corrupt(image[None], name, severity, [image_id]) for severity in SEVERITIES])
                     for name in CORRUPTIONS])


def severity_table() -> str:
    """Every corruption's parameters at severities 1..5, as a markdown table."""
    lines = ["| corruption | what it does | drawn per image | parameter | " + " | ".join(map(str, SEVERITIES)) + " |",
             "|---|---|---|---|" + "---:|" * len(SEVERITIES)]
    for c in CORRUPTIONS.values():
        lines.append(f"| `{c.name}` | {c.description} | {c.draws or '–'} | {c.parameter} | "
                     + " | ".join(format_value(v) for v in c.values) + " |")
    return "\n".join(lines) + "\n"


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
