"""The one validator of a model's output, used when a cell is computed (fer_bench.cell, before anything is
stored) and when it is read back (storage.read_predictions): a cell's predictions are refused in one line naming
the model or the file and the rule they break, never scored and never stored.

The rules, in the order they are checked (`RULES`):

    shape       probabilities of n images x the task's classes (a 2-D array of numbers)
    finite      no NaN, no infinity
    range       every probability in [0, 1] (up to the row-sum tolerance above 1)
    sum         every row sums to 1 within the tolerance: COMPUTED_SUM_TOLERANCE for a model's output (float64,
                or float32 softmax), stored_sum_tolerance(k) = 1e-4 x k for a stored predictions.csv, whose
                probabilities are written with 6 decimals (rounding moves a row's sum by at most 5e-7 x k)
    labels      every label is one of the task's classes 0..k-1
    splits      only PREDICTION_SPLITS, and rows for every one of them

A row within the tolerance is renormalised by the caller, as before (the metrics expect rows summing to 1).
This module depends on numpy and fer_bench.errors only, so that any module may use it.
"""

from __future__ import annotations

import numpy as np

from fer_bench.errors import FerBenchError

RULES = ("shape", "finite", "range", "sum", "labels", "splits")
#: |row sum - 1| allowed in a model's output as predict_proba returns it
COMPUTED_SUM_TOLERANCE = 1e-5
#: decimals of a stored probability (storage.predictions_csv)
STORED_DECIMALS = 6


def stored_sum_tolerance(n_classes: int) -> float:
    """|row sum - 1| allowed in a stored predictions.csv: 1e-4 per class (200 times the 6-decimal rounding)."""
    return 1e-4 * n_classes


def _fail(where: str, rule: str, message: str):
    raise FerBenchError(f"{where}: breaks the rule '{rule}': {message}")


def _row_name(index: int, row_names) -> str:
    return row_names(index) if row_names is not None else f"row {index}"


def check_probabilities(proba, n_images: int, n_classes: int, *, where: str, tolerance: float,
                        row_names=None) -> np.ndarray:
    """`proba` as a float64 (n_images, n_classes) array, or FerBenchError "<where>: breaks the rule '<rule>':
    ..." for the first rule (shape, finite, range, sum) it breaks. `row_names(i)`: how a message names row i
    (default "row i")."""
    try:
        array = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        _fail(where, "shape", f"not an array of numbers ({type(exc).__name__}: {str(exc).splitlines()[0]})")
    if array.shape != (n_images, n_classes):
        _fail(where, "shape", f"probabilities of shape {array.shape}, expected ({n_images}, {n_classes}): "
                              f"{n_images} images x {n_classes} classes")
    bad = ~np.isfinite(array)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        _fail(where, "finite", f"{bad.sum()} probabilities are NaN or infinite, the first in "
                               f"{_row_name(int(i), row_names)}, class {j} ({array[i, j]})")
    bad = (array < 0) | (array > 1 + tolerance)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        _fail(where, "range", f"{bad.sum()} probabilities are outside [0, 1], the first in "
                              f"{_row_name(int(i), row_names)}, class {j} ({array[i, j]:g})")
    sums = array.sum(axis=1)
    bad = np.abs(sums - 1) > tolerance
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(where, "sum", f"{bad.sum()} rows do not sum to 1 within {tolerance:g}, the first "
                            f"{_row_name(i, row_names)} ({sums[i]:.6g})")
    return array


def check_labels(labels, n_classes: int, *, where: str, row_names=None) -> None:
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(where, "labels", f"{bad.sum()} labels are not classes 0..{n_classes - 1}, the first "
                               f"{_row_name(i, row_names)} ({labels[i]})")


def check_splits(splits, expected: tuple[str, ...], *, where: str, row_names=None) -> None:
    splits = np.asarray(splits)
    unknown = ~np.isin(splits, expected)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        _fail(where, "splits", f"unknown split {str(splits[i])!r} in {_row_name(i, row_names)}; "
                               f"expected {', '.join(expected)}")
    missing = [split for split in expected if not np.any(splits == split)]
    if missing:
        _fail(where, "splits", f"no {' and no '.join(missing)} rows")


def check_predictions(splits, labels, proba, n_classes: int, expected_splits: tuple[str, ...], *, where: str,
                      tolerance: float, row_names=None) -> np.ndarray:
    """A cell's whole predictions table (one row per test image): every rule. Returns the probabilities as a
    float64 array; FerBenchError naming `where` and the first rule broken."""
    array = check_probabilities(proba, len(labels), n_classes, where=where, tolerance=tolerance,
                                row_names=row_names)
    check_labels(labels, n_classes, where=where, row_names=row_names)
    check_splits(splits, expected_splits, where=where, row_names=row_names)
    return array


# --- a model's parameters, checked before any cell starts (fer_bench.run.check_model_parameters) ---------------

def check_estimator_parameters(*estimators) -> None:
    """scikit-learn's own parameter validation of the estimators a model would build (InvalidParameterError, a
    ValueError, naming the parameter, the estimator and what it takes); a no-op on a scikit-learn without it."""
    for estimator in estimators:
        validate = getattr(estimator, "_validate_params", None)
        if callable(validate):
            validate()


def check_values(name: str, values, *, low: float, high: float | None = None, integer: bool = False,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """ValueError unless `values` (one value or a sequence) are numbers in [low, high] (open at low with
    low_open, at high with high_open), integers when `integer`; None passes with allow_none."""
    if values is None and allow_none:
        return
    many = isinstance(values, list | tuple | np.ndarray)
    for value in (values if many else [values]):
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        ok = ok and (not integer or float(value).is_integer()) and np.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            upper = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
            interval = f"{'(' if low_open else '['}{low:g}, {upper}"
            kind = ("a sequence of integers" if integer else "a sequence of numbers") if many else (
                "an integer" if integer else "a number")
            raise ValueError(f"{name} must be {kind} in {interval}"
                             f"{' or None' if allow_none else ''}, got {values!r}")
    if many and not len(values):
        raise ValueError(f"{name} must hold at least one value, got {values!r}")
