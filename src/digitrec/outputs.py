"""What an output may replace: an earlier output of the same kind, never something else.

Before any work, `check_output` refuses to write where writing would destroy something the
command did not make: a block device or a socket, one of the command's own inputs (by any
name), a file where a folder goes or the reverse, and, unless the user forces it, an existing
file or folder that `Kind` does not recognise as an earlier output (a `.keras` model as an
ONNX output, a folder of the user's files). What is accepted is then written by `files`.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from digitrec.errors import DigitrecError
from digitrec.files import DISK_PROBLEMS, disk_message, shown, write_target


@dataclass(frozen=True)
class Kind:
    """What an output is, to recognise an earlier one that may be replaced: `name` as a
    message says it ("a predictions CSV"), `folder` for an output that is a folder, and
    `recognise`, which says whether an existing file (or folder) is one."""

    name: str
    recognise: Callable[[Path], bool]
    folder: bool = False


def starts_with(*prefixes: bytes, offset: int = 0) -> Callable[[Path], bool]:
    """A `recognise` for files whose bytes at `offset` are one of `prefixes`."""
    def recognise(path: Path) -> bool:
        with open(path, "rb") as f:
            f.seek(offset)
            head = f.read(max(map(len, prefixes)))
        return head.startswith(prefixes)
    return recognise


def holds_only(*names: str) -> Callable[[Path], bool]:
    """A `recognise` for folders that hold nothing but (some of) `names`."""
    return lambda folder: {entry.name for entry in folder.iterdir()} <= set(names)


def _json_object(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip()[:1] in (b"{", b"")


PNG = Kind("a PNG picture", starts_with(b"\x89PNG\r\n\x1a\n"))
JSON = Kind("a JSON file", _json_object)


def csv_kind(header: Sequence[str], *earlier: Sequence[str]) -> Kind:
    """A CSV whose first line is `header` (an earlier output of the same writer), or one
    of the `earlier` headers the writer had in older versions."""
    starts = [",".join(h[:2]).encode() + b"," for h in (header, *earlier)]
    return Kind(f"a CSV starting {','.join(header[:2])},...", starts_with(*starts))


def check_output(path: str | os.PathLike, kind: Kind, *,
                 inputs: Iterable[str | os.PathLike] = (), force: bool = False,
                 forced_by: str = "--force") -> None:
    """Refuse, before any work, to write `path` where writing would destroy something.

    Accepted: a path that does not exist yet (its folder can be created and written), an
    earlier output of the same `kind` (or an empty file), a character device or FIFO (it is
    written into), and a link to any of those (followed). Refused: a block device or a
    socket; one of the command's `inputs` (the same file, by any name); a file where a
    folder is written or the reverse; and, unless `force`, an existing file or folder that
    `kind` does not recognise (`forced_by` says how to force it, "" when nothing can).
    """
    path = Path(path)
    target = write_target(path)
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # said by `_check_creatable`
        info = None
    except OSError as exc:
        raise DigitrecError(disk_message(path, exc)) from None
    if info is not None:
        _check_existing(path, target, info, kind, inputs, force, forced_by)
    if info is None or not (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        _check_creatable(path, target.parent)


def _check_existing(path: Path, target: Path, info: os.stat_result, kind: Kind,
                    inputs: Iterable[str | os.PathLike], force: bool, forced_by: str) -> None:
    mode = info.st_mode
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        what = "a block device" if stat.S_ISBLK(mode) else "a socket"
        raise DigitrecError(f"{shown(path)}: is {what}; not writing {kind.name} there")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        if kind.folder:
            raise DigitrecError(f"{shown(path)}: is a device or FIFO, not a folder; give a "
                                f"folder name for {kind.name}")
        return
    identity = (info.st_dev, info.st_ino)
    for given in inputs:
        try:
            same = os.stat(given)
        except OSError:
            continue
        if (same.st_dev, same.st_ino) == identity:
            raise DigitrecError(f"{shown(path)}: is one of this command's inputs "
                                f"({shown(given)}); not overwriting it")
    if stat.S_ISDIR(mode) != kind.folder:
        if kind.folder:
            raise DigitrecError(f"{shown(path)}: is a file; give a folder name for "
                                f"{kind.name}")
        raise DigitrecError(f"{shown(path)}: is a folder; give a file name for {kind.name}")
    if force or (not kind.folder and info.st_size == 0):
        return
    try:
        recognised = kind.recognise(target)
    except OSError as exc:
        raise DigitrecError(f"{shown(path)}: cannot read what is there: "
                            f"{exc.strerror or exc}") from None
    if not recognised:
        what = ("a folder with files this command did not write" if kind.folder
                else f"a file that is not {kind.name}")
        how = f"without {forced_by}" if forced_by else "(move it away first)"
        raise DigitrecError(f"{shown(path)}: exists and is {what}; not replacing it {how}")


def _check_creatable(path: Path, folder: Path) -> None:
    """A file can be created in `folder` (or in what would become it)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DigitrecError(f"{shown(path)}: cannot write there: {shown(folder)} is not "
                            f"a folder")
    try:
        if len(os.fsencode(path.name)) > _name_max(folder):
            raise OSError(errno.ENAMETOOLONG, "File name too long")
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".digitrec-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = DISK_PROBLEMS.get(exc.errno, exc.strerror or str(exc))
        raise DigitrecError(f"{shown(path)}: cannot write there: {reason}") from None


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255
