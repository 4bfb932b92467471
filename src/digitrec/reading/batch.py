"""Read a folder (or a list) of user pictures with a trained model.

Everything here comes from outside: the model file, the pictures, their names and the
labels file. The model is checked before any picture is decoded; a picture that cannot be
read gets a row with its error and the others are still predicted; a bad labels.csv is
refused with its line named. Pictures are read in chunks (decoded in parallel, then
predicted), and only a name, probabilities and error are kept per picture, so memory does
not grow with the folder's size beyond that. Outputs (CSV, contact sheet, metrics) are
written only after the batch succeeded, each atomically, so a failing run leaves the
previous ones alone.
"""


from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.files import atomic_paths, atomic_write_csv, atomic_write_json
from digitrec.outputs import JSON, PNG, check_output, csv_kind
from digitrec.parallel import worker_pool
from digitrec.params import PredictParams
from digitrec.reading.classify import read_numbers, read_whole
from digitrec.reading.decode import BlankPicture, ImageProblem
from digitrec.reading.images import Cleaned, clean_file
from digitrec.reading.labels import (
    DIGITS,
    LABELS_FILE,
    answers,
    folder_labels,
    is_digits,
    unmatched_warnings,
)
from digitrec.reading.names import readable
from digitrec.reading.number import Read

UNSURE_BELOW = PredictParams().unsure_below  # readings less confident are marked unsure
CHUNK = 256                 # pictures decoded and predicted at a time
SHEET_LIMIT = 200           # pictures drawn on the contact sheet; the CSV has them all
PROGRESS_FROM = 2 * CHUNK   # a progress bar (on a terminal) for folders at least this big
LEGACY_COLUMNS = ("file", "prediction")  # predictions.csv before numbers were read
HEADLINE = ("images", "failed", "unsure", "not_digits", "accuracy", "digit_accuracy")
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder that could not be listed"}


@dataclass
class Reading:
    """One picture's outcome: what it says (`read`: the number, or not a digit), or an error.

    `name` is `readable`'s: printable UTF-8 and one file's alone; `cleaned` (the thumbnail
    and the 28x28 digit) is kept only for the pictures the contact sheet shows.
    """

    name: str
    path: Path
    cleaned: Cleaned | None = None
    read: Read | None = None
    error: str = ""

    @property
    def status(self) -> str:
        return "failed" if self.read is None else self.read.status

    @property
    def text(self) -> str:
        return "" if self.read is None else self.read.text

    @property
    def unsure(self) -> bool:
        return self.status == "unsure"

    @property
    def confidence(self) -> float | None:
        return None if self.read is None else self.read.confidence

    @property
    def probabilities(self) -> np.ndarray | None:
        """The class probabilities when the picture holds one digit (and nothing else)."""
        if self.read is None or self.status == "not_digits" or len(self.read.characters) != 1:
            return None
        return self.read.characters[0].probabilities

    @property
    def prediction(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())


@dataclass
class BatchOutputs:
    """Where to write; None skips that output. `force` replaces an existing file that is
    not an earlier output of the same kind (never a device, a link or an input)."""

    csv: Path | None = None
    contact_sheet: Path | None = None
    metrics: Path | None = None
    readings: Path | None = None     # JSON: every character found, with its box
    force: bool = False
    forced_by: str = "--force"  # how the user forces it, in the message ("": cannot)

    def paths(self) -> list[Path]:
        return [Path(p) for p in (self.csv, self.contact_sheet, self.metrics, self.readings)
                if p is not None]

    def check(self, inputs: Sequence[Path], class_names: Sequence[str]) -> None:
        """Refuse, before any work, an output that would destroy what is there
        (`outputs.check_output`); `inputs` are the model, labels files and pictures."""
        for path, kind in ((self.csv, csv_kind(columns(class_names), LEGACY_COLUMNS)),
                           (self.contact_sheet, PNG), (self.metrics, JSON),
                           (self.readings, JSON)):
            if path is not None:
                check_output(path, kind, inputs=inputs, force=self.force,
                             forced_by=self.forced_by)


@dataclass
class BatchReport:
    """The outcome of a whole run, for the CLI and the stage to report."""

    readings: list[Reading]
    labels: dict[str, str]      # name -> the text the picture holds ("" for no digit)
    figures: dict[str, Any]
    warnings: list[str]
    class_names: Sequence[str]

    def misread(self) -> list[Reading]:
        """Labelled pictures read wrong or not at all."""
        return [r for r in self.readings
                if r.name in self.labels and not answers(r, self.labels[r.name])]


def _report_name(given: Path, relative: str | None, several: bool) -> str:
    """Names are relative to the folder given; with several paths, they start with it."""
    if relative is None:
        return readable(given if several else given.name)
    return readable(Path(given, relative).as_posix() if several else relative)


def find_pictures(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(name to report, path) for every file under `paths`, recursively, hidden ones skipped.

    A folder's own labels.csv is not a picture. A path given directly that is not a folder
    (a FIFO, a link loop, a broken link) is listed and gets its error row when read; only a
    path that does not exist at all stops the run, as a typo should.
    """
    found: list[tuple[str, Path]] = []
    several = len(paths) > 1
    for given in map(Path, paths):
        if not os.path.lexists(given):
            raise DigitrecError(f"{readable(given)}: no such file or folder")
        if not given.is_dir():
            found.append((_report_name(given, None, several), given))
            continue
        unlisted: list[OSError] = []
        for root, dirs, files in os.walk(given, onerror=unlisted.append):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                relative = (Path(root) / name).relative_to(given)
                if name.startswith(".") or relative == Path(LABELS_FILE):
                    continue
                found.append((_report_name(given, relative.as_posix(), several),
                              Path(root) / name))
        for problem in unlisted:
            path = Path(problem.filename)
            if path != given:
                relative = path.relative_to(given).as_posix()
                found.append((_report_name(given, relative, several), path))
            else:
                raise DigitrecError(f"{readable(given)}: cannot list the folder: "
                                    f"{problem.strerror or problem}")
    return found


def read_one(item: tuple[str, Path]) -> Reading:
    """Prepare one picture; anything that cannot be read becomes an error reading.

    Only regular files are opened: opening a FIFO would wait for a writer forever.
    """
    name, path = item
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Reading(name, path, error="cannot read: broken symbolic link")
    except OSError as exc:
        return Reading(name, path, error=f"cannot read: {exc.strerror or exc}")
    if not stat.S_ISREG(mode):
        kind = KINDS.get(stat.S_IFMT(mode), "not a picture file")
        return Reading(name, path, error=f"not a regular file ({kind})")
    return read_source(name, path, path)


def read_source(name: str, path: Path, source: Path | BinaryIO) -> Reading:
    """Clean one picture (a path, or an upload in memory); a blank one holds no digit, and
    any other problem with the file becomes the reading's error."""
    try:
        return Reading(name, path, cleaned=clean_file(source))
    except BlankPicture:
        return Reading(name, path, read=Read("not_digits"))
    except ImageProblem as exc:
        return Reading(name, path, error=str(exc))
    except OSError as exc:
        return Reading(name, path, error=f"cannot read: {exc.strerror or exc}")


def predict_readings(model: Any, readings: list[Reading], threshold: float = UNSURE_BELOW,
                     class_names: Sequence[str] = DIGITS) -> None:
    """Fill in what each picture says, for every reading that has a cleaned picture."""
    ready = [r for r in readings if r.cleaned is not None]
    if not ready:
        return
    cleaned = [r.cleaned for r in ready]
    if is_digits(class_names):
        reads = read_numbers(model, cleaned, threshold)
    else:
        reads = read_whole(model, cleaned, threshold, class_names)
    for reading, read in zip(ready, reads, strict=True):
        reading.read = read


def predict_pictures(model_path: Path, pictures: Sequence[tuple[str, Path]], *,
                     class_names: Sequence[str] = DIGITS, threshold: float = UNSURE_BELOW,
                     keep_cleaned: int = SHEET_LIMIT, progress: bool = False
                     ) -> list[Reading]:
    """Check the model, then decode and predict the pictures a chunk at a time.

    Only the first `keep_cleaned` readings keep their thumbnail and 28x28 digit (for the
    contact sheet); the rest keep name, probabilities and error, so memory stays flat.
    """
    from tqdm import tqdm

    from digitrec.modelfile import load_model

    readings: list[Reading] = []
    with worker_pool(len(pictures)) as pool:
        model = load_model(model_path, len(class_names))
        hidden = None if progress and len(pictures) >= PROGRESS_FROM else True  # None: on a tty
        with tqdm(total=len(pictures), unit="picture", disable=hidden, file=sys.stderr) as bar:
            for start in range(0, len(pictures), CHUNK):
                chunk = list(pool.map(read_one, pictures[start:start + CHUNK], chunksize=8))
                predict_readings(model, chunk, threshold, class_names)
                for reading in chunk:
                    if len(readings) >= keep_cleaned:
                        reading.cleaned = None
                    readings.append(reading)
                bar.update(len(chunk))
    return readings


def predict_paths(model_path: Path, paths: Sequence[str | Path],
                  threshold: float = UNSURE_BELOW) -> list[Reading]:
    """Find, prepare and predict every picture under `paths` (nothing written)."""
    return predict_pictures(Path(model_path), find_pictures(paths), threshold=threshold)


class NothingReadable(DigitrecError):
    """Not one picture could be read; `readings` says why for each, for the CLI to show."""

    def __init__(self, message: str, readings: list[Reading]):
        super().__init__(message)
        self.readings = readings


def require_some(readings: list[Reading], where: str) -> None:
    """Refuse a batch in which not one picture could be read, saying why for each."""
    if all(r.read is None for r in readings):
        raise NothingReadable(f"{where}: none of the {len(readings)} files could be read as "
                              f"a picture of a digit", readings)


def columns(class_names: Sequence[str] = DIGITS) -> list[str]:
    return ["file", "text", "status", "prediction", "class", "confidence", "unsure",
            *[f"p{i}" for i in range(len(class_names))], "error"]


def write_csv(path: Path, readings: list[Reading], class_names: Sequence[str] = DIGITS
              ) -> None:
    """One row per picture. `text` is what it says (the digits, "" when none) and `status`
    ok, unsure, not_digits or failed; `prediction` (the class index), `class` and p0.. are
    filled when the picture holds one character, as a lone digit."""
    atomic_write_csv(path, columns(class_names), (_csv_row(r, class_names) for r in readings))


def _csv_row(r: Reading, class_names: Sequence[str]) -> list[Any]:
    confidence = "" if r.confidence is None else f"{r.confidence:.4f}"
    flag = "" if r.read is None else ("true" if r.status == "unsure" else "false")
    if r.probabilities is None:
        return [r.name, r.text, r.status, "", "", confidence, flag, *[""] * len(class_names),
                r.error]
    return [r.name, r.text, r.status, r.prediction, class_names[r.prediction], confidence,
            flag, *[f"{p:.4f}" for p in r.probabilities], ""]


def reading_record(r: Reading, class_names: Sequence[str] = DIGITS) -> dict[str, Any]:
    """A picture's reading for programs: text, status, confidence and each character found
    (its box in the picture's pixels, left, top, right, bottom; its digit, confidence and
    probabilities; whether it looks like a digit at all)."""
    record: dict[str, Any] = {"file": r.name, "text": r.text, "status": r.status,
                              "confidence": r.confidence, "characters": [], "error": r.error}
    for character in [] if r.read is None else r.read.characters:
        record["characters"].append({
            "box": list(character.box), "digit_like": character.digit_like,
            "class": class_names[character.digit], "digit": character.digit,
            "confidence": round(character.confidence, 6),
            "probabilities": [round(float(p), 6) for p in character.probabilities]})
    return record


def summary(readings: list[Reading], labels: dict[str, str]) -> dict[str, Any]:
    """Counts, and accuracy against labels.csv when the folder has one: `accuracy` is of
    whole readings (a number read exactly, a no-digit picture refused), `digit_accuracy` of
    the digits of numbers (1 - edit distance / length)."""
    predicted = [r for r in readings if r.read is not None]
    result: dict[str, Any] = {"images": len(readings), "predicted": len(predicted),
                              "failed": len(readings) - len(predicted),
                              "unsure": sum(r.unsure for r in predicted),
                              "not_digits": sum(r.status == "not_digits" for r in predicted)}
    labelled = [r for r in readings if r.name in labels]
    if labelled:
        correct = sum(answers(r, labels[r.name]) for r in labelled)
        result["labelled"] = len(labelled)
        result["correct"] = correct
        result["accuracy"] = correct / len(labelled)
        numbers = [r for r in labelled if len(labels[r.name]) > 1]
        if numbers:
            written = sum(len(labels[r.name]) for r in numbers)
            wrong = sum(min(len(labels[r.name]), edit_distance(r.text, labels[r.name]))
                        for r in numbers)
            result["digit_accuracy"] = 1 - wrong / written
    return result


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: digits missed, added or misread between two readings."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def predict_batch(model_path: str | os.PathLike, paths: Sequence[str | Path],
                  outputs: BatchOutputs | None = None, *, class_names: Sequence[str] = DIGITS,
                  threshold: float = UNSURE_BELOW, progress: bool = False) -> BatchReport:
    """Read every picture under `paths` with the model and write the outputs asked for.

    Checked before any work: the labels files, the output places (never an input), that
    there are pictures;
    then the model, before any picture is decoded. Nothing is written unless at least one
    picture was read, so a failing run leaves earlier outputs as they were.
    """
    outputs = outputs or BatchOutputs()
    if not 0 <= threshold <= 1:
        raise DigitrecError(f"unsure threshold {threshold} is not between 0 and 1")
    where = ", ".join(readable(p) for p in paths)
    labels = folder_labels(paths, class_names)
    pictures = find_pictures(paths)
    outputs.check([Path(model_path), *(Path(p) / LABELS_FILE for p in paths),
                   *(path for _, path in pictures)], class_names)
    if not pictures:
        raise DigitrecError(f"{where}: no pictures found")
    readings = predict_pictures(Path(model_path), pictures, class_names=class_names,
                                threshold=threshold, progress=progress)
    require_some(readings, where)
    figures = summary(readings, labels.values)
    warnings = labels.warnings + unmatched_warnings(labels, (r.name for r in readings))
    batch = BatchReport(readings, labels.values, figures, warnings, class_names)
    write_outputs(batch, outputs)
    return batch


def write_outputs(batch: BatchReport, outputs: BatchOutputs) -> None:
    """CSV, readings, contact sheet and metrics JSON: all written first, then put in place
    together (`files.atomic_paths`), so a failure (a full disk) leaves every earlier one."""
    targets = {name: Path(path) for name, path in (
        ("csv", outputs.csv), ("readings", outputs.readings),
        ("sheet", outputs.contact_sheet), ("metrics", outputs.metrics)) if path is not None}
    with atomic_paths(*targets.values()) as paths:
        staged = dict(zip(targets, paths, strict=True))
        if "csv" in staged:
            write_csv(staged["csv"], batch.readings, batch.class_names)
        if "readings" in staged:
            atomic_write_json(staged["readings"], {"pictures": [
                reading_record(r, batch.class_names) for r in batch.readings]})
        if "sheet" in staged:
            from digitrec.reading.sheet import draw_contact_sheet

            draw_contact_sheet(batch.readings, batch.labels, staged["sheet"],
                               limit=SHEET_LIMIT)
        if "metrics" in staged:
            atomic_write_json(staged["metrics"], {key: value for key, value in
                                                  batch.figures.items() if key in HEADLINE})


def summary_line(batch: BatchReport) -> str:
    figures = batch.figures
    line = (f"{figures['predicted']} of {figures['images']} pictures read "
            f"({figures['failed']} failed, {figures['unsure']} unsure, "
            f"{figures['not_digits']} with no digit)")
    if "accuracy" in figures:
        line += f", {figures['correct']}/{figures['labelled']} correct ({figures['accuracy']:.1%})"
    if "digit_accuracy" in figures:
        line += f", digits of numbers {figures['digit_accuracy']:.1%}"
    return line

