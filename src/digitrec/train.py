"""Train a registry model on the prepared data: checkpoints, resume, DVCLive logs.

Resume uses Keras' own `BackupAndRestore`. Its backup lives in a folder named after a
fingerprint of the train params, the prepared data and the model code, so a changed run
starts fresh while an interrupted identical run continues from its last completed epoch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from digitrec import models
from digitrec.backend import keras, tf
from digitrec.data import Augmenter, augment_batch, training_dataset, validation_dataset
from digitrec.errors import DigitrecError
from digitrec.files import atomic_path
from digitrec.prepare import MANIFEST, load_redrawn, load_split

BACKUP_ROOT_NAME = ".backup"
HISTORY_FILE = "history.csv"
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "one_cycle")
STRATEGIES = ("auto", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Augment:
    """Random affine distortion of training images (pixels, degrees, relative scale), the
    share of them shown as the predict stage redraws a user's digit, and whether to mirror
    half of them. The defaults are drawn for handwriting; a dataset's catalog entry
    (`datasets.Dataset.augment`) changes what does not suit its pictures."""

    shift: float = 2.0
    rotation: float = 10.0
    zoom: float = 0.1
    redrawn: float = 0.5
    flip: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """The `train` section of params.yaml, checked once."""

    model: str = models.DEFAULT_MODEL
    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 0.004
    schedule: str = "one_cycle"
    warmup: float = 0.2
    ema: bool = True
    label_smoothing: float = 0.0
    augment: Augment | None = field(default_factory=Augment)
    seed: int = 42
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    strategy: str = "auto"

    @classmethod
    def from_params(cls, section: dict[str, Any], style: Mapping[str, Any] | None = None
                    ) -> TrainConfig:
        """The config from the params' train section. `augment: true`, or the fields a
        mapping leaves out, take the dataset's augmentation `style`
        (`datasets.Dataset.augment`: what differs from the handwriting defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise DigitrecError(f"params.yaml: unknown train setting(s): {', '.join(unknown)}")
        values = dict(section)
        augment = values.get("augment", True)
        if augment is True:
            values["augment"] = Augment(**(style or {}))
        elif not augment:
            values["augment"] = None
        elif isinstance(augment, dict):
            unknown = sorted(set(augment) - {f.name for f in fields(Augment)})
            if unknown:
                raise DigitrecError(
                    f"params.yaml: unknown train.augment setting(s): {', '.join(unknown)}")
            values["augment"] = Augment(**{**(style or {}), **augment})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        checks = [
            (self.model in models.REGISTRY,
             f"train.model {self.model!r} is not one of {', '.join(models.REGISTRY)}"),
            (self.epochs >= 1, "train.epochs must be at least 1"),
            (self.batch_size >= 1, "train.batch_size must be at least 1"),
            (self.optimizer in OPTIMIZERS,
             f"train.optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.learning_rate > 0, "train.learning_rate must be positive"),
            (self.schedule in SCHEDULES, f"train.schedule must be one of {', '.join(SCHEDULES)}"),
            (0 <= self.warmup < 1, "train.warmup is a fraction of training, from 0 to below 1"),
            (0 <= self.label_smoothing < 1, "train.label_smoothing must be from 0 to below 1"),
            (self.checkpoint_every >= 1, "train.checkpoint_every must be at least 1"),
            (self.keep_checkpoints >= 1, "train.keep_checkpoints must be at least 1"),
            (self.strategy in STRATEGIES, f"train.strategy must be one of {', '.join(STRATEGIES)}"),
            (self.augment is None or 0 <= self.augment.redrawn <= 1,
             "train.augment.redrawn is a share of the training images, from 0 to 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise DigitrecError(f"params.yaml: {message}")


def learning_rate(config: TrainConfig, steps_per_epoch: int
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


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer; with `ema`, the saved weights are an exponential moving average of the
    last ~100 steps, which smooths out the noise of the final updates."""
    rate = learning_rate(config, steps_per_epoch)
    ema = {"use_ema": config.ema, "ema_momentum": 0.99}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, **ema)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, **ema)
    return keras.optimizers.Adam(rate, **ema)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: one device, or all local GPUs mirrored when there are several.
    (`multi_worker` trains in `digitrec.multiworker`.)"""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_and_compile(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """The registry model with the optimizer, loss and metric every model shares."""
    model = models.build_model(config.model)
    # Keras' sparse loss has no label smoothing; the categorical one, fed one-hot labels
    # (`one_hot_labels`), does, and a model saved with it still loads with Keras alone.
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
            if config.label_smoothing else "sparse_categorical_crossentropy")
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def one_hot_labels(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """(images, class numbers) batches as (images, one-hot rows), for the smoothed loss."""
    return dataset.map(lambda images, labels: (images, tf.one_hot(labels, models.NUM_CLASSES)))


def fingerprint(config: TrainConfig, prepared_dir: Path) -> str:
    """What identifies a run for resuming: params, prepared data and the model code."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update((prepared_dir / MANIFEST).read_bytes())
    for module in (models, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def seed_everything(seed: int) -> None:
    """Same params, data and machine give the same numbers to the last digit."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Save the whole model (optimizer included) after every N-th epoch; keep the last few."""

    def __init__(self, directory: Path, every: int, keep: int):
        super().__init__()
        self.directory, self.every, self.keep = directory, every, keep

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.directory / f"epoch-{epoch + 1:03d}.keras")
        for old in sorted(self.directory.glob("epoch-*.keras"))[: -self.keep]:
            old.unlink()


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, atomically (Keras wants the temporary name to end in .keras)."""
    with atomic_path(path) as tmp:
        staging = tmp.with_suffix(".keras")
        try:
            model.save(staging)
            staging.replace(tmp)
        finally:
            staging.unlink(missing_ok=True)


@dataclass
class RunState:
    """Where a run starts: its backup folder and the epochs already done there."""

    backup_dir: Path
    completed_epochs: int
    discarded_other_runs: bool


def resume_state(config: TrainConfig, prepared_dir: Path, model_path: Path) -> RunState:
    """Find this run's backup (beside the model, named by the run's fingerprint); remove
    backups of runs with other params or data."""
    backup_root = model_path.parent / BACKUP_ROOT_NAME
    run_id = fingerprint(config, prepared_dir)
    backup_dir = backup_root / run_id
    discarded = False
    if backup_root.exists():
        for other in backup_root.iterdir():
            if other.name != run_id:
                shutil.rmtree(other, ignore_errors=True)
                discarded = True
    metadata = backup_dir / "training_metadata.json"
    completed = json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0
    return RunState(backup_dir, completed, discarded)


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


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]  # per epoch, the interrupted run's epochs included
    seconds: float                   # time in `fit`, this run only
    wrote_outputs: bool = True       # False on a multi-worker job's non-chief workers


def announce(state: RunState, config: TrainConfig, checkpoint_dir: Path) -> None:
    """Say whether the run resumes; a fresh run drops the checkpoints of an older one."""
    if state.completed_epochs:
        print(f"Resuming from epoch {state.completed_epochs + 1}/{config.epochs}: epochs "
              f"1-{state.completed_epochs} were done by an interrupted run "
              f"(backup in {state.backup_dir})", flush=True)
        return
    if state.discarded_other_runs:
        print("Starting fresh: params or data changed since the interrupted run", flush=True)
    for stale in checkpoint_dir.glob("epoch-*.keras"):
        stale.unlink()


def augmenter(config: TrainConfig) -> Augmenter | None:
    """The augmentation the config asks for, as a function of (images, seed), or None."""
    if config.augment is None:
        return None
    a = config.augment

    def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return augment_batch(images, seed, a.shift, a.rotation, a.zoom, a.flip)

    return augment


def training_stream(config: TrainConfig, prepared_dir: Path, images: np.ndarray,
                    labels: np.ndarray, batch_size: int, skip_epochs: int,
                    shard: tuple[int, int] | None = None) -> tf.data.Dataset:
    """The training batches the config asks for: shuffled, augmented, partly redrawn."""
    redrawn = None
    if config.augment is not None and config.augment.redrawn > 0:
        redrawn = load_redrawn(prepared_dir), config.augment.redrawn
    return training_dataset(np.asarray(images), labels, batch_size, config.seed,
                            augmenter(config), skip_epochs=skip_epochs, shard=shard,
                            redrawn=redrawn)


def start_logging(state: RunState, metrics_dir: Path, parameters: int
                  ) -> tuple[list[dict[str, float]], Any]:
    """The epochs an interrupted run completed, and a DVCLive logger that already holds them."""
    earlier = read_history(state.backup_dir / HISTORY_FILE, state.completed_epochs)
    state.backup_dir.mkdir(parents=True, exist_ok=True)
    return earlier, open_live(metrics_dir, parameters, earlier)


def finish_run(model: keras.Model, model_path: Path, state: RunState,
               earlier: list[dict[str, float]], this_run: dict[str, list[float]],
               seconds: float, wrote_outputs: bool = True) -> TrainResult:
    """Save the model and drop the backup, now that the run is complete."""
    save_model(model, model_path)
    shutil.rmtree(state.backup_dir.parent, ignore_errors=True)
    return TrainResult(model, merge_history(earlier, this_run), seconds, wrote_outputs)


def open_live(metrics_dir: Path, parameters: int, earlier: list[dict[str, float]]) -> Any:
    """A DVCLive logger that already holds the epochs an interrupted run completed."""
    from dvclive import Live
    from dvclive.utils import standardize_metric_name

    live = Live(dir=str(metrics_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    live.summary["params"] = parameters
    for row in earlier:
        for name, value in row.items():
            live.log_metric(standardize_metric_name(name, "dvclive.keras"), value)
        live.next_step()
    return live


def train(
    config: TrainConfig,
    prepared_dir: Path,
    model_path: Path,
    checkpoint_dir: Path,
    metrics_dir: Path,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train, log every epoch to DVCLive, checkpoint, resume if interrupted, save the model."""
    if config.strategy == "multi_worker":
        from digitrec.multiworker import train_multi_worker

        return train_multi_worker(config, prepared_dir, model_path, checkpoint_dir,
                                  metrics_dir, verbose)
    seed_everything(config.seed)
    train_images, train_labels = load_split(prepared_dir, "train")
    val_images, val_labels = load_split(prepared_dir, "val")
    steps_per_epoch = math.ceil(len(train_labels) / config.batch_size)

    state = resume_state(config, prepared_dir, model_path)
    announce(state, config, checkpoint_dir)
    with distribution_strategy(config.strategy).scope():
        model = build_and_compile(config, steps_per_epoch)
    train_data = training_stream(config, prepared_dir, train_images, train_labels,
                                 config.batch_size, state.completed_epochs)
    val_data = validation_dataset(np.asarray(val_images), val_labels, 512)
    if config.label_smoothing:
        train_data, val_data = one_hot_labels(train_data), one_hot_labels(val_data)

    earlier, live = start_logging(state, metrics_dir, model.count_params())
    start = time.perf_counter()
    fit = model.fit(
        train_data,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_data,
        shuffle=False,  # the dataset shuffles itself, with its own seed
        verbose=verbose,
        callbacks=training_callbacks(config, state, checkpoint_dir, live),
    )
    return finish_run(model, model_path, state, earlier, fit.history,
                      time.perf_counter() - start)


def training_callbacks(config: TrainConfig, state: RunState, checkpoint_dir: Path,
                       live: Any) -> list[keras.callbacks.Callback]:
    """What runs after every epoch: history for resuming, DVCLive, checkpoints, backup."""
    from dvclive.keras import DVCLiveCallback

    return [
        keras.callbacks.CSVLogger(str(state.backup_dir / HISTORY_FILE), append=True),
        DVCLiveCallback(live=live),
        PeriodicCheckpoint(checkpoint_dir, config.checkpoint_every, config.keep_checkpoints),
        keras.callbacks.BackupAndRestore(str(state.backup_dir), save_freq="epoch",
                                         delete_checkpoint=False),
    ]


def merge_history(earlier: list[dict[str, float]], this_run: dict[str, list[float]]
                  ) -> dict[str, list[float]]:
    """Per-epoch values of the whole run: the interrupted run's epochs, then this run's."""
    return {key: [row[key] for row in earlier] + values for key, values in this_run.items()
            if all(key in row for row in earlier)}


def stage(params: dict[str, Any]) -> str:
    """Train the model named in params.yaml into models/model.keras (the `train` stage)."""
    from digitrec.config import CHECKPOINT_DIR, METRICS_DIR, MODEL_FILE, PREPARED_DIR, section
    from digitrec.datasets import get_dataset

    style = get_dataset(params.get("dataset", "mnist")).augment
    config = TrainConfig.from_params(section(params, "train"), style)
    result = train(config, PREPARED_DIR, MODEL_FILE, CHECKPOINT_DIR, METRICS_DIR / "train",
                   verbose=1 if sys.stdout.isatty() else 2)
    val_accuracy = result.history["val_accuracy"][-1]
    if not result.wrote_outputs:
        return (f"train: this worker's part is done ({config.epochs} epochs in "
                f"{result.seconds:.1f} s); the chief saved the model")
    return (f"train: {config.model} ({result.model.count_params():,} parameters), "
            f"{config.epochs} epochs in {result.seconds:.1f} s, val accuracy "
            f"{val_accuracy:.4f}; saved {MODEL_FILE}")
