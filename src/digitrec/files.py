"""Small file helpers shared by the stages: atomic writes, folder swaps and content hashes.

Every output is written beside its final name, flushed to disk, and renamed into place (and
the rename itself flushed), so an interrupted or failed stage, or a power cut, never leaves a
half-written file where a valid one stood.

Writing never destroys what the path names: a symbolic link is followed (the file it points
at is replaced, never the link), a character device or FIFO is written into (`/dev/null`,
`/dev/stdout`, a pipe), and `outputs.check_output` refuses, before any work, a block device, a
socket, one of the command's own inputs, or an existing file or folder that is not an
earlier output of the same kind (unless the user forces it). A full disk, a read-only folder
or a name too long is one `DigitrecError` naming the path (`disk_errors`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digitrec.errors import DigitrecError

CHUNK = 1 << 20
SHOWN_LIMIT = 240  # characters of a path a message shows
SCRATCH_STEM = 100  # characters of an output's name that its scratch files repeat


class WriteError(DigitrecError):
    """The file system refused a write (full, read-only, a name too long): the run stops
    there, as every other write would fail the same way."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_shareable(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temporary file or folder (created private) the usual permissions under umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None,
                at_least: bool = False) -> Iterator[Path]:
    """Yield a temporary path; put it at `path` (`put_file`) only if the block succeeds.

    `needed`: the bytes it takes (`at_least`: a lower bound), for a full disk's message;
    without it, the message says what was written before the disk filled.

    The temporary file is beside the file `path` names (a link's target), so the rename is
    atomic; for a device or FIFO, which is written into, it is in the temporary folder.
    """
    target = write_target(Path(path))
    with disk_errors(target):
        if _special(target):
            fd, tmp = tempfile.mkstemp(prefix="digitrec-", suffix=".tmp")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_scratch(target)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=scratch_prefix(target),
                                       suffix=".tmp")
        os.close(fd)
    try:
        yield Path(tmp)
        put_file(Path(tmp), target)
    except DigitrecError as exc:  # a writer's own atomic write onto `tmp`: name the output
        if tmp not in str(exc):
            raise
        raise DigitrecError(str(exc).replace(tmp, shown(target))) from None
    except Exception as exc:
        if not (isinstance(exc, OSError) and exc.errno in DISK_PROBLEMS):
            wrapped = wrapped_disk_error(exc)
            if wrapped is None:
                raise
            exc = wrapped
        written = Path(tmp).stat().st_size if os.path.exists(tmp) else 0
        Path(tmp).unlink(missing_ok=True)  # first, so the space it held counts as free
        raise WriteError(disk_message(target, exc, needed or written or None,
                                         at_least=at_least or needed is None)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """`atomic_path` for several outputs at once: none is put in place unless the block
    wrote them all, so a failure leaves every earlier output as it was."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def write_target(path: Path) -> Path:
    """What writing to `path` writes: the path itself, or the file a symbolic link names (a
    link is followed, never replaced). A device or FIFO is returned as given, to write into
    (its link may be a /proc magic link that only the kernel can follow)."""
    with disk_errors(path):
        if not path.is_symlink():
            return path
    try:
        if _special(path):
            return path
    except OSError:
        pass
    return Path(os.path.realpath(path))


def _special(path: Path) -> bool:
    """A character device or FIFO, which is written into rather than replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def put_file(source: Path, target: Path) -> None:
    """Put the finished file `source` at `target`: renamed onto it (atomically, flushed),
    or copied into it when it is a device or FIFO; a link's target is replaced, not the link.
    """
    target = write_target(Path(target))
    with disk_errors(target, needed=source.stat().st_size):
        if _special(target):
            with open(source, "rb") as data, open(target, "wb") as out:
                shutil.copyfileobj(data, out, CHUNK)
            return
        if target.is_dir():
            raise DigitrecError(f"{shown(target)}: is a folder; give a file name to write")
        make_shareable(source)
        fsync_path(source)
        os.replace(source, target)
        fsync_path(target.parent)


def shown(path: str | os.PathLike) -> str:
    """A path as printable text for a message (a control character could rewrite the
    terminal's line); `reading.names.readable` is the full, reversible form."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in os.fsdecode(path))
    if len(text) > SHOWN_LIMIT:  # a name too long for the file system, or a runaway value
        text = f"{text[:SHOWN_LIMIT // 2]}...({len(text)} characters)...{text[-60:]}"
    return text


DISK_PROBLEMS = {errno.ENOSPC: "no space left on the file system",
                 errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "the file system is read-only",
                 errno.EACCES: "permission denied",
                 errno.EPERM: "not permitted",
                 errno.ENAMETOOLONG: "the name is too long for the file system",
                 errno.EFBIG: "the file is too large for the file system",
                 errno.ENOTDIR: "a part of the path is not a folder",
                 errno.EISDIR: "is a folder"}


@contextmanager
def disk_errors(path: str | os.PathLike, needed: int | None = None,
                at_least: bool = False) -> Iterator[None]:
    """Turn what the file system refuses while writing `path` (full, read-only, a name too
    long) into one `DigitrecError` naming the path and, for a full disk, the space needed
    and free; also when a library wraps the errno in its own exception (TensorFlow's
    ResourceExhaustedError, h5py's messages). Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_PROBLEMS:
            wrapped = wrapped_disk_error(exc)
            if wrapped is None:
                raise
            exc = wrapped
        raise WriteError(disk_message(Path(path), exc, needed, at_least)) from None
    except Exception as exc:
        wrapped = wrapped_disk_error(exc)
        if wrapped is None:
            raise
        raise WriteError(disk_message(Path(path), wrapped, needed, at_least)) from None


LIBRARY_MESSAGES = {"No space left on device": errno.ENOSPC, "errno = 28": errno.ENOSPC,
                    "Disk quota exceeded": errno.EDQUOT,
                    "Read-only file system": errno.EROFS, "errno = 30": errno.EROFS,
                    "File name too long": errno.ENAMETOOLONG}


def disk_error_of(exc: BaseException) -> OSError | None:
    """The file-system refusal `exc` is (or wraps), or None when it is something else."""
    if isinstance(exc, OSError) and exc.errno in DISK_PROBLEMS:
        return exc
    return wrapped_disk_error(exc)


def wrapped_disk_error(exc: BaseException) -> OSError | None:
    """The OSError a library's exception stands for, when its message says one of ours."""
    text = str(exc)
    for words, number in LIBRARY_MESSAGES.items():
        if words in text:
            return OSError(number, os.strerror(number))
    return None


def disk_message(path: Path, exc: OSError, needed: int | None = None,
                 at_least: bool = False) -> str:
    """`path: cannot write: no space left ... (needs N MB, M MB free)`; `at_least` when
    `needed` is what was written before the disk filled."""
    message = f"{shown(path)}: cannot write: {DISK_PROBLEMS.get(exc.errno, exc.strerror)}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path)
        needs = (f"needs {'more than ' if at_least else ''}{megabytes(needed)}, "
                 if needed else "")
        message += f" ({needs}{megabytes(free)} free)" if free is not None else ""
    return message


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} KB"


def require_space(path: str | os.PathLike, needed: int) -> None:
    """Refuse, before any work, to write `needed` bytes where fewer are free, saying both."""
    free = free_bytes(Path(path))
    if free is not None and free < needed:
        raise WriteError(f"{shown(path)}: cannot write: not enough space on the file "
                            f"system (needs {megabytes(needed)}, {megabytes(free)} free)")


def free_bytes(path: Path) -> int | None:
    """Space a normal user may still write on the file system holding `path`."""
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk, so a rename that follows is
    never seen before the content it points at."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync folders; the data itself was synced
        pass
    finally:
        os.close(fd)


def replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is, keeping the old one until the new one is in place.

    A link to a folder is followed (the folder it names is replaced); anything but a folder
    at `target` is refused, never removed.
    """
    target = write_target(Path(target))
    if os.path.lexists(target) and not target.is_dir():
        raise DigitrecError(f"{shown(target)}: exists and is not a folder; not replacing it")
    with disk_errors(target):
        for path in new.rglob("*"):
            if path.is_file():
                fsync_path(path)
        fsync_path(new)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        new.rename(target)
        fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def scratch_prefix(target: Path) -> str:
    """`.NAME.PID.`: the scratch of an output names its process, so that what a killed run
    left is recognised (its process is gone) and removed by the next write of that output."""
    return f".{_scratch_stem(target)}.{os.getpid()}."


def _scratch_stem(target: Path) -> str:
    """The output's name, cut so that its scratch's longer name still fits the file
    system whenever the output's own does."""
    return target.name[:SCRATCH_STEM]


def remove_stale_scratch(target: Path) -> None:
    """Remove the scratch files and folders that runs killed while writing `target` left
    beside it (`scratch_prefix` names a process that no longer exists)."""
    start = f".{_scratch_stem(target)}."
    try:
        entries = [entry for entry in os.scandir(target.parent) if entry.name.startswith(start)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(start):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a number no process has): leave it
    return True


@contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A private scratch folder beside the folder `target` names (a link's target), on the
    same file system so `replace_dir` can rename it into place; removed whatever happens."""
    place = write_target(Path(target))
    with disk_errors(place):
        place.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(place)
        staging = Path(tempfile.mkdtemp(dir=place.parent, prefix=scratch_prefix(place)))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` all at once or not at all."""
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically; refuses NaN and Infinity (invalid JSON)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def atomic_write_csv(path: str | os.PathLike, header: Sequence[str],
                     rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV (UTF-8, one header line) all at once or not at all (built in memory
    first, so a full disk can be told how much it needed)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
