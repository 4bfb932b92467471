"""How a model's answers are scored, said once: predictions, accuracy, confusion, calibration.

Plain NumPy on class probabilities (N, classes) and integer labels (N,), so the evaluate
stage, the reports, predict, the multi-worker loop and the benchmarks all count the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CALIBRATION_BINS = 15
PROBABILITY_FLOOR = 1e-7


def predictions(probabilities: np.ndarray) -> np.ndarray:
    """The class each row of probabilities picks."""
    return np.asarray(probabilities).argmax(axis=-1)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose most probable class is the label (0 for no rows)."""
    labels = np.asarray(labels)
    return float(np.mean(predictions(probabilities) == labels)) if len(labels) else 0.0


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[actual, predicted]."""
    flat = np.asarray(labels, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(flat, minlength=classes**2).reshape(classes, classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (no NaN reaches the JSON)."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins,
    weighted by how many predictions fall in each bin."""
    confidence = probabilities.max(axis=1)
    correct = predictions(probabilities) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = np.abs(np.bincount(which, weights=confidence, minlength=bins)
                 - np.bincount(which, weights=correct, minlength=bins))
    return float(gap.sum() / max(len(labels), 1))


@dataclass(frozen=True)
class Scores:
    """A model's answers on one split, and what everything else is counted from, computed
    once: the class each row picks and the confusion matrix (counts[actual, predicted])."""

    probabilities: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    confusion: np.ndarray

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> Scores:
    """Score class probabilities (N, classes) against integer labels (N,)."""
    predicted = predictions(probabilities)
    labels = np.asarray(labels)
    return Scores(probabilities, labels, predicted,
                  confusion_matrix(labels, predicted, probabilities.shape[1]))


def headline(scored: Scores) -> dict[str, Any]:
    """The headline numbers: accuracy, loss, errors, macro-F1 and calibration error."""
    figures = per_class(scored)
    n = len(scored.labels)
    picked = scored.probabilities[np.arange(n), scored.labels.astype(np.int64)]
    loss = float(-np.log(np.clip(picked, PROBABILITY_FLOOR, 1.0)).mean()) if n else 0.0
    errors = int(n - figures["hits"].sum())
    return {
        "accuracy": float(figures["hits"].sum() / n) if n else 0.0,
        "loss": loss,
        "error_count": errors,
        "macro_f1": float(figures["f1"].mean()),
        "ece": expected_calibration_error(scored.probabilities, scored.labels),
    }


def per_class(scored: Scores) -> dict[str, np.ndarray]:
    """Per class: hits, support, precision, recall (the class's accuracy) and F1."""
    counts = scored.confusion
    hits = np.diag(counts)
    support = counts.sum(axis=1)
    precision = _ratio(hits, counts.sum(axis=0))
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"hits": hits, "support": support, "precision": precision, "recall": recall,
            "f1": f1}


def per_class_rows(scored: Scores, class_names: Sequence[str]) -> list[list[Any]]:
    """One row per class for a table: name, accuracy (recall), precision, F1, support."""
    figures = per_class(scored)
    return [[name, round(float(figures["recall"][i]), 6), round(float(figures["precision"][i]), 6),
             round(float(figures["f1"][i]), 6), int(figures["support"][i])]
            for i, name in enumerate(class_names)]


def refusal_auroc(digit_probabilities: np.ndarray, negative_probabilities: np.ndarray) -> float:
    """How well the most probable class's probability tells digits (positives) from
    negatives: the chance a random digit scores above a random negative, ties counting
    half, counted for each digit by binary search in the sorted negatives (the definition
    itself, in O(n log n); no statistics library to import at every evaluate). 0.5 when
    either side is empty."""
    positives = np.asarray(digit_probabilities).max(axis=1)
    negatives = np.sort(np.asarray(negative_probabilities).max(axis=1))
    if not len(positives) or not len(negatives):
        return 0.5
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below.sum() + tied.sum() / 2) / (len(positives) * len(negatives)))
