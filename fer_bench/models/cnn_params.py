"""The CNN's parameters checked before training (fer_bench.models.cnn): every rule a value must keep, and the
choices of the optimiser and schedule, each broken rule one FerBenchError naming the parameter; and fit's
sample weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from fer_bench.errors import FerBenchError
from fer_bench.models.cnn_network import HEADS
from fer_bench.models.cnn_training import IMAGE_SIZE
from fer_bench.models.cnn_views import VIEW_CHOICES

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "plateau", "constant")


def check_cnn_parameters(params: dict, *, input_size: int) -> None:
    """Raise FerBenchError naming the first of `params` (CNNClassifier.get_params()) with an invalid value;
    `input_size`: the network's input side (crop_size, or 48 without crops)."""
    p = SimpleNamespace(**params)
    if p.optimizer not in OPTIMIZERS:
        raise FerBenchError(f"cnn: unknown optimizer {p.optimizer!r}; available: {', '.join(OPTIMIZERS)}")
    if p.head not in HEADS:
        raise FerBenchError(f"cnn: unknown head {p.head!r}; available: {', '.join(HEADS)}")
    if p.schedule not in SCHEDULES:
        raise FerBenchError(f"cnn: unknown schedule {p.schedule!r}; available: {', '.join(SCHEDULES)}")
    if p.test_views not in (*VIEW_CHOICES, "auto") or isinstance(p.test_views, bool):
        raise FerBenchError(f"cnn: test_views must be 1, 2, 10 or \"auto\", got {p.test_views!r}")
    if p.crop_size is not None and not (isinstance(p.crop_size, int | np.integer) and 8 <= p.crop_size <= IMAGE_SIZE):
        raise FerBenchError(f"cnn: crop_size must be None or a whole number of pixels in 8..48, got "
                            f"{p.crop_size!r}")
    if p.test_views == 10 and input_size == IMAGE_SIZE:
        raise FerBenchError("cnn: test_views=10 (ten-crop) needs crop_size < 48")
    if not 0 <= float(p.erasing) <= 1:
        raise FerBenchError(f"cnn: erasing is a probability in 0..1, got {p.erasing!r}")
    low, high = p.erasing_area
    if not 0 < low <= high <= 1:
        raise FerBenchError(f"cnn: erasing_area must be (min, max) fractions with 0 < min <= max <= 1, got "
                            f"{p.erasing_area!r}")
    if p.ema is not None and not 0 < float(p.ema) < 1:
        raise FerBenchError(f"cnn: ema must be None or a decay in (0, 1), got {p.ema!r}")
    if p.flip not in (True, False, "alternate"):
        raise FerBenchError(f"cnn: flip must be true, false or \"alternate\", got {p.flip!r}")
    if not isinstance(p.whitening, int | np.integer) or isinstance(p.whitening, bool) \
            or not 0 <= p.whitening <= 5:
        raise FerBenchError(f"cnn: whitening is a patch size in 0..5 (0: off), got {p.whitening!r}")
    if p.progressive is not None:
        try:
            size, fraction = p.progressive
            valid = 8 <= int(size) <= input_size and int(size) == size and 0 < float(fraction) < 1
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise FerBenchError(f"cnn: progressive must be None or (size, fraction) with 8 <= size <= the input "
                                f"size ({input_size}) and 0 < fraction < 1, got {p.progressive!r}")
        if p.head != "gap":
            raise FerBenchError("cnn: progressive resizing needs head=\"gap\" (flatten fixes the input size)")
    if p.verbose not in (0, 1, 2, "auto"):
        raise FerBenchError(f"cnn: verbose must be 0, 1, 2 or \"auto\", got {p.verbose!r}")
    if len(p.filters) < 1 or min(p.filters) < 1 or p.convs_per_block < 1:
        raise FerBenchError(f"cnn: filters must be positive channel counts and convs_per_block >= 1, got "
                            f"{p.filters} and {p.convs_per_block}")
    if len(p.filters) > 5:
        raise FerBenchError(f"cnn: at most 5 conv blocks fit a 48x48 image, got {len(p.filters)}")
    for name in ("epochs", "batch_size"):
        if int(getattr(p, name)) < 1:
            raise FerBenchError(f"cnn: {name} must be >= 1, got {getattr(p, name)}")


def checked_sample_weight(sample_weight, n: int) -> np.ndarray:
    """fit's sample weights as n float32 (all ones when None); ValueError unless n finite non-negative numbers."""
    if sample_weight is None:
        return np.ones(n, dtype=np.float32)
    weights = np.asarray(sample_weight, dtype=np.float32)
    if weights.shape != (n,) or not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError(f"sample_weight must be {n} finite non-negative numbers, got shape {weights.shape}")
    return weights
