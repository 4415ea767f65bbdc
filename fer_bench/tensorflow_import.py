"""TensorFlow, imported once per process without its start-up noise.

Importing TensorFlow on a machine without a GPU prints oneDNN, CUDA-driver, cuInit and absl lines on stderr from
C++ before Python's logging exists; TF_CPP_MIN_LOG_LEVEL does not reach the absl ones. Every CNN cell used to
print them twice. The import and the device discovery that prints the second block therefore run with the
process's native stderr (file descriptor 2) sent to a temporary file, which is replayed only when they fail.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def _native_stderr_to(file):
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow():
    """The tensorflow module (imported quietly the first time in a process)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO lines after start-up too; warnings stay
    with tempfile.TemporaryFile() as captured:
        try:
            with _native_stderr_to(captured):
                import tensorflow as tf

                tf.config.list_physical_devices()  # device discovery: the second block of lines
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", errors="replace"))
            raise
    return tf
