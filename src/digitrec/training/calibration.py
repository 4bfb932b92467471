"""Temperature scaling: one number T fit on validation digits after training, so that
softmax(logits / T) is calibrated. It is baked into the last Dense layer (kernel and bias
divided by T), so the saved model, serving and every export show calibrated probabilities
with no custom layer and the same argmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOUNDS = (0.05, 20.0)
GOLDEN_STEPS = 60  # each keeps 0.618 of the interval: 20 / 0.05 shrinks to below 1e-10
BATCH = 1000
# log(0) would be -inf: a probability float32 rounds to 0 is read as its smallest value
PROBABILITY_FLOOR = float(np.finfo(np.float32).smallest_subnormal)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    logp = _log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in BOUNDS that minimises the digits' NLL (1.0 for no rows).

    The NLL is convex in 1 / T (a log-sum-exp less a linear term), so a golden-section
    search over 1 / T finds its one minimum; in a few lines of numpy, where SciPy's
    optimiser cost the train stage 0.3 s of imports.
    """
    if not len(labels):
        return 1.0
    low, high = 1 / BOUNDS[1], 1 / BOUNDS[0]  # over the inverse temperature

    def cost(inverse: float) -> float:
        return nll(logits, labels, 1 / inverse)

    shrink = (np.sqrt(5) - 1) / 2
    left, right = high - shrink * (high - low), low + shrink * (high - low)
    left_cost, right_cost = cost(left), cost(right)
    for _ in range(GOLDEN_STEPS):
        if left_cost < right_cost:
            high, right, right_cost = right, left, left_cost
            left = high - shrink * (high - low)
            left_cost = cost(left)
        else:
            low, left, left_cost = left, right, right_cost
            right = low + shrink * (high - low)
            right_cost = cost(right)
    return float(1 / ((low + high) / 2))


def bake_temperature(model: Any, temperature: float) -> None:
    """Divide the last Dense layer's kernel and bias by `temperature`, in place; the layer
    must be the model's last (softmax) layer so logits / T is exactly what it then computes."""
    layer = model.layers[-1]
    weights = layer.get_weights()
    if type(layer).__name__ != "Dense" or not weights:
        raise ValueError(f"last layer {layer.name} is not a Dense layer to scale")
    layer.set_weights([w / temperature for w in weights])


def calibrate(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """Fit the temperature on these (validation) digits and bake it into `model`; return it.

    The logits are the log of the model's probabilities: they differ from the last layer's
    raw outputs by one constant per row, which softmax(logits / T) does not see. The model
    is called directly, batch by batch, which works in any distribution strategy's loop.
    """
    rows = [np.asarray(model(np.asarray(images[start: start + BATCH]), training=False),
                       dtype=np.float64)
            for start in range(0, len(images), BATCH)]
    probabilities = np.concatenate(rows) if rows else np.zeros((0, 1))
    logits = np.log(np.maximum(probabilities, PROBABILITY_FLOOR))
    temperature = fit_temperature(logits, labels)
    bake_temperature(model, temperature)
    return temperature
