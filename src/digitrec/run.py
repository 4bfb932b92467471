"""One training run: everything the single-machine and the multi-worker loops share.

A run owns seeding, the data, resuming, the model with its optimizer and loss, the callbacks
that log, check, checkpoint and back up every epoch, and finishing (saving the model and
dropping the backup). A loop (Keras' `fit` in `train.py`, or the custom loop in
`multiworker.py`) only turns batches into updates and calls the callbacks.

Resume uses Keras' own `BackupAndRestore`. Its backup lives in a folder named after a
fingerprint of the train params, the prepared data and every module a training run can
execute, so a changed run starts fresh while an interrupted identical run continues from its
last completed epoch.

With `ema`, the optimizer keeps an exponential moving average of the weights and the saved
model holds that average. `SwapEMAWeights` puts the average in place for every validation
and every checkpoint, so each logged validation number and each checkpoint describe the
weights that would be saved at that point, not the raw ones.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py  # the format of Keras' weights files
import numpy as np

from digitrec import codedeps, models, prepared
from digitrec.backend import keras, tf
from digitrec.data import epoch_steps, one_hot_labels, training_dataset, validation_dataset
from digitrec.errors import DigitrecError
from digitrec.files import replace_dir
from digitrec.modelfile import save_model
from digitrec.params import TrainParams

BACKUP_ROOT_NAME = ".backup"
HISTORY_FILE = "history.csv"
VALIDATION_BATCH = 512
EMA_MOMENTUM = 0.99  # the average spans about the last 100 steps...
EMA_MAX_SHARE = 0.2  # ...and at most the last fifth of a run


@dataclass(frozen=True)
class Outputs:
    """Where a run writes: the model, its periodic checkpoints, its DVCLive logs."""

    model: Path
    checkpoints: Path
    metrics: Path


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]  # per epoch, the interrupted run's epochs included
    seconds: float                   # time spent training in this process
    wrote_outputs: bool = True       # False on a multi-worker job's non-chief workers


def loss(label_smoothing: float, reduction: str | None = "sum_over_batch_size"
         ) -> keras.losses.Loss:
    """The loss every model trains with: labels are one-hot rows, outputs probabilities.
    Label smoothing spreads a share of each label over all classes, which keeps the model
    from learning to be 100% sure."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing,
                                                reduction=reduction)


def seed_everything(seed: int) -> None:
    """Same params, data and machine give the same numbers to the last digit."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(config: TrainParams, steps_per_epoch: int
                  ) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The schedule: constant, cosine decay, or one-cycle (linear warm-up, then cosine decay)."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    warmup = int(total * config.warmup)
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate / 10, max(total - warmup, 1),
        warmup_target=config.learning_rate, warmup_steps=warmup,
    )


def ema_momentum(total_steps: int) -> float:
    """How much of the weights' moving average each step keeps.

    Keras starts the average at the first step's weights; with a fixed 0.99, a run of a few
    dozen steps would save a model that is mostly its first step, and batch normalisation's
    statistics, which follow the current weights, would not fit it at all (a one-epoch run
    read 45% of the test set). So a short run averages over its last fifth only.
    """
    return min(EMA_MOMENTUM, max(0.0, 1 - 1 / (EMA_MAX_SHARE * max(total_steps, 1))))


def make_optimizer(config: TrainParams, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer, with the moving average of the weights when `ema` is on."""
    rate = learning_rate(config, steps_per_epoch)
    ema = {"use_ema": config.ema,
           "ema_momentum": ema_momentum(config.epochs * steps_per_epoch)}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, **ema)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, **ema)
    return keras.optimizers.Adam(rate, **ema)


def code_files() -> list[Path]:
    """The source of a training run: `train.py` and every module of ours it can import."""
    train_module = Path(__file__).with_name("train.py")
    return [train_module, *codedeps.module_closure(train_module, train_module.parents[1])]


def fingerprint(config: TrainParams, prepared_dir: Path) -> str:
    """What identifies a run for resuming: params, prepared data and the code."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update((prepared_dir / prepared.MANIFEST).read_bytes())
    for path in sorted(set(code_files())):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class RunState:
    """Where a run starts: its backup folder and the epochs already done there."""

    backup_dir: Path
    completed_epochs: int
    discarded_other_runs: bool


def resume_state(config: TrainParams, prepared_dir: Path, model_path: Path) -> RunState:
    """Find this run's backup (beside the model, named by the run's fingerprint); remove
    backups of runs with other params, data or code."""
    backup_root = model_path.parent / BACKUP_ROOT_NAME
    run_id = fingerprint(config, prepared_dir)
    backup_dir = backup_root / run_id
    discarded = False
    if backup_root.exists():
        for other in backup_root.iterdir():
            if other.name != run_id:
                shutil.rmtree(other, ignore_errors=True)
                discarded = True
    completed = backed_up_epochs(backup_dir)
    if completed is None:
        print(f"warning: the backup of an interrupted run in {backup_dir} is damaged (a kill "
              "or power cut while it was written); starting fresh", file=sys.stderr)
        shutil.rmtree(backup_dir, ignore_errors=True)
        completed, discarded = 0, True
    return RunState(backup_dir, completed, discarded)


def backed_up_epochs(backup_dir: Path) -> int | None:
    """How many epochs Keras' backup in `backup_dir` holds (0 when there is none), or None
    when it cannot be used: its metadata or weights file is unreadable."""
    metadata = backup_dir / "training_metadata.json"
    if not metadata.exists():
        return 0
    try:
        epochs = json.loads(metadata.read_text())["epoch"]
        with h5py.File(backup_dir / "latest.weights.h5", "r"):
            pass
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) and epochs >= 0 else None


class TrainingRun:
    """The skeleton of a run; a loop plugs in between `build_model` and `finish`.

    `workers` processes train side by side (multi-worker); each takes an equal share of
    every global batch and of the examples. Only the chief speaks and keeps what it writes.
    """

    def __init__(self, config: TrainParams, prepared_dir: Path, outputs: Outputs,
                 workers: int = 1, is_chief: bool = True):
        models.check_name(config.model)  # before anything is touched
        seed_everything(config.seed)
        self.config, self.prepared_dir, self.outputs = config, prepared_dir, outputs
        self.train_images, self.train_labels = prepared.load_split(prepared_dir, "train")
        self.val_images, self.val_labels = prepared.load_split(prepared_dir, "val")
        self.batch_size = config.batch_size // workers
        self.steps_per_epoch = epoch_steps(len(self.train_labels), self.batch_size, workers)
        self.state = resume_state(config, prepared_dir, outputs.model)
        self.earlier: list[dict[str, float]] = []
        if is_chief:
            self.announce()

    def announce(self) -> None:
        """Say whether the run resumes, or starts fresh instead of an interrupted one."""
        state, epochs = self.state, self.config.epochs
        if state.completed_epochs:
            print(f"Resuming from epoch {state.completed_epochs + 1}/{epochs}: epochs "
                  f"1-{state.completed_epochs} were done by an interrupted run "
                  f"(backup in {state.backup_dir})", flush=True)
        elif state.discarded_other_runs:
            print("Starting fresh: params, data or code changed since the interrupted run",
                  flush=True)

    @property
    def live_dir(self) -> Path:
        """Where DVCLive writes while the run lasts; it replaces the metrics folder only
        when the run is complete, so a failed run leaves the previous logs in place."""
        return self.outputs.metrics.with_name(f".{self.outputs.metrics.name}.partial")

    def build_model(self) -> keras.Model:
        """The registry model, compiled with the run's optimizer, loss and metric."""
        model = models.build_model(self.config.model)
        model.compile(optimizer=make_optimizer(self.config, self.steps_per_epoch),
                      loss=loss(self.config.label_smoothing), metrics=["accuracy"])
        return model

    def training_data(self, shard: tuple[int, int] | None = None) -> tf.data.Dataset:
        """This worker's endless stream of training batches, from where the backup left off."""
        augment = self.config.augment
        redrawn = None
        if augment is not None and augment.redrawn > 0:
            redrawn = prepared.load_redrawn(self.prepared_dir)
        return one_hot_labels(training_dataset(
            np.asarray(self.train_images), self.train_labels, self.batch_size,
            self.config.seed, augment, redrawn, skip_epochs=self.state.completed_epochs,
            shard=shard))

    def validation_data(self) -> tf.data.Dataset:
        return one_hot_labels(validation_dataset(np.asarray(self.val_images), self.val_labels,
                                                 VALIDATION_BATCH))

    def callbacks(self, parameter_count: int) -> list[keras.callbacks.Callback]:
        """What runs after every epoch, in this order: stop on a diverged loss, back up the
        raw state, keep the history for resuming, log (validation already saw
        the averaged weights), swap the averaged weights in, checkpoint them."""
        state = self.state
        self.earlier = read_history(state.backup_dir / HISTORY_FILE, state.completed_epochs)
        state.backup_dir.mkdir(parents=True, exist_ok=True)
        callbacks = [
            StopOnNonFiniteLoss(),  # before the backup, which then keeps the last good epoch
            keras.callbacks.BackupAndRestore(str(state.backup_dir), save_freq="epoch",
                                             delete_checkpoint=False),
            keras.callbacks.CSVLogger(str(state.backup_dir / HISTORY_FILE), append=True),
            EpochLog(open_live(self.live_dir, parameter_count, self.earlier)),
        ]
        if self.config.ema:
            callbacks.append(SwapAveragedWeights(swap_on_epoch=True))
        callbacks.append(PeriodicCheckpoint(self.outputs.checkpoints,
                                            self.config.checkpoint_every,
                                            self.config.keep_checkpoints,
                                            drop_older=not state.completed_epochs))
        return callbacks

    def finish(self, model: keras.Model, this_run: dict[str, list[float]], seconds: float,
               wrote_outputs: bool = True) -> TrainResult:
        """Save the model, put the logs in place and drop the backup: the run is complete."""
        save_model(model, self.outputs.model)
        replace_dir(self.live_dir, self.outputs.metrics)
        shutil.rmtree(self.state.backup_dir.parent, ignore_errors=True)
        return TrainResult(model, merge_history(self.earlier, this_run), seconds, wrote_outputs)


class SwapAveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras' `SwapEMAWeights`, swapping by copying. Its TensorFlow path swaps by adding and
    subtracting, which rounds the raw weights a little at every swap and so changes what is
    trained; a copy leaves training exactly as it would be without the swaps."""

    def _tf_swap_variables(self, optimizer: keras.optimizers.Optimizer) -> None:
        self._backend_swap_variables(optimizer)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop with a clear error when an epoch's loss is NaN or infinite: the weights are
    garbage from then on, and nothing may replace the previous model. Checked once an
    epoch, not every step, so that Keras need not wait for each step's numbers."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("loss")
        if value is not None and not math.isfinite(float(value)):
            raise DigitrecError(
                f"training diverged: the loss became {float(value)} in epoch {epoch + 1}; "
                "lower train.learning_rate. The previous model is kept.")


class EpochLog(keras.callbacks.Callback):
    """Log every epoch's numbers to DVCLive under the epoch's number (1, 2, ...), as
    `train/loss`, `train/accuracy`, `val/loss` and `val/accuracy`."""

    def __init__(self, live: Any):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        log_epoch(self.live, epoch + 1, logs or {})

    def on_train_end(self, logs: dict | None = None) -> None:
        self.live.end()


def metric_name(key: str) -> str:
    """Keras' history key as a DVCLive metric name: `val_loss` -> `val/loss`."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def log_epoch(live: Any, epoch: int, logs: dict[str, float]) -> None:
    live.step = epoch
    for key, value in logs.items():
        if key in ("epoch", "learning_rate"):
            continue
        live.log_metric(metric_name(key), float(value))
    live.sync()


def open_live(metrics_dir: Path, parameter_count: int, earlier: list[dict[str, float]]) -> Any:
    """A DVCLive logger that already holds the epochs an interrupted run completed."""
    from dvclive import Live

    shutil.rmtree(metrics_dir, ignore_errors=True)  # what a killed run left
    live = Live(dir=str(metrics_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    live.summary["parameter_count"] = parameter_count
    for epoch, row in enumerate(earlier, start=1):
        log_epoch(live, epoch, row)
    return live


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Save the whole model (optimizer included) after every N-th epoch; keep the last few.

    With `drop_older`, a fresh run removes an earlier run's checkpoints when it saves its
    first one (not before: a run that fails early leaves them as they were).
    """

    def __init__(self, directory: Path, every: int, keep: int, drop_older: bool = True):
        super().__init__()
        self.directory, self.every, self.keep = directory, every, keep
        self.drop_older = drop_older

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.drop_older:
            for older in self.directory.glob("epoch-*.keras"):
                older.unlink()
            self.drop_older = False
        save_model(self.model, self.directory / f"epoch-{epoch + 1:03d}.keras")
        for old in sorted(self.directory.glob("epoch-*.keras"))[: -self.keep]:
            old.unlink()


def read_history(path: Path, epochs: int) -> list[dict[str, float]]:
    """The first `epochs` rows Keras' CSVLogger wrote, and rewrite the file to just those."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))[:epochs]
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return [{k: float(v) for k, v in row.items() if k != "epoch"} for row in rows]


def merge_history(earlier: list[dict[str, float]], this_run: dict[str, list[float]]
                  ) -> dict[str, list[float]]:
    """Per-epoch values of the whole run: the interrupted run's epochs, then this run's
    (none, when the backup already held every epoch)."""
    keys = list(this_run) or (list(earlier[0]) if earlier else [])
    return {key: [row[key] for row in earlier] + this_run.get(key, []) for key in keys
            if all(key in row for row in earlier)}
