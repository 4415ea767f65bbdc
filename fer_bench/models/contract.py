"""The contract every registered model keeps, checked on small synthetic data (scikit-learn's check_estimator
idea, for fer-bench's image-classifier interface).

    from fer_bench.models.contract import check_model
    check_model("my_model")          # raises ContractError naming the first broken rule

or, for every registered model (built-in, plugin or entry point), `python -m pytest tests/test_model_contract.py`
with `FER_BENCH_PLUGINS=my_models.py` naming plugin files to import first.

The rules (`CHECKS`, in order):
  parameters    get_params/set_params round-trip, sklearn.base.clone gives equal parameters, and __init__ stores
                its parameters only (no fitted attributes, no validation)
  fit_predict   fit returns the model; predict_proba has shape (n, k) with rows summing to 1; predict returns
                labels from classes_
  sample_weight weighting one class up shifts predictions toward it (a model that ignores the weights fails)
  save_load     save_model/load_model round trip gives the same probabilities
  seed          two fits with the same seed give the same predictions
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench import validation
from fer_bench.errors import FerBenchError
from fer_bench.models import make_model
from fer_bench.models.base import load_model, save_model

#: the small synthetic data set the checks fit on (seconds even for the CNN's quick configuration)
CONTRACT_DATA = {"n_train": 420, "n_public": 140, "n_private": 140, "seed": 0}
#: weight of the up-weighted class in the sample_weight check
HEAVY_WEIGHT = 20.0


class ContractError(AssertionError):
    """A rule of the model contract that a model breaks."""


@dataclass
class ContractData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray


def contract_data(task: str = "binary") -> ContractData:
    """Balanced training, validation and test images of one task, from fer-bench's synthetic faces."""
    from fer_bench.data.synthetic import make_synthetic
    from fer_bench.tasks import get_task, prepare_task_data

    data = prepare_task_data(make_synthetic(**CONTRACT_DATA), get_task(task), seed=0, balancing="undersample")
    X_val, y_val, _ = data.tests["PublicTest"]
    X_test, _, _ = data.tests["PrivateTest"]
    return ContractData(data.X_train, data.y_train, X_val, y_val, X_test)


def _require(condition: bool, rule: str, message: str) -> None:
    if not condition:
        raise ContractError(f"{rule}: {message}")


def _fit(name: str, data: ContractData, *, seed: int = 0, sample_weight=None):
    model = make_model(name, seed=seed, quick=True)
    fitted = model.fit(data.X_train, data.y_train, sample_weight=sample_weight,
                       validation_data=(data.X_val, data.y_val))
    _require(fitted is model, "fit_predict", f"{name}.fit must return the model itself")
    return model


def check_parameters(name: str, data: ContractData) -> None:
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import check_no_attributes_set_in_init

    model = make_model(name, seed=0, quick=True)
    params = model.get_params()
    _require(isinstance(params, dict) and params, "parameters", f"{name}.get_params() returned no parameters")
    _require(model.set_params(**params) is model, "parameters", f"{name}.set_params must return the model")
    cloned = clone(model)
    _require(cloned is not model and set(cloned.get_params()) == set(params), "parameters",
             f"sklearn.base.clone({name}) does not give the same parameters")
    try:
        check_no_attributes_set_in_init(name, model)
    except AssertionError as exc:
        raise ContractError(f"parameters: {name}.__init__ must only store its parameters ({exc})") from None


def check_probabilities(model, X, n_classes: int, rule: str = "fit_predict") -> np.ndarray:
    """A fitted model's predict_proba on X: shape (len(X), n_classes), rows of probabilities summing to 1, and
    predict within classes_ (ContractError otherwise). Returns the probabilities; the benchmarks use it too."""
    try:  # the rules a cell's output is held to when it is computed (fer_bench.validation)
        proba = validation.check_probabilities(model.predict_proba(X), len(X), n_classes, where="predict_proba",
                                               tolerance=validation.COMPUTED_SUM_TOLERANCE)
    except FerBenchError as exc:
        raise ContractError(f"{rule}: {exc}") from None
    predicted = np.asarray(model.predict(X))
    _require(set(np.unique(predicted)) <= set(np.asarray(model.classes_).tolist()), rule,
             "predict returned labels outside classes_")
    return proba


def check_fit_predict(name: str, data: ContractData) -> None:
    check_probabilities(_fit(name, data), data.X_test, len(np.unique(data.y_train)))


def check_sample_weight(name: str, data: ContractData) -> None:
    plain = _fit(name, data).predict(data.X_val)
    weights = np.where(data.y_train == 0, HEAVY_WEIGHT, 1.0)
    weighted = _fit(name, data, sample_weight=weights).predict(data.X_val)
    _require(np.mean(weighted == 0) > np.mean(plain == 0), "sample_weight",
             f"weighting class 0 by {HEAVY_WEIGHT:g} did not make {name} predict it more often "
             f"({np.mean(plain == 0):.2f} -> {np.mean(weighted == 0):.2f}): sample_weight is ignored")


def check_save_load(name: str, data: ContractData) -> None:
    model = _fit(name, data)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "model")
        loaded = load_model(Path(tmp) / "model")
        _require(np.allclose(loaded.predict_proba(data.X_test), model.predict_proba(data.X_test), atol=1e-6),
                 "save_load", "the loaded model's probabilities differ from the saved model's")


def check_seed(name: str, data: ContractData) -> None:
    first = _fit(name, data, seed=3).predict_proba(data.X_test)
    second = _fit(name, data, seed=3).predict_proba(data.X_test)
    _require(np.array_equal(np.asarray(first), np.asarray(second)), "seed",
             "two fits with the same seed gave different probabilities")


CHECKS = {"parameters": check_parameters, "fit_predict": check_fit_predict, "sample_weight": check_sample_weight,
          "save_load": check_save_load, "seed": check_seed}


def check_model(name: str, checks=tuple(CHECKS), data: ContractData | None = None) -> None:
    """Run the contract's checks on the registered model `name` (its quick configuration)."""
    data = data or contract_data()
    for check in checks:
        CHECKS[check](name, data)
