"""One training run, from params to a saved model, whichever loop runs its epochs.

The run owns the sequence: seeding, the data, finding the backup to resume from, building
the model (in the loop's distribution scope), the callbacks that check, back up, log and
checkpoint every epoch, and finishing (calibrating the model on the validation digits,
saving it, putting the logs in place, dropping the backup). A loop only runs epochs: Keras'
`fit` on one machine (`SingleMachine` below), or the custom loop across several
(`multiworker.MultiWorker`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from digitrec.backend import keras, tf
from digitrec.errors import DigitrecError
from digitrec.files import disk_error_of, disk_errors, disk_message, replace_dir
from digitrec.modelfile import KERAS_MODEL, save_model
from digitrec.outputs import check_output
from digitrec.params import TrainParams
from digitrec.paths import TrainOutputs
from digitrec.training import models
from digitrec.training.calibration import calibrate
from digitrec.training.callbacks import (
    EpochLog,
    PeriodicCheckpoint,
    StopOnNonFiniteLoss,
    SwapAveragedWeights,
    open_live,
)
from digitrec.training.input import TrainingInput
from digitrec.training.recipe import compile_model
from digitrec.training.resume import (
    HISTORY_FILE,
    announce,
    merge_history,
    read_history,
    resume_state,
)


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]  # per epoch, the interrupted run's epochs included
    seconds: float                   # time spent training in this process
    temperature: float               # baked into the saved model (calibration.py)
    wrote_outputs: bool = True       # False on a multi-worker job's non-chief workers


class Loop(Protocol):
    """What runs a run's epochs. `workers` processes train side by side; only the chief's
    outputs are kept and only it speaks."""

    workers: int
    is_chief: bool

    def outputs_for(self, outputs: TrainOutputs) -> Any:
        """A context manager giving the outputs this process writes (and cleaning up)."""

    def scope(self) -> Any:
        """The distribution scope the model and its optimizer are built in."""

    def run_epochs(self, model: keras.Model, data: TrainingInput,
                   callbacks: list[keras.callbacks.Callback], epochs: int,
                   completed_epochs: int, verbose: int | str) -> dict[str, list[float]]:
        """Train epochs `completed_epochs + 1` to `epochs`; return this run's history."""


def train(config: TrainParams, prepared_dir: Path, outputs: TrainOutputs,
          verbose: int | str = "auto") -> TrainResult:
    """Train, log every epoch to DVCLive, checkpoint, resume if interrupted, save the model.

    A full disk or a read-only folder while backing up, checkpointing or logging is one
    `DigitrecError` naming the model's folder (the model itself: its own file)."""
    models.check_name(config.model)  # before anything is touched
    check_output(outputs.model, KERAS_MODEL, forced_by="")
    if config.strategy == "multi_worker":
        from digitrec.training.multiworker import MultiWorker

        loop: Loop = MultiWorker(config.batch_size)
    else:
        loop = SingleMachine(config.strategy)
    with disk_errors(outputs.model.parent), loop.outputs_for(outputs) as written:
        run = TrainingRun(config, prepared_dir, written, loop)
        try:
            return run.execute(verbose)
        except Exception as exc:
            problem = disk_error_of(exc)
            if problem is None:
                raise
            run.drop_scratch()
            raise DigitrecError(disk_message(outputs.model.parent, problem, run.weight_bytes,
                                             at_least=True)) from None


def drop_h5_handles(folder: Path) -> None:
    """Close now the HDF5 files under `folder` that a failed write left open (Keras' backup
    weights): left to the interpreter's exit, h5py cannot flush them on a full disk, prints
    tracebacks and crashes the process. Emptied first, so that closing needs no space."""
    import h5py

    where = str(folder.resolve())
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith(where):
                    os.ftruncate(int(fd), 0)
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        with contextlib.suppress(Exception):
            while file_id.valid:
                file_id.close()


def seed_everything(seed: int) -> None:
    """Same params, data and machine give the same numbers to the last digit."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class TrainingRun:
    """The sequence of one run; `execute` runs it with the loop it was given."""

    def __init__(self, config: TrainParams, prepared_dir: Path, outputs: TrainOutputs,
                 loop: Loop):
        self.config, self.outputs, self.loop = config, outputs, loop
        seed_everything(config.seed)
        self.data = TrainingInput(config, prepared_dir, loop.workers)
        self.state = resume_state(config, prepared_dir, outputs.model)
        if loop.is_chief:
            announce(self.state, config.epochs)

    def execute(self, verbose: int | str) -> TrainResult:
        """Build the model, train the epochs not done yet, and finish.

        The finished model is calibrated (temperature scaling on the validation digits)
        before it is saved, so every reader of the file (evaluate, predict, serve, the
        exports) shows probabilities that mean what they say; the checkpoints are not.
        """
        with self.loop.scope():
            model = self.build_model()
        self.weight_bytes = 12 * model.count_params()  # float32 weights and two moments
        earlier = read_history(self.state.backup_dir / HISTORY_FILE, self.state.completed_epochs)
        live = open_live(self.live_dir, model.count_params(), earlier)
        callbacks = self.callbacks(live)
        start = time.perf_counter()
        history = self.loop.run_epochs(model, self.data, callbacks, self.config.epochs,
                                       self.state.completed_epochs, verbose)
        seconds = time.perf_counter() - start
        temperature = calibrate(model, self.data.val_images, self.data.val_labels)
        live.summary["temperature"] = temperature
        live.end()
        save_model(model, self.outputs.model)
        replace_dir(self.live_dir, self.outputs.metrics)
        shutil.rmtree(self.state.backup_dir.parent, ignore_errors=True)
        return TrainResult(model, merge_history(earlier, history), seconds, temperature,
                           self.loop.is_chief)

    weight_bytes: int | None = None  # known once the model is built

    def drop_scratch(self) -> None:
        """After a full disk: remove this run's backup (its weights file half written, it
        cannot be resumed from) and its partial logs, so the space is free again."""
        drop_h5_handles(self.state.backup_dir)
        shutil.rmtree(self.state.backup_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.state.backup_dir.parent.rmdir()  # when no other run's backup is there
        shutil.rmtree(self.live_dir, ignore_errors=True)

    @property
    def live_dir(self) -> Path:
        """Where DVCLive writes while the run lasts; it replaces the metrics folder only
        when the run is complete, so a failed run leaves the previous logs in place."""
        return self.outputs.metrics.with_name(f".{self.outputs.metrics.name}.partial")

    def build_model(self) -> keras.Model:
        """The registry model, compiled with the run's optimizer, loss and metric."""
        model = models.build_model(self.config.model)
        compile_model(model, self.config, self.data.steps_per_epoch)
        return model

    def callbacks(self, live: Any) -> list[keras.callbacks.Callback]:
        """What runs after every epoch, in this order: stop on a diverged loss, back up the
        raw state, keep the history for resuming, log (validation already saw the averaged
        weights), swap the averaged weights in, checkpoint them."""
        backup_dir = self.state.backup_dir
        backup_dir.mkdir(parents=True, exist_ok=True)
        callbacks = [
            StopOnNonFiniteLoss(),  # before the backup, which then keeps the last good epoch
            keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch",
                                             delete_checkpoint=False),
            keras.callbacks.CSVLogger(str(backup_dir / HISTORY_FILE), append=True),
            EpochLog(live),
        ]
        if self.config.ema:
            callbacks.append(SwapAveragedWeights(swap_on_epoch=True))
        callbacks.append(PeriodicCheckpoint(self.outputs.checkpoints,
                                            self.config.checkpoint_every,
                                            self.config.keep_checkpoints,
                                            drop_older=not self.state.completed_epochs))
        return callbacks


class SingleMachine:
    """Keras' `fit` on this machine: one device, or all local GPUs mirrored when there are
    several (`train.strategy: auto`), or `mirrored` on request."""

    workers = 1
    is_chief = True

    def __init__(self, strategy: str):
        self.strategy_name = strategy
        self._strategy: tf.distribute.Strategy | None = None

    @contextmanager
    def outputs_for(self, outputs: TrainOutputs) -> Iterator[TrainOutputs]:
        yield outputs

    def scope(self) -> Any:
        if self._strategy is None:  # made once the run has seeded TensorFlow
            gpus = tf.config.list_logical_devices("GPU")
            mirrored = self.strategy_name == "mirrored" or len(gpus) > 1
            self._strategy = (tf.distribute.MirroredStrategy() if mirrored
                              else tf.distribute.get_strategy())
        return self._strategy.scope()

    def run_epochs(self, model: keras.Model, data: TrainingInput,
                   callbacks: list[keras.callbacks.Callback], epochs: int,
                   completed_epochs: int, verbose: int | str) -> dict[str, list[float]]:
        fit = model.fit(
            data.training(skip_epochs=completed_epochs),
            epochs=epochs,
            steps_per_epoch=data.steps_per_epoch,
            validation_data=data.validation(),
            shuffle=False,  # the dataset shuffles itself, with its own seed
            verbose=verbose,
            callbacks=callbacks,
        )
        return fit.history

