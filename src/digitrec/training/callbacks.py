"""What runs after every epoch of a training run, whichever loop drives it: stop on a
diverged loss, log to DVCLive, checkpoint every N-th epoch, and (with `ema`) swap the
averaged weights in for validation and checkpoints. Keras' own `BackupAndRestore` and
`CSVLogger` join them in `run.py`."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from digitrec.backend import keras
from digitrec.errors import DigitrecError
from digitrec.modelfile import save_model


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
    `train/loss`, `train/accuracy`, `val/loss` and `val/accuracy`. The run ends the log
    once it has added what comes after training (the temperature)."""

    def __init__(self, live: Any):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        log_epoch(self.live, epoch + 1, logs or {})


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

