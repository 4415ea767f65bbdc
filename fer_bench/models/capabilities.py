"""Asking a model what it offers (the capability methods of fer_bench.models.base.ImageClassifier), for the
harness, the measurements and the figures alike. Imports nothing, so every stage can use it without a cycle."""


def offered(model, capability: str):
    """What a model offers through one of the interface's capability methods, None when it has no such method
    (a model written without fer-bench's base class) or offers nothing."""
    method = getattr(model, capability, None)
    return method() if callable(method) else None
