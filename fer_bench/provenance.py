"""What produced a result: code commit, package versions, machine and thread settings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from fer_bench import __version__

_PACKAGES = ("numpy", "scikit-learn", "scikit-image", "scipy", "tensorflow", "keras", "matplotlib", "pillow")


@lru_cache(maxsize=1)
def git_commit() -> dict:
    """Commit of the fer-bench checkout the code runs from ("unknown" outside a git checkout)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                                 "--", "fer_bench", "baselines"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return {"commit": commit, "dirty": bool(status)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["fer-bench"] = __version__
    return versions


def thread_settings() -> dict:
    settings = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS",
                                                 "TF_NUM_INTRAOP_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        settings["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
        settings["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    return settings


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def environment_info() -> dict:
    return {"code": git_commit(), "packages": package_versions(), "machine": machine_info(),
            "threads": thread_settings()}
