"""Model registry: a name -> a factory, so the harness and users treat every model alike.

Add your own model in one file::

    from fer_bench.models import register_model
    register_model("my_model", "my_package.my_module:make_my_model")   # or pass the callable itself

The factory is called as factory(seed=..., quick=..., **params) and returns an estimator implementing
fer_bench.models.base.ImageClassifier's interface. Import paths are resolved lazily, so listing models never
imports TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fer_bench.errors import FerBenchError

_MODELS: dict[str, Callable | str] = {}
#: modules a model needs at run time; used to skip a model cleanly when its dependency is missing
_REQUIRES: dict[str, tuple[str, ...]] = {}


def register_model(name: str, factory: Callable | str, *, requires: tuple[str, ...] = (),
                   overwrite: bool = False) -> None:
    if name in _MODELS and not overwrite:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = factory
    _REQUIRES[name] = tuple(requires)


def available_models() -> list[str]:
    return list(_MODELS)


def missing_requirements(name: str) -> list[str]:
    """Modules the model needs that are not importable here (e.g. tensorflow in the classic env)."""
    get_factory_spec(name)
    return [m for m in _REQUIRES[name] if importlib.util.find_spec(m) is None]


def get_factory_spec(name: str):
    try:
        return _MODELS[name]
    except KeyError:
        raise FerBenchError(f"unknown model {name!r}; available: {', '.join(_MODELS)}") from None


def make_model(name: str, *, seed: int = 0, quick: bool = False, **params):
    factory = get_factory_spec(name)
    missing = missing_requirements(name)
    if missing:
        raise FerBenchError(f"model {name!r} needs {', '.join(missing)}, which is not installed "
                            f"(pip install 'fer-bench[cnn]')")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(seed=seed, quick=quick, **params)


register_model("cnn", "fer_bench.models.cnn:make_cnn", requires=("tensorflow",))
register_model("hog_svm", "fer_bench.baselines.hog_svm:make_hog_svm")
register_model("logreg", "fer_bench.baselines.logreg:make_logreg")
