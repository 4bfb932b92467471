"""Read a folder (or a list) of user pictures with a trained model.

Pictures are decoded and turned into MNIST digits in parallel, one process per core, before
TensorFlow is loaded (forking a process that runs TensorFlow's threads is unsafe), and then
predicted in batches. A picture that cannot be read gets a row with its error; the others
are still predicted.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.files import atomic_write_csv, atomic_write_json
from digitrec.images import ImageProblem, Prepared, prepare_file
from digitrec.parallel import parallel_map

LABELS_FILE = "labels.csv"
BATCH = 256
COLUMNS = ["file", "prediction", "confidence", *[f"p{d}" for d in range(10)], "error"]


@dataclass
class Reading:
    """One picture's outcome: a prediction with its probabilities, or an error."""

    name: str
    path: Path
    prepared: Prepared | None = None
    probabilities: np.ndarray | None = None
    error: str = ""

    @property
    def prediction(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())


def find_pictures(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(name to report, path) for every file under `paths`, recursively, hidden ones skipped.

    Names are relative to the folder given; a folder's own labels.csv is not a picture.
    """
    found: list[tuple[str, Path]] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append((given.name if len(paths) == 1 else str(given), given))
            continue
        if not given.is_dir():
            raise DigitrecError(f"{given}: no such file or folder")
        for root, dirs, files in os.walk(given):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(root) / name
                relative = path.relative_to(given)
                if name.startswith(".") or relative == Path(LABELS_FILE):
                    continue
                found.append((relative.as_posix(), path))
    return found


def read_one(item: tuple[str, Path]) -> Reading:
    """Prepare one picture; a picture that cannot be read becomes an error reading."""
    name, path = item
    try:
        return Reading(name, path, prepared=prepare_file(path))
    except ImageProblem as exc:
        return Reading(name, path, error=str(exc))
    except OSError as exc:
        return Reading(name, path, error=f"cannot read: {exc.strerror or exc}")


def prepare_all(pictures: Sequence[tuple[str, Path]]) -> list[Reading]:
    """Decode and normalise every picture in parallel, keeping their order."""
    return parallel_map(read_one, pictures, chunksize=8)


SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))


def shifted(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The batch of 28x28 digits moved by (dy, dx) pixels, the uncovered edge left black."""
    moved = np.roll(batch, (dy, dx), axis=(1, 2))
    if dy:
        moved[:, 0 if dy > 0 else -1] = 0
    if dx:
        moved[:, :, 0 if dx > 0 else -1] = 0
    return moved


def predict_digits(model: Any, digits: np.ndarray) -> np.ndarray:
    """Class probabilities for (N, 28, 28) digits, averaged over one-pixel shifts.

    Placing a digit by its centre of mass is exact only to half a pixel, and a user's
    picture is further from MNIST than MNIST's own test set; averaging the reading of the
    digit and its four one-pixel shifts makes the answer steadier (on the MNIST test set it
    also gains a little).
    """
    views = np.concatenate([shifted(digits, dy, dx) for dy, dx in SHIFTS])[..., None]
    probabilities = np.asarray(model.predict_on_batch(views), dtype=np.float64)
    return probabilities.reshape(len(SHIFTS), len(digits), -1).mean(axis=0)


def predict_readings(model: Any, readings: list[Reading]) -> None:
    """Fill in probabilities for every reading that has a prepared digit, in batches.

    A picture whose EXIF orientation is doubtful (`Prepared.as_stored`) is read both ways,
    and the more confident reading is kept: on the real user pictures, the upright reading
    of a digit was the more confident one against a quarter turn either way about 92% of
    the time, while following a stale tag is wrong every time.
    """
    ready = [r for r in readings if r.prepared is not None]
    for start in range(0, len(ready), BATCH):
        chunk = ready[start: start + BATCH]
        probabilities = predict_digits(model, np.stack([r.prepared.digit for r in chunk]))
        for reading, row in zip(chunk, probabilities, strict=True):
            reading.probabilities = row
    doubtful = [r for r in ready if r.prepared.as_stored is not None]
    if doubtful:
        unturned = predict_digits(model, np.stack([r.prepared.as_stored for r in doubtful]))
        for reading, row in zip(doubtful, unturned, strict=True):
            if row.max() > reading.probabilities.max():
                reading.probabilities = row


def read_labels(folder: Path) -> dict[str, int]:
    """`labels.csv` (file,label) in a folder, if there is one."""
    path = folder / LABELS_FILE
    if not path.is_file():
        return {}
    labels = {}
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            try:
                labels[row["file"]] = int(row["label"])
            except (KeyError, TypeError, ValueError):
                raise DigitrecError(
                    f"{path}:{number}: expected columns file,label with a digit label"
                ) from None
    return labels


def write_csv(path: Path, readings: list[Reading]) -> None:
    atomic_write_csv(path, COLUMNS, map(_csv_row, readings))


def _csv_row(r: Reading) -> list[Any]:
    if r.probabilities is None:
        return [r.name, "", "", *[""] * 10, r.error]
    return [r.name, r.prediction, f"{r.confidence:.4f}",
            *[f"{p:.4f}" for p in r.probabilities], ""]


def summary(readings: list[Reading], labels: dict[str, int]) -> dict[str, Any]:
    """Counts, and accuracy against labels.csv when the folder has one."""
    predicted = [r for r in readings if r.probabilities is not None]
    result: dict[str, Any] = {"images": len(readings), "predicted": len(predicted),
                              "failed": len(readings) - len(predicted)}
    labelled = [r for r in readings if r.name in labels]
    if labelled:
        correct = sum(r.prediction == labels[r.name] for r in labelled)
        result["labelled"] = len(labelled)
        result["correct"] = correct
        result["accuracy"] = correct / len(labelled)
    return result


def predict_paths(model_path: Path, paths: Sequence[str | Path]) -> list[Reading]:
    """Find, prepare and predict every picture under `paths`."""
    pictures = find_pictures(paths)
    if not model_path.is_file():
        raise DigitrecError(f"{model_path}: no model; run `dvc repro train` first")
    readings = prepare_all(pictures)
    from digitrec.backend import keras

    predict_readings(keras.models.load_model(model_path), readings)
    return readings


def require_some(readings: list[Reading], where: str) -> None:
    if not readings:
        raise DigitrecError(f"{where}: no pictures found")
    if all(r.probabilities is None for r in readings):
        raise DigitrecError(f"{where}: none of the {len(readings)} files could be read as a "
                            f"picture of a digit (see the error column)")


def stage(params: dict[str, Any]) -> str:
    """Read every picture in predict.images with models/model.keras (the `predict` stage)."""
    from digitrec.config import METRICS_DIR, MODEL_FILE, PREDICTIONS_DIR, section
    from digitrec.report import draw_contact_sheet

    folder = Path(section(params, "predict")["images"])
    labels = read_labels(folder)
    readings = predict_paths(MODEL_FILE, [folder])
    PREDICTIONS_DIR.mkdir(parents=True, exist_ok=True)
    write_csv(PREDICTIONS_DIR / "predictions.csv", readings)
    draw_contact_sheet(readings, labels, PREDICTIONS_DIR / "contact_sheet.png")
    figures = summary(readings, labels)
    atomic_write_json(METRICS_DIR / "predict.json", figures)
    require_some(readings, str(folder))
    line = (f"predict: {figures['predicted']} of {figures['images']} pictures read "
            f"({figures['failed']} failed)")
    if "accuracy" in figures:
        line += f", {figures['correct']}/{figures['labelled']} correct ({figures['accuracy']:.1%})"
    return line + f"; wrote {PREDICTIONS_DIR / 'predictions.csv'}"
