"""Prepared arrays to `tf.data.Dataset`: the one way a training run feeds a model.

Training data repeats with a seeded reshuffle every epoch and draws its augmentation from
stateless random ops keyed by the global batch number, so the stream of batches is the same
on every run, and a resumed run can skip exactly the epochs it already trained on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from digitrec.backend import tf
from digitrec.catalog import IMAGE_SIDE, NUM_CLASSES
from digitrec.data import prepared
from digitrec.params import Augment, TrainParams

VALIDATION_BATCH = 512
NEGATIVE = -1  # the label of a negative (a picture with no digit) in a stream of classes


class TrainingInput:
    """A run's data: the prepared train and val splits and the training negatives,
    memory-mapped, as the streams a loop feeds the model (target rows: one-hot for a digit,
    uniform for a negative; the loss smooths them).

    Outlier exposure (`train.negatives` above 0, and negatives in the prepared data): that
    share of the training examples are negatives, so the model learns to give a picture
    with no digit no confident class. An epoch is still one pass over the digits.

    `workers` processes train side by side (multi-worker); each takes an equal share of
    every global batch and of the examples.
    """

    def __init__(self, config: TrainParams, prepared_dir: Path, workers: int = 1):
        self.config = config
        self.prepared_dir = prepared_dir
        self.train_images, self.train_labels = prepared.load_split(prepared_dir, "train")
        self.val_images, self.val_labels = prepared.load_split(prepared_dir, "val")
        self.negatives = prepared.load_negatives(prepared_dir, "train")
        self.negative_share = config.negatives if len(self.negatives) else 0.0
        self.batch_size = config.batch_size // workers
        self.steps_per_epoch = epoch_steps(len(self.train_labels), self.batch_size, workers,
                                           self.negative_share)

    def training(self, skip_epochs: int = 0, shard: tuple[int, int] | None = None
                 ) -> tf.data.Dataset:
        """This worker's endless stream of training batches, after `skip_epochs` epochs."""
        augment = self.config.augment
        redrawn = None
        if augment is not None and augment.redrawn > 0:
            redrawn = prepared.load_redrawn(self.prepared_dir)
        negatives = np.asarray(self.negatives) if self.negative_share > 0 else None
        return target_rows(training_dataset(
            np.asarray(self.train_images), self.train_labels, self.batch_size,
            self.config.seed, augment, redrawn, skip_epochs=skip_epochs, shard=shard,
            negatives=negatives, negative_share=self.negative_share))

    def validation(self) -> tf.data.Dataset:
        return target_rows(validation_dataset(np.asarray(self.val_images), self.val_labels,
                                              VALIDATION_BATCH))


def training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augment: Augment | None = None,
    redrawn: np.ndarray | None = None,
    skip_epochs: int = 0,
    shard: tuple[int, int] | None = None,
    negatives: np.ndarray | None = None,
    negative_share: float = 0.0,
) -> tf.data.Dataset:
    """An endless, seeded stream of shuffled (and optionally augmented) training batches.

    Use with `epoch_steps(examples, batch_size, shards, negative_share)`; `skip_epochs`
    resumes the stream where an interrupted run left it. `shard=(count, index)` keeps one of
    `count` equal, disjoint shares of the examples (the remainder is left out), so that
    workers training side by side never see the same example in an epoch. `redrawn` is a
    second version of every image, shown instead of the first for a share `augment.redrawn`
    of the examples, drawn anew for each example every epoch.

    With `negatives` and a `negative_share` above 0, an epoch is every digit once and as
    many negatives (label NEGATIVE) as fill its last batch, about that share, taken in the
    negatives' own reshuffled order; negatives are augmented as the digits are (a redrawn
    version of one is itself). Without, batches follow the digits' epochs exactly, the last
    one short.

    Each epoch's order is a stateless permutation of example numbers, keyed by the seed and
    the epoch, and each batch is gathered from the arrays held whole in memory: a fraction
    of the cost of streaming every example through a shuffle buffer, and the same order
    whichever epoch a stream starts at.
    """
    share = augment.redrawn if augment is not None and redrawn is not None else 0.0
    if share > 0:
        images = np.concatenate([images, redrawn], axis=-1)  # both, as two channels
    shards, index = shard or (1, 0)
    if shard is not None:
        seed += index  # each worker augments its share differently
    mixing = negatives is not None and len(negatives) > 0 and negative_share > 0
    steps_per_epoch = epoch_steps(len(labels), batch_size, shards,
                                  negative_share if mixing else 0.0)
    pool_images, pool_labels = _share(images, shards, index), _share(labels, shards, index)
    digit_count, negative_count = len(pool_labels), 0
    if mixing:
        if share > 0:
            negatives = np.concatenate([negatives, negatives], axis=-1)
        own_negatives = _share(negatives, shards, index)
        negative_count = len(own_negatives)
        pool_images = np.concatenate([pool_images, own_negatives])
        pool_labels = np.concatenate([pool_labels, np.full(negative_count, NEGATIVE)])
    drawn = steps_per_epoch * batch_size - digit_count if mixing else 0
    pool_images = tf.constant(pool_images)
    pool_labels = tf.constant(pool_labels.astype(np.int32))
    seed_tensor = tf.constant(seed, tf.int64)

    def epoch_order(epoch: tf.Tensor) -> tf.data.Dataset:
        """The example numbers of one epoch, in batches."""
        order = _permutation(digit_count, seed_tensor, epoch)
        if drawn:
            rounds = -(-drawn // max(negative_count, 1))  # each negative more than once
            picked = tf.concat([_permutation(negative_count, seed_tensor + 1,
                                             epoch * rounds + r)
                                for r in range(rounds)], axis=0)[:drawn]
            order = tf.gather(tf.concat([order, digit_count + picked], axis=0),
                              _permutation(digit_count + drawn, seed_tensor + 2, epoch))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def prepare_batch(step: tf.Tensor, chosen: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_images = tf.gather(pool_images, chosen)
        batch_labels = tf.gather(pool_labels, chosen)
        if share > 0:
            batch_images = pick_version(batch_images, share, tf.stack([seed_tensor, -1 - step]))
        if augment is not None and (augment.shift or augment.rotation or augment.zoom
                                    or augment.flip):
            batch_images = augment_batch(batch_images, tf.stack([seed_tensor, step]),
                                         augment.shift, augment.rotation, augment.zoom,
                                         augment.flip)
        return batch_images, batch_labels

    endless = 2**62
    orders = tf.data.Dataset.range(skip_epochs, endless).flat_map(epoch_order)
    steps = tf.data.Dataset.range(skip_epochs * steps_per_epoch, endless)
    dataset = tf.data.Dataset.zip(steps, orders).map(prepare_batch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _share(array: np.ndarray, shards: int, index: int) -> np.ndarray:
    """Worker `index`'s equal share of `shards` (every shards-th row; the remainder of an
    uneven split left out), read whole into memory."""
    return np.asarray(array[index::shards][: len(array) // shards])


def _permutation(count: int, seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """0 .. count - 1 in an order fixed by the seed and the epoch."""
    key = tf.stack([seed, tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(count), seed=key)


def epoch_steps(examples: int, batch_size: int, shards: int = 1,
                negative_share: float = 0.0) -> int:
    """Batches in one epoch of one worker's equal share of `examples` (the remainder of an
    uneven split is left out), so many more that the digits still fill an epoch when a
    `negative_share` of the examples are negatives; the training loop and a resumed stream
    must agree on it."""
    return math.ceil(examples // shards / (batch_size * (1 - negative_share)))


def pick_version(pairs: tf.Tensor, share: float, seed: tf.Tensor) -> tf.Tensor:
    """From images stacked with a second version as channel 1, keep the second version of a
    random `share` of them and the first of the rest."""
    chosen = tf.random.stateless_uniform([tf.shape(pairs)[0], 1, 1, 1], seed=seed) < share
    return tf.where(chosen, pairs[..., 1:2], pairs[..., 0:1])


def validation_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int
                       ) -> tf.data.Dataset:
    """Batches in a fixed order, for scoring."""
    return examples(images, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def target_rows(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """(images, class numbers) batches as (images, target rows): one-hot for a digit, and
    the uniform distribution for a negative (outlier exposure: Hendrycks et al., 2019). The
    loss smooths them, which Keras' sparse loss cannot, and a model saved with the
    categorical one still loads with Keras alone."""
    def rows(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        one_hot = tf.one_hot(labels, NUM_CLASSES)  # all zeros for NEGATIVE
        uniform = tf.fill(tf.shape(one_hot), 1 / NUM_CLASSES)
        return images, tf.where(labels[:, None] == NEGATIVE, uniform, one_hot)

    return dataset.map(rows)


def examples(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """(image, label) pairs; labels as int32, which the loss expects."""
    return tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))


def augment_batch(images: tf.Tensor, seed: tf.Tensor, shift: float, rotation: float,
                  zoom: float, flip: bool = False) -> tf.Tensor:
    """Shift (pixels), rotate (degrees) and zoom (relative) each image by a random amount,
    and with `flip`, mirror half of them left to right (clothes, not digits).

    One affine transform per image, applied in a single resampling, so augmentation costs
    little next to the model and does not blur the digit three times over.
    """
    n = tf.shape(images)[0]
    u = tf.random.stateless_uniform([n, 4], seed=seed, minval=-1.0, maxval=1.0)
    angle = u[:, 0] * rotation * math.pi / 180
    scale = 1.0 + u[:, 1] * zoom
    dx, dy = u[:, 2] * shift, u[:, 3] * shift
    # The transform maps each output pixel to the input pixel it samples from.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre = (IMAGE_SIDE - 1) / 2
    # A mirrored image samples column `2 * centre - x` where the plain one samples x.
    mirror = tf.ones_like(cos)
    if flip:
        coin = tf.random.stateless_uniform([n], seed=tf.random.experimental.stateless_fold_in(
            seed, 1))
        mirror = tf.where(coin < 0.5, -1.0, 1.0)
    offset = (1 - mirror) * centre
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([
        mirror * cos, -sin, centre - cos * centre + sin * centre - dx + offset * cos,
        mirror * sin, cos, centre - sin * centre - cos * centre - dy + offset * sin,
        zeros, zeros,
    ], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[IMAGE_SIDE, IMAGE_SIDE],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
