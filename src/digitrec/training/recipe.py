"""How a model learns, said once for both loops: the loss, the metric, the learning-rate
schedule, the optimizer and the moving average of the weights (`train.ema`).

With `ema`, the optimizer keeps an exponential moving average of the weights and the saved
model holds that average (`callbacks.SwapAveragedWeights` puts it in place for validation and
checkpoints).
"""

from __future__ import annotations

from typing import Any

from digitrec.backend import keras
from digitrec.params import TrainParams

EMA_MOMENTUM = 0.99  # the average spans about the last 100 steps...
EMA_MAX_SHARE = 0.2  # ...and at most the last fifth of a run


def loss(label_smoothing: float, reduction: str | None = "sum_over_batch_size"
         ) -> keras.losses.Loss:
    """The loss every model trains with: labels are one-hot rows, outputs probabilities.
    Label smoothing spreads a share of each label over all classes, which keeps the model
    from learning to be 100% sure."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing,
                                                reduction=reduction)


def is_digit(targets: Any) -> Any:
    """1.0 for a target row that is a digit (one-hot), 0.0 for a negative's (uniform)."""
    return keras.ops.cast(keras.ops.max(targets, axis=-1) > 0.5, "float32")


class DigitAccuracy(keras.metrics.Mean):
    """The share of digits read right, as `accuracy`: a negative has no right class (its
    target is uniform, whose argmax would be 0), so it is not counted."""

    def __init__(self, name: str = "accuracy", dtype: Any = None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        ops = keras.ops
        right = ops.cast(ops.argmax(y_true, axis=-1) == ops.argmax(y_pred, axis=-1), "float32")
        weight = is_digit(y_true)
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, "float32")
        return super().update_state(right, sample_weight=weight)


def compile_model(model: keras.Model, config: TrainParams, steps_per_epoch: int) -> None:
    """Compile with the run's optimizer, loss and digit accuracy.

    A file saved from the model (the model, each checkpoint) names Keras' own `accuracy`
    instead of `DigitAccuracy`, so that it loads with Keras alone: Keras refuses a file
    whose compile settings name a class it cannot find.
    """
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=loss(config.label_smoothing), metrics=[DigitAccuracy()])
    compile_config = model.get_compile_config

    def portable_compile_config() -> dict[str, Any]:
        return {**compile_config(), "metrics": ["accuracy"]}

    model.get_compile_config = portable_compile_config


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

