"""Data-parallel training across processes or machines (`train.strategy: multi_worker`).

TensorFlow's `MultiWorkerMirroredStrategy` keeps a copy of the model in every worker and
sums the gradients of each step over all of them, so N workers train one model on N times
the data per step. Keras 3's `Model.fit` does not run under this strategy
(keras-team/keras#20585), so this module trains with a short custom loop instead, driving
the same Keras callbacks as single-machine training: the progress bar, the CSV history,
DVCLive, periodic checkpoints and `BackupAndRestore`.

Only the chief (task `chief`, or worker 0 when there is none) writes into the project; every
other worker runs the same code against a temporary folder it removes at the end. After an
interruption the chief's backup is broadcast to all workers, so the other machines need no
shared disk to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitrec import scoring
from digitrec.backend import keras, tf
from digitrec.errors import DigitrecError
from digitrec.paths import TrainOutputs
from digitrec.training.input import TrainingInput
from digitrec.training.recipe import is_digit, loss


@dataclass(frozen=True)
class Task:
    """This process's place in the cluster that `TF_CONFIG` describes."""

    kind: str        # chief or worker
    index: int
    workers: int     # processes that train, the chief included
    has_chief: bool  # a task of type chief exists; otherwise worker 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.kind == "chief" or (self.kind == "worker" and self.index == 0
                                        and not self.has_chief)


def task_from_env() -> Task:
    """Read `TF_CONFIG`, with an error that says what is missing rather than a hang."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DigitrecError(
            "train.strategy multi_worker needs the TF_CONFIG environment variable on every "
            "machine (see README, 'Training across machines')"
        )
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        kind, index = task["type"], int(task["index"])
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError) as exc:
        raise DigitrecError(f"TF_CONFIG is not valid: {exc!r}: {raw}") from None
    if kind not in ("chief", "worker") or index >= len(cluster.get(kind, [])):
        raise DigitrecError(f"TF_CONFIG: task {kind} {index} is not in the cluster: {raw}")
    return Task(kind, index, workers, has_chief=bool(cluster.get("chief")))


def broadcast_from_chief(strategy: tf.distribute.Strategy, variables: list[tf.Variable],
                         task: Task, completed_epochs: int) -> int:
    """Give every worker the chief's variables and epoch count; return the epoch count.

    A sum over all workers in which only the chief contributes: one collective, and the
    other machines need no copy of the chief's backup files.
    """
    values = [tf.convert_to_tensor(v) for v in variables]
    values.append(tf.constant(float(completed_epochs)))
    chief = tf.constant(task.is_chief)

    @tf.function
    def exchange(local: list[tf.Tensor]) -> list[tf.Tensor]:
        def on_replica() -> list[tf.Tensor]:
            context = tf.distribute.get_replica_context()
            return [context.all_reduce("SUM", tf.where(chief, v, tf.zeros_like(v)))
                    for v in local]
        return strategy.run(on_replica)

    received = [strategy.experimental_local_results(v)[0] for v in exchange(values)]
    for variable, value in zip(variables, received[:-1], strict=True):
        variable.assign(value)
    return int(received[-1].numpy())


def make_train_step(strategy: tf.distribute.Strategy, model: keras.Model, global_batch: int,
                    label_smoothing: float):
    """One synchronous step on every worker; returns the summed (loss, examples, digits
    read right, digits): accuracy counts digits only, as `recipe.DigitAccuracy` does."""
    loss_fn = loss(label_smoothing, reduction=None)

    def on_replica(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = loss_fn(labels, probabilities)
            step_loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        gradients = tape.gradient(step_loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        right = tf.cast(tf.equal(tf.argmax(probabilities, axis=1), tf.argmax(labels, axis=1)),
                        tf.float32)
        digits = is_digit(labels)
        return (tf.reduce_sum(per_example), tf.cast(tf.shape(labels)[0], tf.float32),
                tf.reduce_sum(right * digits), tf.reduce_sum(digits))

    @tf.function
    def train_step(iterator: Any) -> tuple[tf.Tensor, ...]:
        results = strategy.run(on_replica, args=next(iterator))
        return tuple(strategy.reduce("SUM", r, axis=None) for r in results)

    return train_step


def evaluate_locally(model: keras.Model, data: tf.data.Dataset, label_smoothing: float
                     ) -> dict[str, float]:
    """Validation loss and accuracy, each worker on the whole (small) validation split.

    Every worker holds the same weights, so they all get the same numbers, with no
    communication.
    """
    loss_fn = loss(label_smoothing, reduction="sum")
    total_loss = correct = seen = 0.0
    for images, labels in data:
        probabilities = model(images, training=False)
        total_loss += float(loss_fn(labels, probabilities))
        classes = scoring.predictions(labels.numpy())
        correct += scoring.accuracy(probabilities.numpy(), classes) * len(classes)
        seen += len(classes)
    return {"val_accuracy": correct / seen, "val_loss": total_loss / seen}


class MultiWorker:
    """The loop across the workers that `TF_CONFIG` describes; the chief writes the outputs.

    `train.batch_size` is the global batch: each worker takes its share of it.
    """

    def __init__(self, batch_size: int):
        self.task = task_from_env()
        self.workers, self.is_chief = self.task.workers, self.task.is_chief
        if batch_size % self.workers:
            raise DigitrecError(f"train.batch_size {batch_size} must be a "
                                f"multiple of the {self.workers} workers")
        # The strategy must exist before TensorFlow runs anything else in this process.
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()

    @contextmanager
    def outputs_for(self, outputs: TrainOutputs) -> Iterator[TrainOutputs]:
        """The chief's outputs are the project's; another worker runs the same code against
        a temporary folder it removes at the end. A worker lost mid-run is one error."""
        scratch = None if self.is_chief else scratch_dir(self.task, outputs.model)
        try:
            if scratch is not None:  # the same code, writing where nobody looks
                outputs = TrainOutputs(scratch / "model.keras", scratch / "checkpoints",
                                       scratch / "metrics")
            yield outputs
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError) as exc:
            reason = str(exc).strip().splitlines()[0][:300]
            raise DigitrecError(
                f"the training cluster lost a worker ({reason}); start the job again on "
                "every machine: it resumes from the last completed epoch") from None
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def scope(self) -> Any:
        return self.strategy.scope()

    def run_epochs(self, model: keras.Model, data: TrainingInput,
                   callbacks: list[keras.callbacks.Callback], epochs: int,
                   completed_epochs: int, verbose: int | str) -> dict[str, list[float]]:
        """The epochs with `strategy.run`, driving the callbacks as `fit` does."""
        strategy, config = self.strategy, data.config
        verbose = 0 if not self.is_chief else 1 if verbose == "auto" else verbose
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=epochs,
            steps=data.steps_per_epoch)
        callback_list.on_train_begin()  # BackupAndRestore loads the chief's backup, if any
        completed_epochs = broadcast_from_chief(
            strategy, model.variables + model.optimizer.variables, self.task, completed_epochs)

        def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return data.training(skip_epochs=completed_epochs,
                                 shard=(context.num_input_pipelines, context.input_pipeline_id))

        batches = iter(strategy.distribute_datasets_from_function(worker_dataset))
        val_data = data.validation()
        train_step = make_train_step(strategy, model, config.batch_size, config.label_smoothing)
        history: dict[str, list[float]] = {}
        for epoch in range(completed_epochs, epochs):
            callback_list.on_epoch_begin(epoch)
            loss_sum = seen = correct = digits = 0.0
            for step in range(data.steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                sums = (float(t) for t in train_step(batches))
                loss_sum, seen, correct, digits = (
                    total + value for total, value in zip((loss_sum, seen, correct, digits),
                                                          sums, strict=True))
                callback_list.on_train_batch_end(step, {"loss": loss_sum / seen,
                                                        "accuracy": correct / max(digits, 1)})
            callback_list.on_test_begin()  # the averaged weights in place, as fit's has
            logs = {"accuracy": correct / max(digits, 1), "loss": loss_sum / seen,
                    **evaluate_locally(model, val_data, config.label_smoothing)}
            callback_list.on_test_end()
            callback_list.on_epoch_end(epoch, logs)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
        model.optimizer.finalize_variable_values(model.trainable_variables)
        callback_list.on_train_end()
        return history


def scratch_dir(task: Task, model_path: Path) -> Path:
    """An empty temporary folder for a non-chief worker's outputs. Its name is fixed per
    project and task, so a run killed before it could clean up is cleaned up by the next."""
    project = hashlib.sha256(str(model_path.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"digitrec-worker-{task.index}-{project}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
