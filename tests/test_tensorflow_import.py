"""TensorFlow is imported without its start-up lines on stderr, and they are shown when the import fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

NOISE = ("absl::InitializeLog", "cudart_stub", "cuda_platform", "cpu_feature_guard", "cuInit")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow")
def test_making_a_cnn_prints_none_of_tensorflows_start_up_lines():
    result = _python("from fer_bench.models import make_model\n"
                     "model = make_model('cnn', quick=True)\n"
                     "import tensorflow as tf\n"
                     "print(float(tf.constant(2.0) * 3))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "6.0"  # TensorFlow really is imported and works
    assert not [line for line in result.stderr.splitlines() if any(noise in line for noise in NOISE)], result.stderr


def test_a_failing_import_shows_what_tensorflow_printed(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'native: libtensorflow_cc.so.2 not found\\n')\n"
                                      "raise ImportError('broken TensorFlow install')\n")
    result = _python("from fer_bench.tensorflow_import import import_tensorflow\nimport_tensorflow()\n",
                     PYTHONPATH=str(tmp_path))
    assert result.returncode != 0
    assert "native: libtensorflow_cc.so.2 not found" in result.stderr
    assert "ImportError: broken TensorFlow install" in result.stderr
