"""Score a trained model: the headline numbers for `metrics/eval.json`, and the per-class
table, confusion data and pictures for `dvc plots`.

The test split is the headline; the val split is scored too, under `val`, so that model
selection can be done without ever looking at the test set. When the prepared data holds
test negatives (pictures with no digit), `refusal_auroc` says how well the model's top
probability tells the test digits from them (1: every digit above every negative). The
metrics file holds a handful of finite numbers that do not vary from run to run (no
timings), so `dvc metrics diff` and `dvc exp show` stay readable; the per-class figures go
to a plot file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digitrec import scoring
from digitrec.data.prepared import load_negatives, load_split
from digitrec.evaluation.figures import draw_confusion, draw_mistakes
from digitrec.files import atomic_paths, atomic_write_csv, atomic_write_json
from digitrec.modelfile import load_model
from digitrec.outputs import JSON, check_output

PREDICT_BATCH = 1000


def evaluate(model_path: Path, prepared_dir: Path, metrics_file: Path, plots_dir: Path,
             class_names: Sequence[str]) -> dict[str, Any]:
    """Score test (headline) and val; write the metrics, plot data and PNG reports, all
    put in place together once all are written (a full disk leaves the previous ones)."""
    check_output(metrics_file, JSON, forced_by="")
    model = load_model(model_path, len(class_names))
    test_images, test_labels = load_split(prepared_dir, "test")
    val_images, val_labels = load_split(prepared_dir, "val")
    test = scoring.scores(model_probabilities(model, test_images), test_labels)
    val = model_probabilities(model, val_images)
    metrics = scoring.headline(test)
    negatives = load_negatives(prepared_dir, "test")
    if len(negatives):
        metrics["refusal_auroc"] = scoring.refusal_auroc(
            test.probabilities, model_probabilities(model, negatives))
    metrics["val"] = {"accuracy": scoring.accuracy(val, val_labels)}

    names = ("confusion.csv", "per_class.csv", "confusion.png", "mistakes.png")
    with atomic_paths(*(plots_dir / name for name in names), metrics_file) as staged:
        confusion_csv, per_class_csv, confusion_png, mistakes_png, metrics_json = staged
        atomic_write_csv(confusion_csv, ["actual", "predicted"],
                         ([class_names[a], class_names[p]] for a, p in
                          zip(test.labels.tolist(), test.predicted.tolist(), strict=True)))
        atomic_write_csv(per_class_csv, ["class", "accuracy", "precision", "f1", "support"],
                         scoring.per_class_rows(test, class_names))
        draw_confusion(test.confusion, confusion_png, class_names=class_names)
        draw_mistakes(test_images, test, mistakes_png, class_names=class_names)
        atomic_write_json(metrics_json, metrics)
    return metrics


def model_probabilities(model: Any, images: np.ndarray) -> np.ndarray:
    """The model's class probabilities for prepared images, in float64 for scoring."""
    return model.predict(np.asarray(images), batch_size=PREDICT_BATCH,
                         verbose=0).astype(np.float64)
