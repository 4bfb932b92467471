"""Train a registry model on the prepared data: one machine with Keras' `fit`, or several
with the multi-worker loop; both are plugged into the same `TrainingRun` (see `run.py`)."""

from __future__ import annotations

import time
from pathlib import Path

from digitrec.backend import tf
from digitrec.params import TrainParams
from digitrec.run import Outputs, TrainingRun, TrainResult


def train(config: TrainParams, prepared_dir: Path, outputs: Outputs,
          verbose: int | str = "auto") -> TrainResult:
    """Train, log every epoch to DVCLive, checkpoint, resume if interrupted, save the model."""
    if config.strategy == "multi_worker":
        from digitrec.multiworker import train_multi_worker

        return train_multi_worker(config, prepared_dir, outputs, verbose)
    run = TrainingRun(config, prepared_dir, outputs)
    with distribution_strategy(config.strategy).scope():
        model = run.build_model()
    start = time.perf_counter()
    fit = model.fit(
        run.training_data(),
        epochs=config.epochs,
        steps_per_epoch=run.steps_per_epoch,
        validation_data=run.validation_data(),
        shuffle=False,  # the dataset shuffles itself, with its own seed
        verbose=verbose,
        callbacks=run.callbacks(model.count_params()),
    )
    return run.finish(model, fit.history, time.perf_counter() - start)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: one device, or all local GPUs mirrored when there are several."""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
