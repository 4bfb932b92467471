"""TensorFlow and Keras, imported once with the pipeline's settings.

Import `tf` and `keras` from here rather than directly, so TensorFlow's start-up chatter is
quiet and every module gets the same backend.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
