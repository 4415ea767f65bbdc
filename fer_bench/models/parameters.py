"""Counting what a fitted model learned: the interface's parameter_count() for models built from scikit-learn
estimators, and the support vectors the timing table shows. Lives with the model interface (models.base uses it,
fer_bench.measure reports it), so neither imports the other.
"""

from __future__ import annotations

import warnings

import numpy as np

#: fitted scikit-learn arrays (and scalars) that a model predicts with
_LEARNED_ATTRIBUTES = ("coef_", "intercept_", "mean_", "scale_", "components_", "coefs_", "intercepts_",
                       "a_", "b_", "X_thresholds_", "y_thresholds_", "cluster_centers_")
_SVM_ATTRIBUTES = ("support_vectors_", "dual_coef_", "intercept_", "probA_", "probB_")


def _is_sklearn_object(value) -> bool:
    """scikit-learn classes and their subclasses (estimators, fer-bench's model wrappers, calibrators)."""
    return any(cls.__module__.startswith("sklearn.") for cls in type(value).__mro__)


def _size(value) -> int:
    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value)
    return int(np.size(value))


def _sklearn_parameter_counts(obj, seen: set[int]) -> tuple[int, int]:
    """(learned numbers, support vectors) of a fitted scikit-learn object and every scikit-learn object it holds
    (pipelines, calibrated classifiers, sub-estimators); each object is counted once."""
    if id(obj) in seen:
        return 0, 0
    seen.add(id(obj))
    n_parameters = n_support = 0
    if _is_sklearn_object(obj):
        support = getattr(obj, "support_vectors_", None)
        # An SVM predicts with its support vectors and dual coefficients; its coef_ (linear kernel only) is derived
        # from them, so it is not counted twice.
        names = _SVM_ATTRIBUTES if support is not None else _LEARNED_ATTRIBUTES
        for name in names:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # deprecated but still used (SVC probA_)
                    n_parameters += _size(getattr(obj, name, None))
            except (AttributeError, ValueError, TypeError):
                continue  # a property that does not apply to this estimator's configuration
        if support is not None:
            n_support += len(support)
    for value in _children(obj):
        params, support = _sklearn_parameter_counts(value, seen)
        n_parameters += params
        n_support += support
    return n_parameters, n_support


def _children(obj):
    """scikit-learn objects held in obj's attributes, also inside lists, tuples and dicts (e.g. Pipeline steps)."""
    try:
        values = list(vars(obj).values())
    except TypeError:
        return
    stack = values
    while stack:
        value = stack.pop()
        if isinstance(value, np.ndarray | str | bytes | int | float) or value is None:
            continue
        if isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif _is_sklearn_object(value):
            yield value


def sklearn_parameter_count(model) -> dict:
    """{"n_parameters": ..., "n_support_vectors": ... or None} of a fitted scikit-learn-based model: sizes of the
    fitted coefficients, intercepts, scaler statistics, PCA components, calibration parameters, and for SVMs the
    support vectors with their dual coefficients, in the model and every scikit-learn object it holds. Models
    built on scikit-learn offer it as their parameter_count()."""
    n_parameters, n_support = _sklearn_parameter_counts(model, set())
    return {"n_parameters": n_parameters, "n_support_vectors": n_support or None}


def sklearn_support_vectors(model) -> int:
    """Support vectors of the SVMs in a fitted scikit-learn-based model (0 without any)."""
    return _sklearn_parameter_counts(model, set())[1]
