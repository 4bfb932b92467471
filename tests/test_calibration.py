"""Temperature scaling and the refusal AUROC."""

import numpy as np
import pytest

from digitrec.scoring import expected_calibration_error, refusal_auroc
from digitrec.training.calibration import bake_temperature, fit_temperature, nll


def _overconfident(n=4000, seed=0):
    """Labels drawn from softmax(z), so z is calibrated; the model reports 4 * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 10))
    z[:, 0] += 2.0
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * 4.0, labels


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_lowers_nll_and_ece():
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert t > 1.5
    assert nll(logits, labels, t) < nll(logits, labels)
    before = expected_calibration_error(_softmax(logits), labels)
    after = expected_calibration_error(_softmax(logits / t), labels)
    assert after < before / 2


def test_temperature_is_the_minimum_of_the_nll_within_the_bounds():
    logits, labels = _overconfident(n=500)
    t = fit_temperature(logits, labels)
    grid = np.geomspace(0.05, 20.0, 2001)
    best = grid[np.argmin([nll(logits, labels, g) for g in grid])]
    assert abs(np.log(t / best)) < 0.01
    assert nll(logits, labels, t) <= nll(logits, labels, best) + 1e-9
    sure = np.eye(10)[np.arange(50) % 10] * 30.0  # always right: the lowest NLL at the bound
    assert fit_temperature(sure, np.arange(50) % 10) == pytest.approx(0.05, rel=1e-6)


def test_baked_temperature_same_argmax_softer():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32) * 5
    before = model.predict(x, verbose=0)
    bake_temperature(model, 3.0)
    after = model.predict(x, verbose=0)
    assert np.array_equal(before.argmax(1), after.argmax(1))
    assert (after.max(1) <= before.max(1) + 1e-6).all() and (after.max(1) < before.max(1)).any()


def test_refusal_auroc_toy_cases():
    sure = np.eye(10)[[0, 1, 2]] * 0.9 + 0.01
    unsure = np.full((2, 10), 0.1)
    assert refusal_auroc(sure, unsure) == 1.0
    assert refusal_auroc(unsure, sure) == 0.0
    assert refusal_auroc(unsure, unsure) == 0.5
    mixed = np.array([[0.9] + [0.0] * 9, [0.3] + [0.0] * 9])
    neg = np.array([[0.5] + [0.0] * 9])
    assert refusal_auroc(mixed, neg) == 0.5


def test_refusal_auroc_is_the_share_of_pairs_with_ties_counting_half():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 5, (200, 10)) / 4  # coarse values: many ties
    negatives = rng.integers(0, 5, (70, 10)) / 4
    top_digit, top_negative = digits.max(1)[:, None], negatives.max(1)[None, :]
    pairs = (top_digit > top_negative).mean() + 0.5 * (top_digit == top_negative).mean()
    assert refusal_auroc(digits, negatives) == pytest.approx(pairs, abs=1e-12)
