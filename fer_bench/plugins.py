"""Plugins: a user's Python file or module that registers models or tasks, loaded by `fer-bench run --plugin`.

A plugin is ordinary Python run once before the grid starts, e.g. my_models.py::

    from fer_bench.models import register_model
    from fer_bench.models.cnn import make_cnn

    def make_wide_cnn(seed=0, quick=False, **params):
        return make_cnn(seed=seed, quick=quick, filters=(48, 96, 192, 384), **params)

    register_model("wide_cnn", make_wide_cnn, requires=("tensorflow",))

then `fer-bench run --plugin my_models.py --models cnn,wide_cnn`. A mistake in the plugin is reported as one line
naming the plugin's file and line, like every fer-bench error.
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
