"""A small Keras model that reads drawn digits, for the serve and export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitrec.examples import draw_digit
from digitrec.reading import images


def drawn_digits() -> tuple[np.ndarray, np.ndarray]:
    """120 digits drawn as `digitrec.examples` draws them, prepared as predict prepares a
    picture: (N, 28, 28, 1) float32 and their labels, for training small test models."""
    digits, labels = [], []
    for digit in range(10):
        for seed in range(12):
            drawing = draw_digit(digit, 120, pen=0.05 + 0.01 * (seed % 3), ink=255, paper=0,
                                 seed=100 * digit + seed)
            digits.append(images.clean_image(drawing).digit)
            labels.append(digit)
    return np.stack(digits)[..., None], np.array(labels)


def train_tiny_model(path: Path) -> Path:
    """Train a one-conv model on `drawn_digits`, batch-normalised as the registry's are (so
    export and serving meet the same layers); save it."""
    from digitrec.backend import keras

    keras.utils.set_random_seed(0)
    digits, labels = drawn_digits()
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Conv2D(8, 5, strides=2, use_bias=False),
                              keras.layers.BatchNormalization(momentum=0.9),
                              keras.layers.ReLU(),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(digits, labels, epochs=30, verbose=0)
    model.save(path)
    return path
