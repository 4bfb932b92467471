"""Score a trained model: the numbers for `metrics/eval.json` and the files for `dvc plots`.

The test split is the headline; the val split is scored too, under `val`, so that model
selection can be done without ever looking at the test set. Only finite numbers are written,
and nothing that varies from run to run (no timings), so `dvc metrics diff` shows only real
changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from digitrec.files import atomic_write_csv, atomic_write_json
from digitrec.prepare import NUM_CLASSES, load_split

CALIBRATION_BINS = 15
PROBABILITY_FLOOR = 1e-7
EVAL_FILE = "eval.json"


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """counts[actual, predicted]."""
    flat = labels.astype(np.int64) * NUM_CLASSES + predicted
    return np.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


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
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = np.abs(np.bincount(which, weights=confidence, minlength=bins)
                 - np.bincount(which, weights=correct, minlength=bins))
    return float(gap.sum() / max(len(labels), 1))


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, loss, errors, macro-F1, per-class precision/recall/F1/support, and ECE."""
    predicted = probabilities.argmax(axis=1)
    counts = confusion_matrix(labels, predicted)
    hits = np.diag(counts)
    support = counts.sum(axis=1)
    precision = _ratio(hits, counts.sum(axis=0))
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    n = len(labels)
    picked = probabilities[np.arange(n), labels.astype(np.int64)]
    loss = float(-np.log(np.clip(picked, PROBABILITY_FLOOR, 1.0)).mean()) if n else 0.0
    errors = int(n - hits.sum())
    return {
        "accuracy": float(hits.sum() / n) if n else 0.0,
        "loss": loss,
        "error_count": errors,
        "macro_f1": float(f1.mean()),
        "ece": expected_calibration_error(probabilities, labels),
        "per_class": {
            str(digit): {
                "precision": float(precision[digit]),
                "recall": float(recall[digit]),
                "f1": float(f1[digit]),
                "support": int(support[digit]),
            }
            for digit in range(NUM_CLASSES)
        },
    }


def write_confusion_csv(path: Path, labels: np.ndarray, predicted: np.ndarray) -> None:
    """One row per example, as DVC's `confusion` templates read it."""
    atomic_write_csv(path, ["actual", "predicted"],
                     zip(labels.tolist(), predicted.tolist(), strict=True))


def write_per_class_csv(path: Path, report: dict[str, Any]) -> None:
    atomic_write_csv(path, ["digit", "accuracy"],
                     ([digit, round(figures["recall"], 6)]
                      for digit, figures in report["per_class"].items()))


def evaluate(model_path: Path, prepared_dir: Path, metrics_file: Path, plots_dir: Path
             ) -> dict[str, Any]:
    """Score test (headline) and val, and write the metrics, plot data and PNG reports."""
    from digitrec.backend import keras
    from digitrec.report import draw_confusion, draw_mistakes

    model = keras.models.load_model(model_path)
    results: dict[str, Any] = {}
    for split in ("test", "val"):
        images, labels = load_split(prepared_dir, split)
        images = np.asarray(images)
        probabilities = model.predict(images, batch_size=1000, verbose=0).astype(np.float64)
        results[split] = score(probabilities, labels)
        if split == "test":
            test_images, test_labels, test_probabilities = images, labels, probabilities
    metrics = dict(results["test"])
    metrics["val"] = {k: v for k, v in results["val"].items() if k != "per_class"}

    plots_dir.mkdir(parents=True, exist_ok=True)
    predicted = test_probabilities.argmax(axis=1)
    write_confusion_csv(plots_dir / "confusion.csv", test_labels, predicted)
    write_per_class_csv(plots_dir / "per_class.csv", results["test"])
    draw_confusion(confusion_matrix(test_labels, predicted), plots_dir / "confusion.png")
    draw_mistakes(test_images, test_labels, test_probabilities, plots_dir / "mistakes.png")
    atomic_write_json(metrics_file, metrics)
    return metrics


def stage(params: dict[str, Any]) -> str:
    """Score models/model.keras into metrics/eval.json and plots (the `evaluate` stage)."""
    from digitrec.config import METRICS_DIR, MODEL_FILE, PREPARED_DIR

    metrics = evaluate(MODEL_FILE, PREPARED_DIR, METRICS_DIR / EVAL_FILE, METRICS_DIR / "eval")
    return (f"evaluate: test accuracy {metrics['accuracy']:.4f} ({metrics['error_count']} "
            f"errors), macro-F1 {metrics['macro_f1']:.4f}, val accuracy "
            f"{metrics['val']['accuracy']:.4f}; wrote {METRICS_DIR / EVAL_FILE}")
