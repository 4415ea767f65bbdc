"""One grid cell in a child process of a worker: `python -m fer_bench.cell_process JOB.json`.

A worker (a Dask worker, local or remote) runs each cell in a child process of its own, because
- a CNN cell computes for half an hour: in the worker's own process it would block the worker's heartbeats;
- thread settings (OMP/OpenBLAS/MKL, TensorFlow) take effect only when set before numpy or TensorFlow are
  imported, and Dask sets them to 1 in its workers;
- a cell that crashes (out of memory, killed) fails that cell only, not the worker.

The job file says which cell, which function computes it (the executor's CellFunction, by module and name), the
data set's reference (loaded with fer_bench.data.reference.load_reference) and where to write the cell's files;
on a user error (bad data, fingerprint mismatch) the child writes error.json and exits with 2.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from fer_bench.errors import FerBenchError

ERROR_FILE = "error.json"


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when the worker that started it dies, so that closing a cluster (or a
    worker killed mid-cell) leaves no orphaned training behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _import_plugins(plugins: list[dict]) -> None:
    """The client's --plugin files travel as text (no shared filesystem needed); modules are imported by name."""
    from fer_bench.plugins import load_plugin

    folder = Path(tempfile.mkdtemp(prefix="fer-bench-plugins-"))
    for plugin in plugins:
        if plugin.get("source") is None:
            load_plugin(plugin["spec"])
        else:
            path = folder / Path(plugin["spec"]).name
            path.write_text(plugin["source"], encoding="utf-8")
            load_plugin(str(path))


def _function(reference: str):
    """The module-level function a "module:qualname" reference names."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(job: dict) -> None:
    from fer_bench.data.reference import DatasetReference, load_reference

    _import_plugins(job.get("plugins", []))
    reference = DatasetReference.from_json(job["data"])
    dataset = load_reference(reference, worker=job["execution"]["worker"])
    compute = _function(job["compute"])
    compute(dataset, job["task"], job["model"], job["seed"], Path(job["directory"]), quick=job["quick"],
            command=job["command"], reference=reference, checkpoints=Path(job["checkpoints"]),
            execution=job["execution"], robustness=job.get("robustness", True))


def main(argv: list[str]) -> int:
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    _die_with_parent(job["parent_pid"])
    error_path = job_path.with_name(ERROR_FILE)
    try:
        run_job(job)
    except FerBenchError as exc:
        error_path.write_text(json.dumps({"message": str(exc), "user_error": True}), encoding="utf-8")
        return 2
    except Exception as exc:  # noqa: BLE001 - any crash of the cell is reported to the client in one line
        error_path.write_text(json.dumps({"message": f"{type(exc).__name__}: {exc}", "user_error": False,
                                          "traceback": traceback.format_exc()}), encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
