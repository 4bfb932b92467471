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

from digitrec.catalog import MNIST
from digitrec.errors import DigitrecError
from digitrec.reading.names import BACKSLASH_RULE, name_bytes, readable

LABELS_FILE = "labels.csv"
DIGITS = MNIST.class_names
MAX_LABELS_BYTES = 16 << 20
SHOWN_NAMES = 5             # names listed in a warning before "and N more"


@dataclass
class Labels:
    """Known classes by picture name (from labels.csv files), and what was odd about them."""

    values: dict[str, int] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)   # name -> labels.csv it came from
    warnings: list[str] = field(default_factory=list)


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

