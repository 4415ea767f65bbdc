"""The model contract (fer_bench.models.contract) for every registered model, and the harness's protocol: fit
sees the balanced Training set and PublicTest as validation only; PrivateTest reaches a model only through
predict_proba after fit.

Run it on your own model: `FER_BENCH_PLUGINS=my_models.py python -m pytest tests/test_model_contract.py`
(comma-separated plugin files or modules, imported as `fer-bench run --plugin` imports them).
"""

from __future__ import annotations

import hashlib
import os
import textwrap

import numpy as np
import pytest
from fer_bench.baselines.logreg import PixelLogisticRegression

from fer_bench.data.synthetic import make_synthetic
from fer_bench.models import available_models, missing_requirements, registered_model, registry_snapshot
from fer_bench.models.base import ImageClassifier
from fer_bench.models.contract import ContractError, check_model, contract_data
from fer_bench.plugins import load_plugin
from fer_bench.run import run_grid
from fer_bench.tasks import get_task, prepare_task_data

for _plugin in filter(None, os.environ.get("FER_BENCH_PLUGINS", "").split(",")):
    load_plugin(_plugin.strip())


@pytest.fixture(scope="module")
def data():
    return contract_data()


#: registered models that keep only part of the contract, the task they are checked on and the rules they keep:
#: a pretrained model trains nothing (sample weights change nothing) and, without set_task, predicts FER-2013's
#: seven emotions
PRETRAINED_CONTRACT = {"fer_pkg": ("7class", ("parameters", "fit_predict", "save_load", "seed"))}


#: registered models whose contract check trains a CNN: marked slow
SLOW_CONTRACT = {"cnn", "cnn_fast"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CONTRACT else name
                                  for name in available_models()])
def test_every_registered_model_keeps_the_contract(name, data):
    if missing_requirements(name):
        pytest.skip(f"{name} needs {', '.join(missing_requirements(name))}")
    if name in PRETRAINED_CONTRACT:
        task, checks = PRETRAINED_CONTRACT[name]
        check_model(name, checks=checks, data=contract_data(task))
    else:
        check_model(name, data=data)


PLUGIN_MODEL = textwrap.dedent("""\
    import numpy as np
    from fer_bench.models import register_model
    from fer_bench.models.base import ImageClassifier


    class NearestMean(ImageClassifier):
        '''A user's model in one file: the class whose (weighted) mean face is nearest.'''

        def __init__(self, seed=0, temperature=1000.0):
            self.seed = seed
            self.temperature = temperature

        def fit(self, X, y, sample_weight=None, validation_data=None):
            X = X.reshape(len(X), -1).astype(float)
            w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
            self.classes_ = np.unique(y)
            self.means_ = np.stack([np.average(X[y == c], axis=0, weights=w[y == c]) for c in self.classes_])
            self.log_prior_ = np.log([w[y == c].sum() / w.sum() for c in self.classes_])
            return self

        def predict_proba(self, X):
            d = ((X.reshape(len(X), -1)[:, None, :] - self.means_[None]) ** 2).mean(axis=2)
            logits = -d / self.temperature + self.log_prior_
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)


    register_model("nearest_mean", lambda seed=0, quick=False, **p: NearestMean(seed=seed, **p))
""")


def test_a_plugin_model_keeps_the_contract(tmp_path, data):
    (tmp_path / "my_nearest_mean.py").write_text(PLUGIN_MODEL)
    with registry_snapshot():  # the plugin's registration stays inside this test
        load_plugin(str(tmp_path / "my_nearest_mean.py"))
        check_model("nearest_mean", data=data)


class IgnoresWeights(PixelLogisticRegression):
    """A model that drops sample_weight: the contract must catch it."""

    def fit(self, X, y, sample_weight=None, validation_data=None):
        return super().fit(X, y, validation_data=validation_data)


class StoresDerivedState(PixelLogisticRegression):
    def __init__(self, **params):
        super().__init__(**params)
        self.scale_ = 255.0  # fitted-looking state set in __init__


@pytest.mark.parametrize("model_class, rule", [(IgnoresWeights, "sample_weight"),
                                               (StoresDerivedState, "parameters")])
def test_the_contract_catches_a_broken_model(model_class, rule, data):
    broken = registered_model("broken", lambda seed=0, quick=False, **p: model_class(Cs=(1e-3,), max_iter=50,
                                                                                     random_state=seed))
    with broken, pytest.raises(ContractError, match=f"^{rule}:"):
        check_model("broken", checks=(rule,), data=data)


# --- the harness's protocol, seen from inside a model ---------------------------------------------------------

def _digests(images) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images}


class Spy(ImageClassifier):
    """Records what the harness hands it; predicts the training class frequencies."""

    calls: list = []  # shared by the instances the registry makes (one per cell), reset by the test

    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, X, y, sample_weight=None, validation_data=None):
        X_val, y_val = validation_data
        Spy.calls.append(("fit", _digests(X), np.bincount(y).tolist(), sample_weight, _digests(X_val),
                          np.asarray(y_val).copy()))
        self.classes_ = np.unique(y)
        self.prior_ = np.bincount(y, minlength=len(self.classes_)) / len(y)
        return self

    def predict_proba(self, X):
        Spy.calls.append(("predict", _digests(X)))
        return np.tile(self.prior_, (len(X), 1))


def test_fit_sees_training_and_publictest_and_privatetest_only_reaches_predict(tmp_path, monkeypatch):
    monkeypatch.setattr(Spy, "calls", [])
    dataset = make_synthetic(n_train=420, n_public=140, n_private=140, seed=0)
    with registered_model("spy", lambda seed=0, quick=False: Spy(seed=seed)):
        run_grid(dataset=dataset, tasks=["binary", "7class"], models=["spy"], quick=True, out=tmp_path / "r",
                 report=False)
    fits = [call for call in Spy.calls if call[0] == "fit"]
    assert len(fits) == 2  # one cell per task
    # PrivateTest images with no copy in Training or PublicTest (the synthetic data plants a few copies)
    private_only = (_digests(dataset.split("PrivateTest").images) - _digests(dataset.split("Training").images)
                    - _digests(dataset.split("PublicTest").images))
    assert private_only
    for (_, train, counts, weights, validation, y_val), task_name in zip(fits, ["binary", "7class"], strict=True):
        data = prepare_task_data(dataset, get_task(task_name), seed=0)
        public = data.tests["PublicTest"]
        assert train == _digests(data.X_train)  # the balanced Training set, nothing else
        assert counts == np.bincount(data.y_train).tolist()
        if data.sample_weight is None:
            assert weights is None
        else:
            np.testing.assert_array_equal(weights, data.sample_weight)
        assert validation == _digests(public[0]) and np.array_equal(y_val, public[1])  # PublicTest, as validation
        assert not (train | validation) & private_only  # fit never sees a PrivateTest image
    # PrivateTest images reach the model through predict_proba, and only after fit
    first_fit = next(i for i, call in enumerate(Spy.calls) if call[0] == "fit")
    private_calls = [i for i, call in enumerate(Spy.calls) if call[0] == "predict" and call[1] & private_only]
    assert len(private_calls) >= 2 and min(private_calls) > first_fit
