"""Fetch a dataset's four IDX archives from an ordered list of mirrors into `data/raw/`.

For each file: try the mirrors in order, each through `transfer.fetch_to` (retries, Range
resume, decompression while the bytes arrive, bounded in time and bytes), and verify its size
and SHA-256 (or, with `verify=False`, only its IDX structure); a mirror that fails or breaks
a bound is left for the next one, and a mirror whose host does not answer is skipped for the
remaining files.

`data/raw/` changes only once all four files are ready: they are built in the scratch folder
(`data/downloads/staging/`, beside `data/raw/` on the same file system) and renamed into place
together, so a failed run leaves `data/raw/` as it was. Temporary files are removed on
failure, on SIGTERM or Ctrl-C, and (after a kill -9) at the start of the next run; verified
files of a failed run wait in the staging folder, to be checked again and used by the next.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from digitrec.catalog import Dataset, FileSpec
from digitrec.data.attempt import MirrorError, UnreachableError
from digitrec.data.credentials import ENV_REFERENCE
from digitrec.data.transfer import Retries, fetch_to
from digitrec.errors import DigitrecError, redact
from digitrec.files import WriteError, atomic_path, sha256_file
from digitrec.params import DownloadParams

OFFICIAL = "official"
ALREADY_PRESENT = "already present"
STAGING = "staging"  # complete, checked files waiting to be renamed into data/raw/
LOCK = ".lock"
OFFLINE_HINT = (
    "no network? put the four .gz archives in a folder and list it first in "
    "download.mirrors in params.yaml (see 'Offline' in the README)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM during a download, raised like Ctrl-C so that every cleanup runs."""


def expand_mirrors(mirrors: Sequence[str], dataset: Dataset) -> list[str]:
    """Replace the word `official` with the dataset's official mirrors, keeping the order."""
    expanded: list[str] = []
    for mirror in mirrors:
        expanded.extend(dataset.mirrors if mirror == OFFICIAL else [str(mirror)])
    if not expanded:
        raise DigitrecError("download.mirrors is empty; list at least one mirror")
    return expanded


def source_for(mirror: str, archive_name: str) -> str:
    """The URL or local path of `archive_name` on `mirror` (a URL, file:// URL or folder)."""
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme in ("http", "https"):
        return urllib.parse.urljoin(mirror.rstrip("/") + "/", archive_name)
    if scheme == "file":
        return str(Path(urllib.request.url2pathname(urllib.parse.urlsplit(mirror).path))
                   / archive_name)
    try:
        return str(Path(mirror).expanduser() / archive_name)
    except RuntimeError:  # ~user of no such user
        raise DigitrecError(f"download.mirrors: {mirror}: no such user's home folder") from None


def password_warnings(mirrors: Sequence[str]) -> list[str]:
    """A warning for each mirror whose URL holds a password itself (not `${NAME}`): DVC
    records params.yaml in dvc.lock, and so the password would reach git."""
    found = []
    for mirror in mirrors:
        userinfo, at, _ = urllib.parse.urlsplit(mirror).netloc.rpartition("@")
        password = userinfo.partition(":")[2]
        if at and password and not ENV_REFERENCE.fullmatch(password):
            found.append(f"download.mirrors: {redact(mirror)} holds a password, which DVC "
                         f"records in dvc.lock (and so in git); put it in ~/.netrc, or write "
                         f"${{NAME}} for an environment variable")
    return found


def download(
    dataset: Dataset,
    params: DownloadParams,
    raw_dir: Path,
    partial_dir: Path,
    retries: Retries | None = None,
) -> dict[str, str]:
    """Make `raw_dir` hold the dataset's four valid IDX files; return how each was obtained.

    `params` is download's section of params.yaml: the mirrors, whether to verify, and the
    time bounds. `raw_dir` changes only if all four could be obtained, so a failure (or a
    kill) never leaves a mix of old and new files there. Files present are kept only when
    `params.verify` can check them against the catalog; unverified ones could be another
    mirror's and are fetched again. `partial_dir` is scratch on the same file system.
    Raises DigitrecError naming every mirror tried and why it failed when any file could
    not be obtained.
    """
    retries = retries or Retries()
    verify = params.verify
    sources = expand_mirrors(params.mirrors, dataset)
    for warning in password_warnings(params.mirrors):
        print(f"warning: {warning}", file=sys.stderr)
    unreachable: dict[str, str] = {}
    outcome: dict[str, str] = {}
    failures: list[str] = []
    with sigterm_raises(), scratch_space(partial_dir, raw_dir, keep_staged=verify) as staging:
        for spec in dataset.files:
            try:
                outcome[spec.name] = ensure_file(
                    spec, sources, raw_dir, staging, params, retries, unreachable
                )
            except WriteError:  # a full disk: every other file would fail alike
                for entry in staging.iterdir():
                    _remove(entry)  # and what is staged would keep the disk full
                raise
            except DigitrecError as exc:
                failures.append(str(exc))
        if failures:
            if unreachable:
                failures.append(OFFLINE_HINT)
            raise DigitrecError("\n".join(failures))
        install([name for name, how in outcome.items() if how != ALREADY_PRESENT],
                staging, raw_dir)
    return outcome


def ensure_file(
    spec: FileSpec,
    mirrors: Sequence[str],
    raw_dir: Path,
    staging: Path,
    params: DownloadParams,
    retries: Retries,
    unreachable: dict[str, str] | None = None,
) -> str:
    """Have one valid file ready, in `raw_dir` already or in `staging`; say where it came from.

    `unreachable` maps mirrors whose host did not answer to the reason; they are not tried
    again for later files, so an offline run fails in seconds rather than minutes. When a
    later mirror succeeds, the failures of the earlier ones are printed as warnings.
    """
    unreachable = {} if unreachable is None else unreachable
    verify = params.verify
    if verify and is_valid(raw_dir / spec.name, spec):
        return ALREADY_PRESENT
    if verify and is_valid(staging / spec.name, spec):
        return "fetched by an earlier run, verified again"
    reasons: list[str] = []
    for mirror in mirrors:
        source = source_for(mirror, spec.archive_name)
        shown = redact(source)  # the URL's password used, never printed
        if mirror in unreachable:
            reasons.append(f"  - {shown}: skipped, host did not answer for an earlier file")
            continue
        try:
            fetch_to(source, spec, staging / spec.name, params, retries)
        except UnreachableError as exc:
            unreachable[mirror] = str(exc)
            reasons.append(f"  - {shown}: {redact(str(exc))}")
        except MirrorError as exc:
            reasons.append(f"  - {shown}: {redact(str(exc))}")
        else:
            for reason in reasons:
                print(f"warning: {spec.archive_name}: used the next mirror after "
                      f"{reason.lstrip(' -')}", file=sys.stderr)
            return f"fetched from {shown}"
    raise DigitrecError(
        f"could not get {spec.archive_name} from any mirror:\n" + "\n".join(reasons)
    )


def is_valid(path: Path, spec: FileSpec) -> bool:
    """Whether `path` is a regular file with exactly the catalog's size and SHA-256 (which
    settles its IDX structure too: the catalog's files are well-formed)."""
    try:
        return (path.is_file() and path.stat().st_size == spec.size
                and sha256_file(path) == spec.sha256)
    except OSError:
        return False


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated, so `finally` blocks clean up.

    Only the main thread can handle signals; elsewhere the block runs unchanged. The old
    handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: let the cleanup run
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextmanager
def scratch_space(partial_dir: Path, raw_dir: Path, keep_staged: bool) -> Iterator[Path]:
    """Yield the staging folder, for one run at a time, after removing a killed run's scratch.

    Complete files a failed run staged are kept for the next one only when `keep_staged`
    (they are verified again before use); everything else is removed at the end.
    """
    staging = partial_dir / STAGING
    with _exclusive_lock(partial_dir / LOCK):
        try:
            remove_stale(partial_dir, raw_dir, keep_staged)
            staging.mkdir(exist_ok=True)
        except OSError as exc:
            raise DigitrecError(f"{staging}: cannot use it for scratch: "
                                f"{exc.strerror or exc}") from None
        succeeded = False
        try:
            yield staging
            succeeded = True
        finally:
            if succeeded or not keep_staged:
                for entry in staging.iterdir():
                    _remove(entry)


def remove_stale(partial_dir: Path, raw_dir: Path, keep_staged: bool) -> None:
    """Remove what a killed run can leave: temporary files in the scratch folder (and, from
    older versions, in `raw_dir`), and staged files that cannot be checked again."""
    for entry in partial_dir.iterdir():
        if entry.name not in (LOCK, STAGING):
            _remove(entry)
    staging = partial_dir / STAGING
    if staging.is_dir() and not staging.is_symlink():
        for entry in staging.iterdir():
            if not keep_staged or entry.name.startswith(".") or not entry.is_file():
                _remove(entry)
    else:
        _remove(staging)
    if raw_dir.is_dir():
        for entry in raw_dir.glob(".*.tmp"):
            _remove(entry)


def install(names: Sequence[str], staging: Path, raw_dir: Path) -> None:
    """Rename the staged files into `raw_dir`, once all are ready, one quick rename each."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = raw_dir / name
        if target.is_dir() and not target.is_symlink():
            raise DigitrecError(f"{target}: is a folder; remove it so the file can take its place")
        if os.path.lexists(target) and not (target.is_file() or target.is_symlink()):
            raise DigitrecError(f"{target}: is not a regular file (a device, FIFO or socket); "
                                f"not replacing it, move it away first")
    for name in names:
        _move(staging / name, raw_dir / name)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise DigitrecError(f"{target}: cannot install the downloaded file: "
                                f"{exc.strerror or exc}") from None
        with atomic_path(target) as tmp:  # scratch on another file system: copy, then rename
            shutil.copyfile(source, tmp)
        source.unlink()


def _remove(path: Path) -> None:
    """Remove a file or folder if possible; what cannot be removed now goes next time."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink(missing_ok=True)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (creating its folder), or say that another run holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a")  # noqa: SIM115 (closed by the `with` below)
    except OSError as exc:
        raise DigitrecError(f"{path}: cannot create: {exc.strerror or exc}") from None
    with lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: one download at a time is then up to the user
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DigitrecError(f"{path}: another download is running in this project; "
                                    "wait for it to finish") from None
        yield


