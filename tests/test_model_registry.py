"""The model registry (one ModelSpec record per model, scoped registration) and capabilities as a closed set
(Capability: one member per capability method of ImageClassifier, looked up through one adapter)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from fer_bench.baselines.logreg import make_logreg
from sklearn.base import BaseEstimator, ClassifierMixin

from fer_bench import models
from fer_bench.errors import FerBenchError
from fer_bench.models import (
    CLASSIC,
    NETWORK,
    PRETRAINED,
    ModelSpec,
    available_models,
    make_model,
    model_description,
    model_family,
    model_spec,
    register_model,
    registered_model,
    registry_snapshot,
    requirements,
)
from fer_bench.models.base import ImageClassifier
from fer_bench.models.capabilities import Capability, Hook, interface_method, offered

ROOT = Path(__file__).resolve().parents[1]


def _factory(seed=0, quick=False, **params):
    return make_logreg(seed=seed, quick=quick, **params)


def test_a_registered_model_is_one_frozen_record():
    with registry_snapshot():
        spec = register_model("recorded", _factory, requires=["numpy"], description="a note")
        assert spec == ModelSpec("recorded", _factory, ("numpy",), "a note")
        assert model_spec("recorded") is spec and model_spec("recorded[Cs=(1.0,)]") is spec
        assert requirements("recorded") == ("numpy",) and model_description("recorded[Cs=(1.0,)]") == "a note"
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.description = "changed"
        with pytest.raises(ValueError, match="already registered"):
            register_model("recorded", _factory)
        replaced = register_model("recorded", _factory, overwrite=True)  # the whole record: no old note
        assert model_spec("recorded") is replaced and replaced.description == "" and replaced.requires == ()
    assert "recorded" not in available_models()
    with pytest.raises(FerBenchError, match="unknown model 'recorded'"):
        model_spec("recorded")


def test_a_model_says_its_family_which_the_report_reads_for_classic_rivals():
    assert [model_family(m) for m in ("cnn", "hog_svm", "logreg[Cs=(1.0,)]", "fer_pkg")] == [
        NETWORK, CLASSIC, CLASSIC, PRETRAINED]
    assert model_family("not_registered") == ""  # a cell of a model this process does not know: no family
    with registered_model("scoped", _factory, family=PRETRAINED) as spec:
        assert spec.family == PRETRAINED and model_family("scoped") == PRETRAINED
    with pytest.raises(ValueError, match="family 'handmade' is not one of classic, network, pretrained"):
        ModelSpec("odd", _factory, family="handmade")


def test_registered_model_is_undone_on_exit_and_restores_a_replaced_record():
    builtin = model_spec("logreg")
    order = available_models()
    with registered_model("scoped", _factory) as spec:
        assert model_spec("scoped") is spec and make_model("scoped", seed=1).random_state == 1
    assert "scoped" not in available_models()
    with pytest.raises(RuntimeError), registered_model("logreg", "no_such_module:nothing", description="stand-in"):
        assert model_description("logreg") == "stand-in"
        raise RuntimeError("the block fails")
    assert model_spec("logreg") is builtin and available_models() == order


def test_capabilities_are_the_interface_methods():
    """One member per capability method of ImageClassifier: every public method it adds to scikit-learn's
    estimator (not scikit-learn's generated set_*_request), other than the interface's core (predict, save,
    load) and its hooks."""
    sklearn_names = set(dir(BaseEstimator)) | set(dir(ClassifierMixin))
    added = {name for name in vars(ImageClassifier)
             if not name.startswith("_") and not name.endswith("_request") and name not in sklearn_names}
    hooks = {hook.value for hook in Hook}
    assert {c.value for c in Capability} == added - {"predict", "save", "load"} - hooks
    assert hooks <= added


def _member_references(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in ("Capability", "Hook"):
            yield node.value.id, node.attr, node.lineno


def test_every_capability_the_code_names_exists():
    """A misspelt member fails here even in code no other test runs (it would be an AttributeError there)."""
    enums = {"Capability": Capability, "Hook": Hook}
    files = [p for folder in ("fer_bench", "baselines", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")]
    wrong = [f"{path.relative_to(ROOT)}:{line}: {enum}.{attr}" for path in files
             for enum, attr, line in _member_references(path)
             if attr not in enums[enum].__members__ and not hasattr(enums[enum], attr)]
    assert not wrong


class Foreign:
    """A model written without fer-bench's base class: it has some of the interface's methods."""

    def prediction_views(self):
        return 3

    selected_params_ = {"C": 1.0}


def test_the_adapter_maps_any_model_onto_the_interface():
    foreign = Foreign()
    assert offered(foreign, Capability.PREDICTION_VIEWS) == 3
    assert offered(foreign, Capability.SALIENCY_NETWORK) is None  # no such method: not offered
    assert interface_method(foreign, Capability.PREDICT_PROBA_SINGLE_VIEW) is None
    assert interface_method(foreign, Hook.SET_TASK) is None
    model = make_model("logreg")
    assert offered(model, Capability.SALIENCY_NETWORK) is None and offered(model, Capability.TRAINING_PASSES) == 1
    assert interface_method(model, Hook.CHECK_PARAMETERS)() is None
    with pytest.raises(TypeError, match="Capability"):
        offered(model, "saliency_network")  # a name is not a capability: a typo cannot mean "not offered"
    with pytest.raises(TypeError, match="takes images"):
        offered(model, Capability.PREDICT_PROBA_SINGLE_VIEW)


def test_the_registry_is_private_to_its_module():
    """Tests and users register through register_model, registered_model and registry_snapshot only."""
    assert not hasattr(models, "_MODELS") and not hasattr(models, "_REQUIRES")
    files = [path for folder in ("tests", "benchmarks") for path in (ROOT / folder).rglob("*.py")]
    private = [str(path.relative_to(ROOT)) for path in files
               if path.name != Path(__file__).name and "_REGISTRY" in path.read_text(encoding="utf-8")]
    assert not private
