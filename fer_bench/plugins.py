"""Plugins: a user's Python file or module that registers models or tasks, loaded by `fer-bench run --plugin`.

A plugin is ordinary Python run once before the grid starts, e.g. my_models.py::

    from fer_bench.models import register_model
    from fer_bench.models.cnn import make_cnn

    def make_wide_cnn(seed=0, quick=False, **params):
        return make_cnn(seed=seed, quick=quick, filters=(48, 96, 192, 384), **params)

    register_model("wide_cnn", make_wide_cnn, requires=("tensorflow",), family="network")

then `fer-bench run --plugin my_models.py --models cnn,wide_cnn`. A mistake in the plugin is reported as one line
naming the plugin's file and line, like every fer-bench error.

The results folder records the plugins that produced it (fer-bench.json "plugins": absolute file paths or module
names), and `fer-bench report` imports them again, so a plugin model's stored cells, its saved model included,
are usable in a later process without --plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from fer_bench.errors import FerBenchError

FER_BENCH_DIR = str(Path(__file__).resolve().parent)


def load_plugin(spec: str):
    """Import `spec`: a path to a .py file, or a module name importable from the current folder or the Python
    path. Returns the module."""
    path = Path(spec)
    from_file = spec.endswith(".py") or path.is_file()
    if from_file:
        if not path.is_file():
            raise FerBenchError(f"--plugin {spec}: no such file")
        name = f"fer_bench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # so the plugin's classes can be found by name (pickling, dataclasses)
    else:
        # `fer-bench` (the console script) does not put the current folder on the path; `python -m` does.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        if importlib.util.find_spec(spec.split(".")[0]) is None:
            raise FerBenchError(f"--plugin {spec}: no module of that name (not a file, not on the Python path)")
    try:
        if from_file:
            module_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except FerBenchError:
        raise
    except Exception as exc:  # the user's code: one line saying what failed and where, no traceback
        if from_file:
            sys.modules.pop(name, None)  # (a failed import_module removes its module itself)
        raise FerBenchError(f"--plugin {spec}: {_what_and_where(exc)}") from None


def _what_and_where(exc: Exception) -> str:
    """The exception's type and message, and the plugin's file and line it came from."""
    if isinstance(exc, SyntaxError):
        message, where = exc.msg, (exc.filename, exc.lineno)
    else:
        # the innermost frame outside fer-bench and Python's import machinery: the plugin's own code
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not f.filename.startswith(FER_BENCH_DIR) and "importlib" not in f.filename]
        message, where = str(exc), (frames[-1].filename, frames[-1].lineno) if frames else None
    return f"{type(exc).__name__}: {message}" + (f" at {where[0]}:{where[1]}" if where else "")


def plugin_reference(spec: str) -> str:
    """How a results folder records a plugin: a file by its absolute path, a module by its name."""
    path = Path(spec)
    return str(path.resolve()) if spec.endswith(".py") or path.is_file() else spec


def _loaded(spec: str) -> bool:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        return f"fer_bench_plugin_{path.stem}" in sys.modules
    return spec in sys.modules


def record_plugins(out: Path, specs: list[str]) -> None:
    """Add `specs` to the plugins recorded in <out>/fer-bench.json (which must exist)."""
    from fer_bench.storage import atomic_write, dumps_json, read_json

    if not specs:
        return
    marker = Path(out) / "fer-bench.json"
    info = read_json(marker)
    recorded = list(dict.fromkeys([*info.get("plugins", []), *map(plugin_reference, specs)]))
    if recorded != info.get("plugins"):
        try:
            atomic_write(marker, dumps_json({**info, "plugins": recorded}))
        except OSError as exc:
            raise FerBenchError(f"cannot write to results folder {out}: {exc.strerror or exc}") from None


def load_recorded_plugins(out: Path) -> list[str]:
    """Import the plugins <out>/fer-bench.json records (those not imported yet). One that cannot be imported
    any more is said in one line on stderr: its cells are still reported from their stored predictions."""
    from fer_bench.storage import read_json

    marker = Path(out) / "fer-bench.json"
    loaded = []
    for spec in (read_json(marker).get("plugins", []) if marker.exists() else []):
        if _loaded(spec):
            continue
        try:
            load_plugin(spec)
            loaded.append(spec)
        except FerBenchError as exc:
            print(f"report: the plugin recorded in {marker} cannot be imported ({exc}); its models' cells are "
                  "reported from their stored predictions only", file=sys.stderr)
    return loaded
