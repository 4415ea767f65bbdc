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


#: instruction-set extensions that change what the models cost (bfloat16 and wide vectors), as /proc/cpuinfo
#: names them; "asimd" is ARM's NEON
SPEED_RELEVANT_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve")
#: the widest of them names the machine in the report, strongest first
_CPU_LEVELS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512_BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"),
               ("sve", "SVE"), ("asimd", "NEON"))


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The SPEED_RELEVANT_CPU_FLAGS this CPU has (two hosts sold under one name, "AMD EPYC", differed 3.5x in
    the same hog_svm fit and by bfloat16 support), from `cpuinfo` text or /proc/cpuinfo; [] where it cannot be
    read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return [flag for flag in SPEED_RELEVANT_CPU_FLAGS if flag in flags]


def machine_label(machine: dict) -> str:
    """How the report names a cell's machine: CPU, cores and its widest instruction set, e.g. "AMD EPYC (2
    cores, AVX2)"; cells computed before the features were recorded say so."""
    features = machine.get("cpu_features")
    if features is None:
        level = "instruction set not recorded"
    else:
        level = next((name for flag, name in _CPU_LEVELS if flag in features), "no AVX2")
    return f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cores', '?')} cores, {level})"


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
        "cpu_features": cpu_features(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def environment_info() -> dict:
    return {"code": git_commit(), "packages": package_versions(), "machine": machine_info(),
            "threads": thread_settings()}
