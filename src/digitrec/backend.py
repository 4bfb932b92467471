"""TensorFlow and Keras, imported once with the pipeline's settings.

Import `tf` and `keras` from here rather than directly, so TensorFlow's start-up chatter is
quiet and every module gets the same backend.
"""

import os
import sys
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextmanager
def _quiet_native_stderr():
    """Hide what TensorFlow's C++ side prints while it loads (oneDNN and CUDA notices that
    no setting silences). Python errors still propagate; set DIGITREC_TF_VERBOSE=1 to see
    everything."""
    if os.environ.get("DIGITREC_TF_VERBOSE") or "tensorflow" in sys.modules:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to hide
        yield
        return
    sys.stderr.flush()
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _quiet_native_stderr():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
