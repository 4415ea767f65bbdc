"""What a model offers, named by a closed set (Capability: one member per capability method of
fer_bench.models.base.ImageClassifier), and the one adapter that maps any model onto the interface, for the
harness, the measurements and the figures alike. Imports nothing, so every stage can use it without a cycle.

    offered(model, Capability.SALIENCY_NETWORK)   # (Keras model, conv layer name), or None: not offered

A misspelt member is an AttributeError where it is written, never a silent "not offered"; a model written
without fer-bench's base class lacks some methods, and interface_method (the adapter: the only place that looks
a method up by its name) treats a missing one as not offered.
"""

from __future__ import annotations

from enum import Enum


class Capability(Enum):
    """The capability methods of ImageClassifier, each valued by its method's name (see fer_bench.models.base
    for what each returns). The base class's defaults mean "not offered" (None; one view, one training pass,
    selected_params_ as chosen on PublicTest); a model declares what it offers by overriding them."""

    SELECTED_ON_VALIDATION = "selected_on_validation"
    VALIDATION_ACCURACY = "validation_accuracy"
    TRAINING_HISTORY = "training_history"
    PARAMETER_COUNT = "parameter_count"
    SALIENCY_NETWORK = "saliency_network"
    KERAS_NETWORK = "keras_network"
    PREDICTION_VIEWS = "prediction_views"
    TRAINING_PASSES = "training_passes"
    #: takes the images: interface_method(model, Capability.PREDICT_PROBA_SINGLE_VIEW)(X)
    PREDICT_PROBA_SINGLE_VIEW = "predict_proba_single_view"
    LEARNED_PICTURES = "learned_pictures"
    STAGE_TIMINGS = "stage_timings"
    TRAINING_FLOPS = "training_flops"


class Hook(Enum):
    """The interface's hooks the harness calls on a model that has them: set_task(task) before fit,
    check_parameters() when a variant's parameters are set (raising ValueError or TypeError on a bad value), and
    check_resources(n_train) before a grid starts (raising ValueError when fitting n_train training images would
    not fit this machine)."""

    SET_TASK = "set_task"
    CHECK_PARAMETERS = "check_parameters"
    CHECK_RESOURCES = "check_resources"


def interface_method(model, member: Capability | Hook):
    """The adapter from any model onto the interface: the bound method through which `model` offers `member`,
    None when it has no such method (a model written without fer-bench's base class)."""
    if not isinstance(member, Capability | Hook):
        raise TypeError(f"expected a Capability or Hook member, got {member!r}")
    method = getattr(model, member.value, None)
    return method if callable(method) else None


def offered(model, capability: Capability):
    """What a model offers through one of the interface's capability methods that take no argument, None when
    it has no such method or offers nothing."""
    if capability is Capability.PREDICT_PROBA_SINGLE_VIEW:
        raise TypeError("predict_proba_single_view takes images: call interface_method(model, capability)(X)")
    method = interface_method(model, capability)
    return method() if method is not None else None
