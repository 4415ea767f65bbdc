"""The built-in synthetic data set: procedural 48x48 grayscale faces for the 7 FER-2013 expressions.

It lets `fer-bench run` work on a fresh machine with no download. The faces are drawn with numpy on
coordinate grids (anti-aliased through signed distances), fully determined by the seed.

What a face is made of:

* identity: face width/height, eye spacing and size, feature heights, skin tone, hair, background;
* expression (per class prototype, see `EXPRESSION_PROTOTYPES`): brow height and slant (angry lowered and
  drawn inward, surprise/fear raised), eye opening (wide for surprise/fear, narrowed for happy/disgust), mouth
  (smile for happy, open "O" for surprise, wide open for fear, down-turned for sad, tight/flat for angry and
  neutral, one-sided raised upper lip for disgust), nose wrinkles for disgust/angry;
* expression intensity: each face shows its expression at a random strength, feature group by feature group,
  and a fraction of faces are blended towards the class they are naturally confused with
  (fear<->surprise, angry<->disgust, sad<->neutral, happy->neutral), so weak expressions are genuinely ambiguous;
* pose (shift, in-plane rotation, scale), lighting (gradient, contrast, brightness), noise and blur.

Class frequencies follow FER-2013's shape (`CLASS_FREQUENCIES`: happy most frequent, disgust rarest at 4%)
and are applied per split by largest remainder, so every split has the same proportions and every class
appears in every split.
"""

from __future__ import annotations

import numpy as np

from fer_bench import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_bench.data.dataset import Dataset, SyntheticRecipe
from fer_bench.errors import FerBenchError

# Share of each class in every split (canonical order), FER-2013-like: happy > neutral > sad > angry = fear
# > surprise >> disgust. Disgust is rarer in FER-2013 (1.5%) but at 4% the default test splits still hold
# 28 disgust faces each, enough for a per-class score.
CLASS_FREQUENCIES = np.array([0.13, 0.04, 0.13, 0.24, 0.16, 0.11, 0.19])

# Artifacts added when artifacts=True (fixed counts, whatever the split sizes).
N_TRAINING_DUPLICATES = 8  # Training images replaced by a pixel-identical copy of another one with the same label
N_CONFLICTING_DUPLICATES = 2  # Training images replaced by a copy of another Training image with a different label
N_LEAKED_PER_TEST_SPLIT = 5  # images in PublicTest and in PrivateTest replaced by a copy of a Training image
BLANK_IMAGES = {"Training": 2, "PrivateTest": 1}  # near-uniform images (kept labels), like FER's blank frames
MIN_SPLIT_SIZE_WITH_ARTIFACTS = {"Training": 100, "PublicTest": 20, "PrivateTest": 20}

EXPRESSION_FEATURES = (
    "brow_raise",  # upward shift of both brows (face units: 1 = half the image)
    "brow_slant",  # inner brow end minus outer end, upward: < 0 angry V, > 0 sad/fear
    "eye_open",  # eye half-height / half-width
    "mouth_width",  # mouth half-width
    "mouth_curve",  # corner lift: > 0 smile, < 0 down-turned
    "mouth_open",  # half-height of the mouth opening at its centre
    "mouth_asym",  # extra one-sided lift of the upper lip (disgust)
    "teeth",  # visible upper teeth, 0..1
    "nose_wrinkle",  # wrinkles on the nose bridge, 0..1
    "lip_thickness",  # half-thickness of the lips
)
# One row per class in canonical order; columns as EXPRESSION_FEATURES.
EXPRESSION_PROTOTYPES = np.array([
    # raise  slant   eye    width  curve   open   asym   teeth wrinkle lip
    [-0.105, -0.18, 0.37, 0.145, -0.045, 0.0, 0.0, 0.0, 0.75, 0.014],  # angry
    [-0.075, -0.075, 0.16, 0.205, -0.075, 0.045, 0.135, 0.75, 1.0, 0.034],  # disgust
    [0.12, 0.105, 1.0, 0.325, -0.06, 0.135, 0.0, 0.9, 0.0, 0.034],  # fear
    [0.015, 0.0, 0.16, 0.355, 0.195, 0.075, 0.0, 1.0, 0.0, 0.041],  # happy
    [0.03, 0.15, 0.34, 0.205, -0.15, 0.0, 0.0, 0.0, 0.0, 0.041],  # sad
    [0.195, 0.015, 1.15, 0.15, 0.0, 0.15, 0.0, 0.45, 0.0, 0.034],  # surprise
    [0.0, 0.0, 0.52, 0.22, 0.0, 0.0, 0.0, 0.0, 0.0, 0.038],  # neutral
])
NEUTRAL = CLASS_NAMES.index("neutral")
# The class a face is blended towards when it is ambiguous.
CONFUSED_WITH = {"angry": "disgust", "disgust": "angry", "fear": "surprise", "surprise": "fear",
                 "sad": "neutral", "neutral": "sad", "happy": "neutral"}
AMBIGUOUS_FRACTION = 0.3  # share of faces blended 25-55% towards their confused class
# Feature groups whose intensity varies independently (a face may smile with the mouth more than the eyes).
_FEATURE_GROUPS = ((0, 1), (2,), (3, 4, 5, 6, 7, 9), (8,))

_PIXEL = 2.0 / IMAGE_SIZE  # one pixel in image units (the image spans [-1, 1])
_COORDS = (np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5) * _PIXEL - 1.0
_CHUNK = 128  # images rendered at once: keeps temporaries small


def make_synthetic(n_train: int = 2800, n_public: int = 700, n_private: int = 700, seed: int = 0, *,
                   artifacts: bool = True) -> Dataset:
    """Procedural FER-2013-like data: `n_train` Training, `n_public` PublicTest, `n_private` PrivateTest faces.

    The same arguments always give the same pixels. Each split comes from its own random stream, so the
    Training images do not depend on the test split sizes. Ids are "synthetic_<usage>_<5-digit index>".

    With `artifacts=True` a few FER-like data problems are planted (fixed counts) for `fer-bench data audit`:

    * 8 Training images are pixel-identical copies of other Training images with the same label;
    * 2 Training images are pixel-identical copies of other Training images with a different label
      (conflicting labels);
    * 5 PublicTest and 5 PrivateTest images are pixel-identical copies of Training images with the same label
      (train/test leakage), 10 distinct Training sources in all;
    * 3 near-uniform ("blank") images: 2 in Training, 1 in PrivateTest, each keeping its label.

    Copies replace generated images, so split sizes and class counts are exactly as without artifacts.
    Artifacts need at least 100 Training and 20 images in each test split.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise FerBenchError(f"synthetic data: seed must be a non-negative integer, got {seed!r}")
    sizes = {"Training": n_train, "PublicTest": n_public, "PrivateTest": n_private}
    for usage, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < len(CLASS_NAMES):
            raise FerBenchError(f"synthetic data: {usage} size must be an integer >= {len(CLASS_NAMES)} "
                                f"(one face per class), got {n!r}")
        if artifacts and n < MIN_SPLIT_SIZE_WITH_ARTIFACTS[usage]:
            raise FerBenchError(f"synthetic data: {usage} size {n} is too small for artifacts=True "
                                f"(needs >= {MIN_SPLIT_SIZE_WITH_ARTIFACTS[usage]}); pass artifacts=False")

    images, labels, usage, ids = [], [], [], []
    for split_index, split in enumerate(USAGES):
        rng = np.random.default_rng([seed, split_index])
        split_labels = rng.permutation(np.repeat(np.arange(len(CLASS_NAMES)), _class_counts(sizes[split])))
        images.append(_draw_faces(split_labels, rng))
        labels.append(split_labels)
        usage.append(np.full(sizes[split], split))
        ids.append(np.array([f"synthetic_{split}_{i:05d}" for i in range(sizes[split])]))
    images, labels, usage, ids = (np.concatenate(parts) for parts in (images, labels, usage, ids))
    if artifacts:
        _plant_artifacts(images, labels, usage, np.random.default_rng([seed, len(USAGES)]))
    return Dataset(name="synthetic", images=images, labels=labels.astype(np.int64), usage=usage, ids=ids,
                   source=f"built-in synthetic generator (seed={seed})",
                   synthetic=SyntheticRecipe(int(seed), int(n_train), int(n_public), int(n_private), bool(artifacts)))


def _class_counts(n: int) -> np.ndarray:
    """Images per class for a split of n: CLASS_FREQUENCIES by largest remainder, at least one per class."""
    counts = np.maximum(np.floor(CLASS_FREQUENCIES * n).astype(int), 1)
    remainders = CLASS_FREQUENCIES * n - np.floor(CLASS_FREQUENCIES * n)
    order = np.argsort(-remainders, kind="stable")
    # Hand out what is missing by largest remainder; take back from the largest classes if the minimum of
    # one per class overshot (tiny splits only).
    i = 0
    while counts.sum() < n:
        counts[order[i % len(order)]] += 1
        i += 1
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    return counts


def _expression_parameters(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, n_features) expression parameters: class prototype, ambiguity blend, intensity, individual noise."""
    n = len(labels)
    prototypes = EXPRESSION_PROTOTYPES[labels]
    confused = np.array([CLASS_NAMES.index(CONFUSED_WITH[c]) for c in CLASS_NAMES])[labels]
    blend = np.where(rng.random(n) < AMBIGUOUS_FRACTION, rng.uniform(0.25, 0.55, n), 0.0)[:, None]
    prototypes = (1 - blend) * prototypes + blend * EXPRESSION_PROTOTYPES[confused]
    # Strength of the expression: overall, then per feature group (0 = neutral face, 1 = prototype).
    overall = rng.uniform(0.45, 1.15, n)
    intensity = np.empty_like(prototypes)
    for group in _FEATURE_GROUPS:
        intensity[:, group] = (overall * rng.uniform(0.7, 1.3, n))[:, None]
    neutral = EXPRESSION_PROTOTYPES[NEUTRAL]
    params = neutral + intensity * (prototypes - neutral)
    # Individual differences that have nothing to do with the expression.
    spread = np.array([0.025, 0.03, 0.08, 0.025, 0.02, 0.015, 0.01, 0.2, 0.15, 0.006])
    params += rng.normal(0, 1, params.shape) * spread
    low = np.array([-0.3, -0.3, 0.1, 0.08, -0.3, 0.0, 0.0, 0.0, 0.0, 0.01])
    high = np.array([0.3, 0.3, 1.3, 0.42, 0.3, 0.35, 0.2, 1.0, 1.0, 0.06])
    params = np.clip(params, low, high)
    # An opening much taller than wide reads as a slit, not a mouth.
    params[:, 5] = np.minimum(params[:, 5], 1.2 * params[:, 3])
    return params


def _draw_faces(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 48, 48) faces showing the given expressions."""
    expression = _expression_parameters(labels, rng)
    n = len(labels)
    look = {
        # pose
        "shift_x": rng.normal(0, 0.09, n), "shift_y": rng.normal(0, 0.09, n),
        "angle": rng.normal(0, np.deg2rad(7), n), "scale": rng.uniform(0.88, 1.12, n),
        # identity
        "face_w": rng.uniform(0.68, 0.84, n), "face_h": rng.uniform(0.9, 1.05, n),
        "eye_x": rng.uniform(0.25, 0.33, n), "eye_y": rng.uniform(-0.26, -0.14, n),
        "eye_w": rng.uniform(0.1, 0.14, n), "mouth_y": rng.uniform(0.4, 0.52, n),
        "skin": rng.uniform(0.35, 0.85, n), "hair": rng.uniform(0.03, 0.6, n),
        "hairline": rng.uniform(-0.75, -0.5, n), "background": rng.uniform(0.05, 0.95, n),
        "asym_side": rng.choice([-1.0, 1.0], n),
        # lighting and camera
        "light_x": rng.normal(0, 0.25, n), "light_y": rng.normal(0, 0.15, n),
        "contrast": rng.uniform(0.8, 1.25, n), "brightness": rng.normal(0, 0.06, n),
        "noise": rng.uniform(0.01, 0.04, n), "blur": rng.uniform(0.2, 0.8, n),
    }
    look.update({name: expression[:, j] for j, name in enumerate(EXPRESSION_FEATURES)})
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        params = {k: v[part].astype(np.float32)[:, None, None] for k, v in look.items()}
        noise = rng.standard_normal((len(out[part]), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        out[part] = _render(params, noise)
    return out


def _coverage(distance, pixel):
    """Anti-aliased coverage (0..1) of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _ellipse_distance(u, v, cx, cy, a, b):
    """Approximate signed distance to an ellipse: first-order (r - 1) / |grad r|."""
    du, dv = (u - cx) / a, (v - cy) / b
    r = np.sqrt(du * du + dv * dv) + 1e-6
    grad = np.sqrt((du / a) ** 2 + (dv / b) ** 2) / r + 1e-6
    return (r - 1.0) / grad


def _segment_distance(u, v, x0, y0, x1, y1):
    """Distance to the segment (x0, y0)-(x1, y1)."""
    ex, ey = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * ex + (v - y0) * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
    return np.hypot(u - x0 - t * ex, v - y0 - t * ey)


def _paint(canvas, coverage, value):
    """Alpha-blend `value` over `canvas` where `coverage` > 0 (in place)."""
    canvas += coverage * (value - canvas)


def _render(p: dict, noise: np.ndarray) -> np.ndarray:
    """Render one chunk; every entry of `p` is an (n, 1, 1) float32 array."""
    x, y = _COORDS[None, None, :], _COORDS[None, :, None]
    # Face coordinates (u right, v down): undo the pose. One face unit = half the image at scale 1.
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    dx, dy = x - p["shift_x"], y - p["shift_y"]
    u = (cos * dx + sin * dy) / p["scale"]
    v = (-sin * dx + cos * dy) / p["scale"]
    px = _PIXEL / p["scale"]
    skin = p["skin"]

    img = np.broadcast_to(p["background"], u.shape).astype(np.float32)
    # Neck and shoulders, then hair behind the head, then the face.
    _paint(img, _coverage(np.maximum(np.abs(u) - 0.55 * p["face_w"], 0.6 - v), px), skin * 0.8)
    _paint(img, _coverage(_ellipse_distance(u, v, 0, -0.08, p["face_w"] * 1.12, p["face_h"] * 1.02), px),
           p["hair"])
    face = _ellipse_distance(u, v, 0, 0, p["face_w"], p["face_h"])
    _paint(img, _coverage(face, px), skin)
    # Soft shading: darker towards the face edge (roundness) and in the eye sockets (both at once through |u|).
    inside = np.clip(-face / p["face_w"], 0, 1)
    img *= np.where(face < 0, 0.82 + 0.18 * np.sqrt(inside), 1.0)
    socket = ((np.abs(u) - p["eye_x"]) / (p["eye_w"] * 1.5)) ** 2 + ((v - p["eye_y"] + 0.02) / 0.11) ** 2
    img *= 1.0 - 0.18 * np.exp(-socket)
    # Hair fringe over the forehead, following the hairline.
    fringe = np.maximum(v - p["hairline"] - 0.08 * (u / p["face_w"]) ** 2, face)
    _paint(img, _coverage(fringe, px), p["hair"])

    # The small features are drawn on per-face patches (a pixel box around the feature, placed face by face)
    # rather than the whole frame: the same pixels for a fraction of the work.
    faces = np.arange(len(img))[:, None, None]

    def patch(u0, u1, v0, v1):
        """Pixel box holding the face-coordinate box [u0, u1] x [v0, v1]: its index into img, and its u, v."""
        corners_x, corners_y = [], []
        for cu in (u0, u1):
            for cv in (v0, v1):
                corners_x.append(p["scale"] * (cos * cu - sin * cv) + p["shift_x"])
                corners_y.append(p["scale"] * (sin * cu + cos * cv) + p["shift_y"])
        pixels = []
        for corners in (corners_y, corners_x):
            # pixel index of coordinate c is (c + 1) / _PIXEL - 0.5; a pixel of margin for anti-aliasing
            lo = np.floor((np.minimum.reduce(np.broadcast_arrays(*corners)) + 1) / _PIXEL - 0.5).astype(int) - 1
            hi = np.ceil((np.maximum.reduce(np.broadcast_arrays(*corners)) + 1) / _PIXEL - 0.5).astype(int) + 2
            size = min(int((hi - lo).max()), IMAGE_SIZE)
            pixels.append(np.clip(lo, 0, IMAGE_SIZE - size).reshape(-1, 1, 1) + np.arange(size))
        rows, cols = pixels[0].transpose(0, 2, 1), pixels[1]
        px_x, px_y = _COORDS[cols] - p["shift_x"], _COORDS[rows] - p["shift_y"]
        return (faces, rows, cols), (cos * px_x + sin * px_y) / p["scale"], (-sin * px_x + cos * px_y) / p["scale"]

    dark = np.minimum(skin * 0.25, 0.15)
    brow_value = np.minimum(p["hair"], dark + 0.1)
    for side in (-1.0, 1.0):
        ex, ew = side * p["eye_x"], p["eye_w"]
        eye_h = ew * p["eye_open"]
        # A lowered brow stops at the upper lid; only its slanted inner end may reach further down.
        brow_y = np.minimum(p["eye_y"] - 0.09 - eye_h - p["brow_raise"], p["eye_y"] - eye_h - 0.045)
        box, wu, wv = patch(ex - 1.3 * ew - 0.03, ex + 1.3 * ew + 0.03, brow_y - np.abs(p["brow_slant"]) / 2 - 0.03,
                            np.maximum(p["eye_y"] + eye_h, brow_y + np.abs(p["brow_slant"]) / 2) + 0.03)
        canvas = img[box]
        # Brow: a thick segment; its inner end moves with brow_slant, both ends with brow_raise.
        inner_x, outer_x = ex - side * ew * 1.0, ex + side * ew * 1.25
        inner_y, outer_y = brow_y - p["brow_slant"] * 0.5, brow_y + p["brow_slant"] * 0.5
        brow = _segment_distance(wu, wv, inner_x, inner_y, outer_x, outer_y) - 0.028
        _paint(canvas, _coverage(brow, px), brow_value)
        # Eye: lid outline, white of the eye, dark iris clipped to it.
        eye = _ellipse_distance(wu, wv, ex, p["eye_y"], ew, eye_h)
        _paint(canvas, _coverage(eye - 0.012, px), dark)
        _paint(canvas, _coverage(eye + 0.01, px), np.minimum(skin + 0.25, 0.95))
        iris = np.maximum(_ellipse_distance(wu, wv, ex, p["eye_y"], 0.055, 0.055), eye)
        _paint(canvas, _coverage(iris, px), dark * 0.5)
        img[box] = canvas

    # Nose: shadow along one side, nostrils; wrinkles across the bridge for disgust/angry.
    nose_y = p["eye_y"] + 0.36
    box, wu, wv = patch(-0.2, 0.2, p["eye_y"] - 0.08, nose_y + 0.3)
    canvas = img[box]
    nose_shadow = ((wu + 0.05) / 0.05) ** 2 + ((wv - nose_y + 0.1) / 0.14) ** 2
    canvas *= 1.0 - 0.12 * np.exp(-nose_shadow)
    for side in (-1.0, 1.0):
        nostril = _ellipse_distance(wu, wv, side * 0.055, nose_y, 0.035, 0.02)
        _paint(canvas, _coverage(nostril, px), dark + 0.1)
    for k in range(3):
        line_y = p["eye_y"] + 0.02 + 0.05 * k
        wrinkle = np.maximum(np.abs(wv - line_y) - 0.008, np.abs(wu) - 0.07)
        _paint(canvas, 0.55 * p["nose_wrinkle"] * _coverage(wrinkle, px), dark + 0.1)
    img[box] = canvas

    # Mouth: curved centre line, opening between upper and lower lip curves, lips around it, teeth inside.
    reach = 0.7 * np.abs(p["mouth_curve"]) + p["lip_thickness"] + 0.04
    box, wu, wv = patch(-p["mouth_width"] - 0.05, p["mouth_width"] + 0.05,
                        p["mouth_y"] - reach - p["mouth_open"] - p["mouth_asym"],
                        p["mouth_y"] + reach + 1.2 * p["mouth_open"])
    canvas = img[box]
    un = wu / p["mouth_width"]
    across = np.sqrt(np.clip(1.0 - un * un, 0.0, 1.0))
    centre = p["mouth_y"] - p["mouth_curve"] * (un * un - 0.3)
    raised = p["mouth_asym"] * np.clip(p["asym_side"] * un + 0.2, 0, 1) * across
    upper = centre - p["mouth_open"] * across - raised
    lower = centre + 1.2 * p["mouth_open"] * across
    ends = np.abs(wu) - p["mouth_width"]
    lips = np.maximum(np.maximum(upper - p["lip_thickness"] - wv, wv - lower - p["lip_thickness"]), ends)
    _paint(canvas, _coverage(lips, px), skin * 0.65)
    opening = np.maximum(np.maximum(upper - wv, wv - lower), ends + 0.02)
    _paint(canvas, _coverage(opening, px), dark * 0.4)
    teeth = np.maximum(np.maximum(upper - wv, wv - upper - 0.045), ends + 0.04)
    _paint(canvas, p["teeth"] * _coverage(np.maximum(teeth, opening), px), np.minimum(skin + 0.3, 0.95))
    img[box] = canvas

    # Lighting: a linear gradient across the face, contrast and brightness; then camera blur and noise.
    img *= 1.0 + p["light_x"] * x + p["light_y"] * y
    mean = img.mean(axis=(1, 2), keepdims=True)
    img = (img - mean) * p["contrast"] + mean + p["brightness"]
    img = _blur(img, p["blur"][:, 0, 0])
    img += noise * p["noise"]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma (edge-padded 5-tap kernels)."""
    taps = np.arange(-2, 3, dtype=np.float32)
    kernel = np.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernel /= kernel.sum(axis=1, keepdims=True)
    for axis in (1, 2):
        padded = np.pad(images, [(0, 0)] + [(2, 2) if a == axis else (0, 0) for a in (1, 2)], mode="edge")
        length = images.shape[axis]
        images = sum(kernel[:, k, None, None] * np.take(padded, np.arange(k, k + length), axis=axis)
                     for k in range(len(taps)))
    return images


def _plant_artifacts(images: np.ndarray, labels: np.ndarray, usage: np.ndarray, rng: np.random.Generator) -> None:
    """Plant the duplicates, conflicting labels, leakage and blank images described in make_synthetic (in place).

    Every image touched (source or target) is used once, so the documented counts are exact."""
    used = np.zeros(len(images), dtype=bool)

    def pick(candidates: np.ndarray) -> int:
        candidates = candidates[~used[candidates]]
        chosen = int(rng.choice(candidates))
        used[chosen] = True
        return chosen

    def copy_from_training(target: int, same_label: bool) -> None:
        in_training = np.flatnonzero(usage == "Training")
        matches = labels[in_training] == labels[target]
        images[target] = images[pick(in_training[matches if same_label else ~matches])]

    training = np.flatnonzero(usage == "Training")
    # Same-label copies never target the rare disgust class: a same-label source is always left, and the
    # disgust counts stay untouched by copies.
    for _ in range(N_TRAINING_DUPLICATES):
        copy_from_training(pick(training[labels[training] != CLASS_NAMES.index("disgust")]), same_label=True)
    for _ in range(N_CONFLICTING_DUPLICATES):
        copy_from_training(pick(training), same_label=False)
    for split in ("PublicTest", "PrivateTest"):
        in_split = np.flatnonzero(usage == split)
        for _ in range(N_LEAKED_PER_TEST_SPLIT):
            copy_from_training(pick(in_split[labels[in_split] != CLASS_NAMES.index("disgust")]), same_label=True)
    # Blank frames: one black like FER's, the others a flat grey with a little sensor noise.
    for split, count in BLANK_IMAGES.items():
        for k in range(count):
            target = pick(np.flatnonzero(usage == split))
            if k == 0 and split == "Training":
                images[target] = 0
            else:
                grey = rng.integers(60, 200)
                images[target] = np.clip(grey + rng.integers(-1, 2, images.shape[1:]), 0, 255)
