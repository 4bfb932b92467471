"""labels.csv: what the pictures in a folder really show, for the accuracy of a batch.

A labels file comes from outside like the pictures: it is read only if it is a regular
UTF-8 file of bounded size, every line is checked (a bad one is refused with its number),
names are read as predictions.csv writes them, and a name listed twice or matching no
picture is warned about.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitrec.catalog import MNIST
from digitrec.errors import DigitrecError
from digitrec.reading.names import BACKSLASH_RULE, name_bytes, readable

LABELS_FILE = "labels.csv"
DIGITS = MNIST.class_names
MAX_LABELS_BYTES = 16 << 20
MAX_LABEL_DIGITS = 40       # the most digits a picture is read for (segment.MAX_MARKS)
SHOWN_LABEL = 40            # characters of a bad label an error repeats
NO_DIGIT = "none"           # the label of a picture that holds no digit
SHOWN_NAMES = 5             # names listed in a warning before "and N more"


@dataclass
class Labels:
    """Known classes by picture name (from labels.csv files), and what was odd about them."""

    values: dict[str, str] = field(default_factory=dict)   # name -> expected text
    sources: dict[str, Path] = field(default_factory=dict)   # name -> labels.csv it came from
    warnings: list[str] = field(default_factory=list)


def read_labels(path: Path, class_names: Sequence[str] = DIGITS, prefix: str | Path = ""
                ) -> Labels:
    """A labels file (`file,label` with a header; UTF-8, a byte-order mark allowed).

    A label is what the picture says (`_expected_text`: digits such as `0869`, `none`, or
    a class name); anything else is refused with its line. A name listed twice is warned
    about (the last line wins). Names are written as predictions.csv shows them and keyed
    as the pictures are reported: `prefix/name`, normalised (`./a.png` is `a.png`).
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
            labels.values[name] = _expected_text(row[label_at], class_names, path, line)
            labels.sources[name] = path
            lines.setdefault(name, []).append(line)
    except csv.Error as exc:
        raise DigitrecError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    twice = {name: at for name, at in lines.items() if len(at) > 1}
    if twice:
        listed = "; ".join(f"{name} on lines {_some(at)}"
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


def _expected_text(text: str, class_names: Sequence[str], path: Path, line: int) -> str:
    """What the reader should answer for a label: for digits the digits as written (a number
    such as `0869`, leading zeros kept) or "" for `none` (no digit in the picture); for other
    classes the class name (given as a name or an index)."""
    label = text.strip()
    if is_digits(class_names):
        if re.fullmatch(f"[0-9]{{1,{MAX_LABEL_DIGITS}}}", label):
            return label
        if label.lower() == NO_DIGIT:
            return ""
        raise DigitrecError(f"{path}:{line}: label {_shown(label)} is not digits (such as 7 "
                            f"or 0869, at most {MAX_LABEL_DIGITS}) or {NO_DIGIT!r} for a "
                            f"picture with no digit")
    if label in class_names:
        return label
    if re.fullmatch(r"[0-9]+", label) and int(label) < len(class_names):
        return class_names[int(label)]
    raise DigitrecError(f"{path}:{line}: label {_shown(label)} is not a class (0 to "
                        f"{len(class_names) - 1} or a class name)")


def answers(reading: Any, expected: str) -> bool:
    """Whether a reading (its `status` and `text`) says what the label says: the same text,
    and for a picture with no digit (label `none`), that it holds none."""
    if expected == "":
        return reading.status == "not_digits"
    return reading.status in ("ok", "unsure") and reading.text == expected


def _some(lines: list[int]) -> str:
    """Line numbers as a warning lists them: the first few, then how many more."""
    more = f" and {len(lines) - SHOWN_NAMES} more" if len(lines) > SHOWN_NAMES else ""
    return ", ".join(map(str, lines[:SHOWN_NAMES])) + more


def _shown(label: str) -> str:
    """A label as an error shows it: quoted, and cut short if long."""
    return repr(label if len(label) <= SHOWN_LABEL else label[:SHOWN_LABEL] + "...")


def is_digits(class_names: Sequence[str]) -> bool:
    """Whether the classes are the ten digits (so pictures may hold numbers, or no digit)."""
    return list(class_names) == list(DIGITS)


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


def unmatched_warnings(labels: Labels, pictures: Iterable[str]) -> list[str]:
    """A warning per labels file whose names match no picture: the count and a few names."""
    names = set(pictures)
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

