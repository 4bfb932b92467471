import json
import math

import numpy as np
import pytest
from helpers import synthetic_dataset_arrays, write_raw
from PIL import Image

from digitrec import scoring
from digitrec.backend import keras
from digitrec.data import splits as prepare
from digitrec.evaluation import evaluate


def random_probabilities(n, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 10)) * 1.5
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def assert_finite_numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            assert_finite_numbers(item)
    else:
        assert isinstance(value, (int, float)) and math.isfinite(value)


def test_score_is_consistent():
    labels = np.arange(500) % 10
    probabilities = random_probabilities(500)
    report = scoring.headline(scoring.scores(probabilities, labels))
    assert_finite_numbers(report)
    predicted = probabilities.argmax(axis=1)
    assert report["error_count"] == int((predicted != labels).sum())
    assert report["accuracy"] == pytest.approx(1 - report["error_count"] / 500)
    rows = scoring.per_class_rows(scoring.scores(probabilities, labels),
                                  [str(d) for d in range(10)])
    assert sum(row[4] for row in rows) == 500
    assert report["macro_f1"] == pytest.approx(np.mean([row[3] for row in rows]), abs=1e-5)
    expected_loss = -np.mean(np.log(probabilities[np.arange(500), labels]))
    assert report["loss"] == pytest.approx(expected_loss)
    assert report["ece"] == pytest.approx(
        scoring.expected_calibration_error(probabilities, labels))
    assert 0 < report["ece"] < 1  # random logits: neither calibrated nor all wrong


def test_perfect_and_absent_classes_stay_finite():
    labels = np.array([1, 1, 2, 2])
    probabilities = np.eye(10)[labels]  # certain and right; most digits never appear
    report = scoring.headline(scoring.scores(probabilities, labels))
    assert_finite_numbers(report)
    assert report["accuracy"] == 1.0 and report["error_count"] == 0
    assert report["ece"] == pytest.approx(0.0)
    rows = scoring.per_class_rows(scoring.scores(probabilities, labels),
                                  [str(d) for d in range(10)])
    assert rows[5] == ["5", 0.0, 0.0, 0.0, 0]
    assert report["loss"] == pytest.approx(0.0, abs=1e-6)


def test_calibration_error_of_an_overconfident_model():
    labels = np.zeros(100, dtype=int)
    probabilities = np.full((100, 10), 0.0)
    probabilities[:, 0] = 0.95
    probabilities[:, 1] = 0.05
    probabilities[50:, [0, 1]] = [0.05, 0.95]  # half wrong at 95% confidence
    assert scoring.expected_calibration_error(probabilities, labels) == pytest.approx(0.45)


def test_evaluate_writes_metrics_plots_and_pngs(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw, synthetic_dataset_arrays(n_train=300, n_test=120))
    prepared = tmp_path / "prepared"
    prepare.prepare(raw, prepared, val_size=0.2, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "model.keras")

    names = [f"class {d}" for d in range(10)]
    metrics = evaluate.evaluate(tmp_path / "model.keras", prepared, tmp_path / "eval.json",
                                tmp_path / "plots", names)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk == metrics
    assert_finite_numbers(on_disk)
    # A handful of headline numbers, so `dvc metrics diff` and `dvc exp show` stay readable.
    assert set(on_disk) == {"accuracy", "loss", "error_count", "macro_f1", "ece", "val"}
    assert set(on_disk["val"]) == {"accuracy"}
    assert on_disk["accuracy"] == pytest.approx(1 - on_disk["error_count"] / 120)

    # With test negatives: how well the top probability tells digits from them.
    negatives = np.random.default_rng(0).random((30, 28, 28, 1)).astype(np.float32)
    from digitrec.data.prepared import load_split, write_negatives

    write_negatives(prepared, "test", negatives)
    metrics = evaluate.evaluate(tmp_path / "model.keras", prepared, tmp_path / "eval.json",
                                tmp_path / "plots", names)
    assert set(metrics) - set(on_disk) == {"refusal_auroc"}
    test_images, _ = load_split(prepared, "test")
    expected = scoring.refusal_auroc(model.predict(np.asarray(test_images), verbose=0),
                                     model.predict(negatives, verbose=0))
    assert metrics["refusal_auroc"] == pytest.approx(expected, abs=1e-6)
    # By its definition: the chance a digit's top probability is above a negative's (ties
    # count half), over every pair.
    digit_top = model.predict(np.asarray(test_images), verbose=0).max(1)[:, None]
    negative_top = model.predict(negatives, verbose=0).max(1)[None, :]
    pairs = (digit_top > negative_top).mean() + 0.5 * (digit_top == negative_top).mean()
    assert metrics["refusal_auroc"] == pytest.approx(pairs, abs=1e-6)

    rows = (tmp_path / "plots/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 121
    assert all(row.startswith("class ") for row in rows[1:])
    per_class = (tmp_path / "plots/per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,accuracy,precision,f1,support"
    assert [row.split(",")[0] for row in per_class[1:]] == names
    assert sum(int(row.split(",")[4]) for row in per_class[1:]) == 120
    for name in ("confusion.png", "mistakes.png"):
        with Image.open(tmp_path / "plots" / name) as image:
            assert image.format == "PNG" and image.width > 100


# `dvc metrics diff` and `dvc plots diff` between two real runs of the pipeline: in
# test_team.py (test_experiments_walkthrough_does_what_its_comments_say_and_diffs_need_no_pull),
# which shares the session's pipeline run and an experiment's second run.
