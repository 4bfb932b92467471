"""Prepared arrays to `tf.data.Dataset`: the one way later stages feed a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from digitrec.prepare import load_split


def make_dataset(
    prepared_dir: Path,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 images (B, 28, 28, 1), int32 labels (B,)) from one prepared split.

    Shuffling is seeded and reshuffles every epoch, so a run is repeatable as a whole.
    """
    images, labels = load_split(prepared_dir, split)
    return arrays_to_dataset(np.asarray(images), labels, batch_size, shuffle, seed)


def arrays_to_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """The tf.data pipeline over in-memory arrays: shuffle, batch, prefetch."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
