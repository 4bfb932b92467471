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

import csv
import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.datasets import MNIST
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write_csv, atomic_write_json
from digitrec.images import ImageProblem, Prepared, prepare_file
from digitrec.parallel import worker_pool
from digitrec.params import PredictParams

LABELS_FILE = "labels.csv"
DIGITS = MNIST.class_names
UNSURE_BELOW = PredictParams().unsure_below  # readings less confident are marked unsure
CHUNK = 256                 # pictures decoded and predicted at a time
SHEET_LIMIT = 200           # pictures drawn on the contact sheet; the CSV has them all
PROGRESS_FROM = 2 * CHUNK   # a progress bar (on a terminal) for folders at least this big
MAX_LABELS_BYTES = 16 << 20
HEADLINE = ("images", "failed", "unsure", "accuracy")  # predict.json; read = images - failed
SHOWN_NAMES = 5             # names listed in a warning before "and N more"
BACKSLASH_RULE = r"a backslash in a name is written \\, as predictions.csv shows it"


@dataclass
class Reading:
    """One picture's outcome: a prediction with its probabilities, or an error.

    `name` is `readable`'s: printable UTF-8 and one file's alone; `prepared` (the thumbnail
    and the 28x28 digit) is kept only for the pictures the contact sheet shows.
    """

    name: str
    path: Path
    prepared: Prepared | None = None
    probabilities: np.ndarray | None = None
    error: str = ""
    unsure: bool = False

    @property
    def prediction(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())


@dataclass
class Labels:
    """Known classes by picture name (from labels.csv files), and what was odd about them."""

    values: dict[str, int] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)   # name -> labels.csv it came from
    warnings: list[str] = field(default_factory=list)


@dataclass
class Outputs:
    """Where to write; None skips that output."""

    csv: Path | None = None
    contact_sheet: Path | None = None
    metrics: Path | None = None

    def paths(self) -> list[Path]:
        return [Path(p) for p in (self.csv, self.contact_sheet, self.metrics) if p is not None]


@dataclass
class Batch:
    """The outcome of a whole run, for the CLI and the stage to report."""

    readings: list[Reading]
    labels: dict[str, int]
    figures: dict[str, Any]
    warnings: list[str]
    class_names: Sequence[str]

    def misread(self) -> list[Reading]:
        """Labelled pictures read wrong or not at all."""
        return [r for r in self.readings
                if r.name in self.labels and r.prediction != self.labels[r.name]]


# --- names -------------------------------------------------------------------------------

def readable(name: str | bytes | os.PathLike) -> str:
    r"""A file name as printable UTF-8 that no other name shows as, so CSV, terminal and
    picture can show it and a row or a label means one file.

    A byte that is not UTF-8 (Linux allows any) becomes `\xe9`; an unprintable character
    `\n`, `\x1b` or, past U+007F, `\u00a0` (as `\xa0` it would read as a byte); and a
    backslash itself `\\`, or a file named `caf\xe9.png` with a real backslash would show as
    the one with the byte. `name_bytes` reads a name back.
    """
    return "".join(map(_escaped, os.fsencode(name).decode("utf-8", "surrogateescape")))


def _escaped(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # how surrogateescape decodes a byte that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if code < 0x80:
        return ascii(char)[1:-1]  # \t, \n, \r, \x1b
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[tnr])?")
CONTROLS = {"t": b"\t", "n": b"\n", "r": b"\r", "\\": b"\\"}


def name_bytes(shown: str) -> bytes:
    """The file name that `readable` shows as `shown` (a name from labels.csv, written as
    predictions.csv shows it); ValueError for a backslash that starts none of its escapes."""
    name = bytearray()
    done = 0
    for match in ESCAPE.finditer(shown):
        escape = match.group(1)
        if escape is None:
            raise ValueError(f"a backslash at character {match.start() + 1} starts no escape")
        name += shown[done:match.start()].encode() + _unescaped(escape)
        done = match.end()
    return bytes(name + shown[done:].encode())


def _unescaped(escape: str) -> bytes:
    if escape in CONTROLS:
        return CONTROLS[escape]
    code = int(escape[1:], 16)
    if escape[0] == "x" and code >= 0x80:
        return bytes([code])
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise ValueError(f"\\{escape} is not a character")
    return chr(code).encode()


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


# --- pictures ----------------------------------------------------------------------------

KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder that could not be listed"}


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
    try:
        return Reading(name, path, prepared=prepare_file(path))
    except ImageProblem as exc:
        return Reading(name, path, error=str(exc))
    except OSError as exc:
        return Reading(name, path, error=f"cannot read: {exc.strerror or exc}")


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


def read_prepared(model: Any, prepared: Sequence[Prepared]) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities for prepared pictures, and the 28x28 digit each reading is of.

    A picture whose EXIF orientation is doubtful (`Prepared.as_stored`) is read both ways,
    and the more confident reading is kept: on the real user pictures, the upright reading
    of a digit was the more confident one against a quarter turn either way about 92% of
    the time, while following a stale tag is wrong every time.
    """
    digits = np.stack([p.digit for p in prepared])
    probabilities = predict_digits(model, digits)
    doubtful = [i for i, p in enumerate(prepared) if p.as_stored is not None]
    if doubtful:
        unturned = np.stack([prepared[i].as_stored for i in doubtful])
        for i, row, digit in zip(doubtful, predict_digits(model, unturned), unturned,
                                 strict=True):
            if row.max() > probabilities[i].max():
                probabilities[i], digits[i] = row, digit
    return probabilities, digits


def predict_readings(model: Any, readings: list[Reading],
                     threshold: float = UNSURE_BELOW) -> None:
    """Fill in probabilities (and `unsure`) for every reading that has a prepared digit."""
    ready = [r for r in readings if r.prepared is not None]
    if not ready:
        return
    probabilities, _ = read_prepared(model, [r.prepared for r in ready])
    for reading, row in zip(ready, probabilities, strict=True):
        reading.probabilities = row
        reading.unsure = bool(row.max() < threshold)


def predict_pictures(model_path: Path, pictures: Sequence[tuple[str, Path]], *,
                     num_classes: int = len(DIGITS), threshold: float = UNSURE_BELOW,
                     keep_prepared: int = SHEET_LIMIT, progress: bool = False
                     ) -> list[Reading]:
    """Check the model, then decode and predict the pictures a chunk at a time.

    Only the first `keep_prepared` readings keep their thumbnail and 28x28 digit (for the
    contact sheet); the rest keep name, probabilities and error, so memory stays flat.
    """
    from tqdm import tqdm

    from digitrec.modelfile import load_model

    readings: list[Reading] = []
    with worker_pool(len(pictures)) as pool:
        model = load_model(model_path, num_classes)
        hidden = None if progress and len(pictures) >= PROGRESS_FROM else True  # None: on a tty
        with tqdm(total=len(pictures), unit="picture", disable=hidden, file=sys.stderr) as bar:
            for start in range(0, len(pictures), CHUNK):
                chunk = list(pool.map(read_one, pictures[start:start + CHUNK], chunksize=8))
                predict_readings(model, chunk, threshold)
                for reading in chunk:
                    if len(readings) >= keep_prepared:
                        reading.prepared = None
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
    if not readings:
        raise DigitrecError(f"{where}: no pictures found")
    if all(r.probabilities is None for r in readings):
        raise NothingReadable(f"{where}: none of the {len(readings)} files could be read as "
                              f"a picture of a digit", readings)


# --- labels ------------------------------------------------------------------------------

def read_labels(path: Path, class_names: Sequence[str] = DIGITS, prefix: str | Path = ""
                ) -> Labels:
    """A labels file (`file,label` with a header; UTF-8, a byte-order mark allowed).

    A label is a class index (0..N-1) or a class name; anything else is refused with its
    line. A name listed twice is warned about (the last line wins). Names are written as
    predictions.csv shows them and keyed as the pictures are reported: `prefix/name`,
    normalised (`./a.png` is `a.png`).
    """
    text = _labels_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise DigitrecError(f"{path}:1: not valid CSV ({exc})") from None
    if "file" not in header or "label" not in header:
        raise DigitrecError(f"{path}:1: expected a header line with columns file,label")
    file_at, label_at = header.index("file"), header.index("label")
    labels = Labels()
    lines: dict[str, list[int]] = {}
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) <= max(file_at, label_at) or not row[file_at]:
                raise DigitrecError(f"{path}:{line}: expected a file name and a label")
            name = _labelled_name(row[file_at], prefix, path, line)
            labels.values[name] = _class_index(row[label_at], class_names, path, line)
            labels.sources[name] = path
            lines.setdefault(name, []).append(line)
    except csv.Error as exc:
        raise DigitrecError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    twice = {name: at for name, at in lines.items() if len(at) > 1}
    if twice:
        listed = "; ".join(f"{name} on lines {', '.join(map(str, at))}"
                           for name, at in list(twice.items())[:SHOWN_NAMES])
        more = f"; and {len(twice) - SHOWN_NAMES} more" if len(twice) > SHOWN_NAMES else ""
        labels.warnings.append(f"{path}: {len(twice)} names are listed more than once, the "
                               f"last line wins: {listed}{more}")
    return labels


def _labelled_name(shown: str, prefix: str | Path, path: Path, line: int) -> str:
    """The picture a labels.csv name means, as `readable` names it (so it is one file)."""
    try:
        name = os.fsdecode(name_bytes(shown))
    except ValueError as exc:
        raise DigitrecError(f"{path}:{line}: in the file name, {exc} ({BACKSLASH_RULE})"
                            ) from None
    return readable(Path(prefix, name).as_posix())


def _labels_text(path: Path) -> str:
    """The file's text, refused if it is not a regular file, too large or not UTF-8."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise DigitrecError(f"{path}: not a regular file")
        if info.st_size > MAX_LABELS_BYTES:
            raise DigitrecError(f"{path}: too large for a labels file ({info.st_size} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        raise DigitrecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DigitrecError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); save it as "
                            f"UTF-8 CSV") from None


def _class_index(text: str, class_names: Sequence[str], path: Path, line: int) -> int:
    label = text.strip()
    if label in class_names:
        return list(class_names).index(label)
    if re.fullmatch(r"[0-9]+", label) and int(label) < len(class_names):
        return int(label)
    named = "" if list(class_names) == [str(i) for i in range(len(class_names))] else \
        " or a class name"
    raise DigitrecError(f"{path}:{line}: label {label!r} is not a class (0 to "
                        f"{len(class_names) - 1}{named})")


def folder_labels(paths: Sequence[str | Path], class_names: Sequence[str] = DIGITS
                  ) -> Labels:
    """The labels.csv of every folder given, keyed by the names pictures are reported by."""
    merged = Labels()
    several = len(paths) > 1
    for given in map(Path, paths):
        path = given / LABELS_FILE
        if not given.is_dir() or not os.path.lexists(path):
            continue
        found = read_labels(path, class_names, given if several else "")
        merged.values.update(found.values)
        merged.sources.update(found.sources)
        merged.warnings += found.warnings
    return merged


def unmatched_warnings(labels: Labels, readings: list[Reading]) -> list[str]:
    """A warning per labels file whose names match no picture: the count and a few names."""
    names = {r.name for r in readings}
    stray: dict[Path, list[str]] = {}
    for name, source in labels.sources.items():
        if name not in names:
            stray.setdefault(source, []).append(name)
    return [_unmatched_warning(source, missing) for source, missing in stray.items()]


def _unmatched_warning(source: Path, missing: list[str]) -> str:
    more = ", ..." if len(missing) > SHOWN_NAMES else ""
    hint = f" ({BACKSLASH_RULE})" if any("\\" in name for name in missing) else ""
    return (f"{source}: {len(missing)} names match no picture: "
            f"{', '.join(missing[:SHOWN_NAMES])}{more}{hint}")


# --- outputs -----------------------------------------------------------------------------

def check_writable(path: Path) -> None:
    """Fail before any work if `path` could not be written: a folder, or a place where no
    file can be created (a file in the way, a read-only file system)."""
    if path.is_dir():
        raise DigitrecError(f"{readable(path)}: is a folder; give a file name to write")
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DigitrecError(f"{readable(path)}: cannot write there: {readable(folder)} is "
                            f"not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".digitrec-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DigitrecError(f"{readable(path)}: cannot write there: "
                            f"{exc.strerror or exc}") from None


def columns(class_names: Sequence[str] = DIGITS) -> list[str]:
    return ["file", "prediction", "class", "confidence", "unsure",
            *[f"p{i}" for i in range(len(class_names))], "error"]


def write_csv(path: Path, readings: list[Reading], class_names: Sequence[str] = DIGITS
              ) -> None:
    """One row per picture; `prediction` is the class index, `class` its name."""
    atomic_write_csv(path, columns(class_names), (_csv_row(r, class_names) for r in readings))


def _csv_row(r: Reading, class_names: Sequence[str]) -> list[Any]:
    if r.probabilities is None:
        return [r.name, "", "", "", "", *[""] * len(class_names), r.error]
    return [r.name, r.prediction, class_names[r.prediction], f"{r.confidence:.4f}",
            "true" if r.unsure else "false", *[f"{p:.4f}" for p in r.probabilities], ""]


def summary(readings: list[Reading], labels: dict[str, int]) -> dict[str, Any]:
    """Counts, and accuracy against labels.csv when the folder has one."""
    predicted = [r for r in readings if r.probabilities is not None]
    result: dict[str, Any] = {"images": len(readings), "predicted": len(predicted),
                              "failed": len(readings) - len(predicted),
                              "unsure": sum(r.unsure for r in predicted)}
    labelled = [r for r in readings if r.name in labels]
    if labelled:
        correct = sum(r.prediction == labels[r.name] for r in labelled)
        result["labelled"] = len(labelled)
        result["correct"] = correct
        result["accuracy"] = correct / len(labelled)
    return result


def predict_batch(model_path: str | os.PathLike, paths: Sequence[str | Path],
                  outputs: Outputs | None = None, *, class_names: Sequence[str] = DIGITS,
                  threshold: float = UNSURE_BELOW, progress: bool = False) -> Batch:
    """Read every picture under `paths` with the model and write the outputs asked for.

    Checked before any work: the output places, the labels files, that there are pictures;
    then the model, before any picture is decoded. Nothing is written unless at least one
    picture was read, so a failing run leaves earlier outputs as they were.
    """
    outputs = outputs or Outputs()
    if not 0 <= threshold <= 1:
        raise DigitrecError(f"unsure threshold {threshold} is not between 0 and 1")
    for path in outputs.paths():
        check_writable(path)
    where = ", ".join(readable(p) for p in paths)
    labels = folder_labels(paths, class_names)
    pictures = find_pictures(paths)
    if not pictures:
        raise DigitrecError(f"{where}: no pictures found")
    readings = predict_pictures(Path(model_path), pictures, num_classes=len(class_names),
                                threshold=threshold, progress=progress)
    require_some(readings, where)
    figures = summary(readings, labels.values)
    batch = Batch(readings, labels.values, figures,
                  labels.warnings + unmatched_warnings(labels, readings), class_names)
    write_outputs(batch, outputs)
    return batch


def write_outputs(batch: Batch, outputs: Outputs) -> None:
    """CSV, contact sheet and metrics JSON, each atomically."""
    if outputs.csv is not None:
        write_csv(Path(outputs.csv), batch.readings, batch.class_names)
    if outputs.contact_sheet is not None:
        from digitrec.report import draw_contact_sheet

        draw_contact_sheet(batch.readings, batch.labels, Path(outputs.contact_sheet),
                           class_names=batch.class_names, limit=SHEET_LIMIT)
    if outputs.metrics is not None:
        atomic_write_json(Path(outputs.metrics), {key: value for key, value in
                                                  batch.figures.items() if key in HEADLINE})


def summary_line(batch: Batch) -> str:
    figures = batch.figures
    line = (f"{figures['predicted']} of {figures['images']} pictures read "
            f"({figures['failed']} failed, {figures['unsure']} unsure)")
    if "accuracy" in figures:
        line += f", {figures['correct']}/{figures['labelled']} correct ({figures['accuracy']:.1%})"
    return line
