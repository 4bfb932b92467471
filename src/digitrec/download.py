"""Fetch a dataset's four IDX archives from an ordered list of mirrors into `data/raw/`.

For each file: try the mirrors in order; retry transient failures with backoff and resume a
cut HTTP transfer with a Range request; decompress while the bytes arrive, stopping as soon as
the file is longer than it can be; verify its size and SHA-256 (or, with `verify=False`, only
its IDX structure). Every transfer is bounded in time (a deadline per file and mirror, a
minimum speed over a window) and in bytes (the size the file can have, and what its archive
can take); a mirror that breaks a bound is left for the next one.

`data/raw/` changes only once all four files are ready: they are built in the scratch folder
(`data/downloads/staging/`, beside `data/raw/` on the same file system) and renamed into place
together, so a failed run leaves `data/raw/` as it was. Temporary files are removed on
failure, on SIGTERM or Ctrl-C, and (after a kill -9) at the start of the next run; verified
files of a failed run wait in the staging folder, to be checked again and used by the next.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from digitrec import __version__, idx
from digitrec.datasets import Dataset, FileSpec
from digitrec.errors import DigitrecError
from digitrec.files import CHUNK, atomic_path, make_shareable, sha256_file

OFFICIAL = "official"
USER_AGENT = f"digitrec/{__version__} (+https://github.com/digitrec)"
TRANSIENT_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}
ALREADY_PRESENT = "already present"
STAGING = "staging"  # complete, checked files waiting to be renamed into data/raw/
LOCK = ".lock"
OFFLINE_HINT = (
    "no network? put the four .gz archives in a folder and list it first in "
    "download.mirrors in params.yaml (see 'Offline' in the README)"
)


class MirrorError(Exception):
    """One mirror could not supply one file; the message says why."""


class TransientError(MirrorError):
    """A failure worth retrying on the same mirror (timeout, reset, 5xx, cut transfer)."""


class UnreachableError(TransientError):
    """No answer at all from the mirror's host (DNS, refused, timeout): skip it for later files."""


class Terminated(KeyboardInterrupt):
    """SIGTERM during a download, raised like Ctrl-C so that every cleanup runs."""


@dataclass(frozen=True)
class DownloadOptions:
    """How hard to try, and how long to wait, for one file from one mirror.

    `attempts` and `backoff`: tries per mirror for transient failures and the first pause
    between them (it doubles). `timeout`: seconds one socket operation may block.
    `deadline`: seconds one file may take from one mirror, retries included. `min_speed`
    (bytes/s) over `stall_window` (seconds): a slower transfer is stalled; 0 switches this
    off. `progress`: a bar on stderr (None: only when stderr is a terminal).
    """

    attempts: int = 3
    backoff: float = 1.0
    timeout: float = 30.0
    deadline: float = 600.0
    min_speed: float = 4096.0
    stall_window: float = 30.0
    progress: bool | None = None


def expand_mirrors(mirrors: Sequence[str], dataset: Dataset) -> list[str]:
    """Replace the word `official` with the dataset's official mirrors, keeping the order."""
    expanded: list[str] = []
    for mirror in mirrors:
        expanded.extend(dataset.mirrors if mirror == OFFICIAL else [str(mirror)])
    if not expanded:
        raise DigitrecError("params.yaml: download.mirrors is empty; list at least one mirror")
    return expanded


def source_for(mirror: str, archive_name: str) -> str:
    """The URL or local path of `archive_name` on `mirror` (a URL, file:// URL or folder)."""
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme in ("http", "https"):
        return urllib.parse.urljoin(mirror.rstrip("/") + "/", archive_name)
    if scheme == "file":
        return str(Path(urllib.request.url2pathname(urllib.parse.urlsplit(mirror).path))
                   / archive_name)
    return str(Path(mirror).expanduser() / archive_name)


def download(
    dataset: Dataset,
    mirrors: Sequence[str],
    raw_dir: Path,
    partial_dir: Path,
    verify: bool = True,
    options: DownloadOptions = DownloadOptions(),
) -> dict[str, str]:
    """Make `raw_dir` hold the dataset's four valid IDX files; return how each was obtained.

    `raw_dir` changes only if all four could be obtained, so a failure (or a kill) never
    leaves a mix of old and new files there. Files present are kept only when `verify` can
    check them against the catalog; unverified ones could be another mirror's and are fetched
    again. `partial_dir` is scratch on the same file system. Raises DigitrecError naming
    every mirror tried and why it failed when any file could not be obtained.
    """
    sources = expand_mirrors(mirrors, dataset)
    unreachable: dict[str, str] = {}
    outcome: dict[str, str] = {}
    failures: list[str] = []
    with sigterm_raises(), scratch_space(partial_dir, raw_dir, keep_staged=verify) as staging:
        for spec in dataset.files:
            try:
                outcome[spec.name] = ensure_file(
                    spec, sources, raw_dir, staging, verify, options, unreachable
                )
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
    verify: bool,
    options: DownloadOptions,
    unreachable: dict[str, str] | None = None,
) -> str:
    """Have one valid file ready, in `raw_dir` already or in `staging`; say where it came from.

    `unreachable` maps mirrors whose host did not answer to the reason; they are not tried
    again for later files, so an offline run fails in seconds rather than minutes. When a
    later mirror succeeds, the failures of the earlier ones are printed as warnings.
    """
    unreachable = {} if unreachable is None else unreachable
    if verify and is_valid(raw_dir / spec.name, spec):
        return ALREADY_PRESENT
    if verify and is_valid(staging / spec.name, spec):
        return "fetched by an earlier run, verified again"
    reasons: list[str] = []
    for mirror in mirrors:
        source = source_for(mirror, spec.archive_name)
        if mirror in unreachable:
            reasons.append(f"  - {source}: skipped, host did not answer for an earlier file")
            continue
        try:
            fetch_to(source, spec, staging / spec.name, verify, options)
        except UnreachableError as exc:
            unreachable[mirror] = str(exc)
            reasons.append(f"  - {source}: {exc}")
        except MirrorError as exc:
            reasons.append(f"  - {source}: {exc}")
        else:
            for reason in reasons:
                print(f"warning: {spec.archive_name}: used the next mirror after "
                      f"{reason.lstrip(' -')}", file=sys.stderr)
            return f"fetched from {source}"
    raise DigitrecError(
        f"could not get {spec.archive_name} from any mirror:\n" + "\n".join(reasons)
    )


def is_valid(path: Path, spec: FileSpec) -> bool:
    """Whether `path` is a regular file with exactly the catalog's size and SHA-256."""
    try:
        check_file(path, spec)
    except (MirrorError, OSError):
        return False
    return True


def check_file(path: Path, spec: FileSpec) -> None:
    """Raise MirrorError unless `path` is the catalog's file (size, SHA-256, IDX structure)."""
    if not path.is_file():
        raise MirrorError(f"{path}: not a file")
    size = path.stat().st_size
    if size != spec.size:
        raise MirrorError(f"checksum mismatch: {size} bytes, expected {spec.size}")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise MirrorError(f"checksum mismatch: SHA-256 {digest}, expected {spec.sha256}")
    try:
        header = idx.read_header(path)
    except idx.IdxError as exc:
        raise MirrorError(f"bad IDX: {exc.problem}") from None
    if len(header.shape) != spec.ndim:
        raise MirrorError(f"bad IDX: {len(header.shape)} dimensions, expected {spec.ndim}")


def fetch_to(source: str, spec: FileSpec, staged: Path, verify: bool,
             options: DownloadOptions) -> None:
    """Fetch one archive from one source into `staged`, decompressed and checked, or not at all.

    The decompressed bytes go to a temporary file beside `staged`, removed whatever happens.
    """
    try:
        fd, name = tempfile.mkstemp(dir=staged.parent, prefix=f".{spec.name}.", suffix=".tmp")
    except OSError as exc:
        raise DigitrecError(f"{staged.parent}: cannot create a temporary file: "
                            f"{exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            transfer = Transfer(spec, verify, out, tmp)
            if source.startswith(("http://", "https://")):
                fetch_http_with_retries(source, transfer, options)
            else:
                copy_local(source, transfer, options)
            transfer.finish()
        make_shareable(tmp)
        os.replace(tmp, staged)
    finally:
        tmp.unlink(missing_ok=True)


class Transfer:
    """One archive from one mirror on its way to disk: decompressed as it arrives, hashed,
    and refused as soon as it breaks a bound (see `idx.GzipIdxStream`)."""

    def __init__(self, spec: FileSpec, verify: bool, out: BinaryIO, path: Path):
        self.spec = spec
        self.verify = verify
        self._out = out
        self._path = path
        self.restart()

    def restart(self) -> None:
        """Forget what arrived and start from the first byte (the mirror ignored our Range)."""
        self._out.seek(0)
        self._out.truncate()
        self._sha = hashlib.sha256()
        self._stream = idx.GzipIdxStream(
            self.spec.archive_name, self._write, ndim=self.spec.ndim,
            max_size=self.spec.size if self.verify else None, on_header=self._check_header,
        )

    @property
    def received(self) -> int:
        """Compressed bytes received so far; a resumed transfer continues from here."""
        return self._stream.compressed

    @property
    def max_compressed_size(self) -> int:
        return self._stream.max_compressed_size

    def feed(self, data: bytes) -> None:
        with _as_mirror_error():
            self._stream.feed(data)

    def finish(self) -> None:
        """Require a complete archive holding the whole file (and, verifying, its SHA-256)."""
        with _as_mirror_error():
            self._stream.finish()
        if self.verify:
            digest = self._sha.hexdigest()
            if digest != self.spec.sha256:
                raise MirrorError(
                    f"checksum mismatch: SHA-256 {digest}, expected {self.spec.sha256}"
                )

    def _check_header(self, header: idx.IdxHeader) -> None:
        """Verifying, refuse at once a header that promises another size than the catalog's."""
        if self.verify and header.file_size != self.spec.size:
            raise MirrorError(
                f"checksum mismatch: the IDX header says shape {header.shape} "
                f"({header.file_size} bytes), expected {self.spec.size} bytes"
            )

    def _write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except OSError as exc:
            raise DigitrecError(f"{self._path}: cannot write: {exc.strerror or exc}") from None
        self._sha.update(data)


@contextmanager
def _as_mirror_error() -> Iterator[None]:
    try:
        yield
    except idx.GzipError as exc:
        raise MirrorError(exc.problem) from None
    except idx.IdxError as exc:
        raise MirrorError(f"bad IDX: {exc.problem}") from None


def fetch_http_with_retries(url: str, transfer: Transfer, options: DownloadOptions) -> None:
    """Fetch `url` into `transfer`, retrying transient failures and resuming what arrived."""
    deadline_at = time.monotonic() + options.deadline
    for attempt in range(1, options.attempts + 1):
        try:
            fetch_http(url, transfer, options, deadline_at)
            return
        except TransientError as exc:
            if attempt == options.attempts:
                raise type(exc)(f"{exc} (gave up after {attempt} attempts)") from None
            pause = options.backoff * 2 ** (attempt - 1)
            if time.monotonic() + pause >= deadline_at:
                raise MirrorError(f"{exc}; the deadline of {options.deadline:g} s "
                                  f"(download.deadline) leaves no time to try again") from None
            time.sleep(pause)


def fetch_http(url: str, transfer: Transfer, options: DownloadOptions,
               deadline_at: float) -> None:
    """One HTTP attempt, continuing `transfer` with a Range request if bytes arrived already."""
    offset = transfer.received
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with Watchdog(deadline_at, options) as watchdog:
        timeout = max(0.001, min(options.timeout, watchdog.remaining()))
        try:
            response = _opener(watchdog).open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                transfer.restart()  # what we have does not fit the file any more: start over
                raise TransientError("HTTP 416 for a resumed transfer; restarting") from None
            message = f"HTTP {exc.code} {exc.reason}"
            raise (TransientError if exc.code in TRANSIENT_HTTP_CODES else MirrorError)(
                message
            ) from None
        except urllib.error.URLError as exc:
            watchdog.raise_if_tripped()
            raise UnreachableError(_network_reason(exc.reason)) from None
        except OSError as exc:
            watchdog.raise_if_tripped()
            raise UnreachableError(_network_reason(exc)) from None
        except http.client.HTTPException as exc:
            watchdog.raise_if_tripped()
            raise TransientError(_network_reason(exc)) from None
        with response:
            receive(response, transfer, offset, options, watchdog)


def receive(response: http.client.HTTPResponse, transfer: Transfer, offset: int,
            options: DownloadOptions, watchdog: Watchdog) -> None:
    """Feed the body to `transfer`, a chunk as soon as it arrives (`read1`), within bounds."""
    if response.status == 206:
        if not offset or _range_start(response) != offset:
            raise MirrorError(f"answered with the wrong part of the file (Content-Range "
                              f"{response.headers.get('Content-Range')!r}, asked from {offset})")
    elif transfer.received:
        transfer.restart()  # no Range support: the whole file comes again
    length = _content_length(response)
    total = transfer.received + length if length is not None else None
    if total is not None and total > transfer.max_compressed_size:
        raise MirrorError(f"announces {total} bytes, more than an archive of this file can "
                          f"take ({transfer.max_compressed_size} bytes)")
    watchdog.body_started(transfer.received)
    with _progress_bar(transfer.spec.archive_name, total, transfer.received, options) as bar:
        try:
            for chunk in iter(lambda: response.read1(CHUNK), b""):
                transfer.feed(chunk)
                bar.update(len(chunk))
                watchdog.progress(transfer.received)
        except (OSError, http.client.HTTPException) as exc:
            watchdog.raise_if_tripped()
            raise TransientError(
                f"transfer cut after {transfer.received} bytes: {_network_reason(exc)}"
            ) from None
    watchdog.raise_if_tripped()  # a cut connection also ends with an empty read
    if total is not None and transfer.received < total:
        raise TransientError(f"transfer cut after {transfer.received} of {total} bytes")


def copy_local(source: str, transfer: Transfer, options: DownloadOptions) -> None:
    """Read an archive from a local folder mirror, within the same bounds as a download."""
    path = Path(source)
    if not path.is_file():
        raise MirrorError("no such file")
    size = path.stat().st_size
    if size > transfer.max_compressed_size:
        raise MirrorError(f"is {size} bytes, more than an archive of this file can take "
                          f"({transfer.max_compressed_size} bytes)")
    with (
        Watchdog(time.monotonic() + options.deadline, options) as watchdog,
        _progress_bar(transfer.spec.archive_name, size, 0, options) as bar,
    ):
        watchdog.body_started(0)
        try:
            with open(path, "rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    transfer.feed(chunk)
                    bar.update(len(chunk))
                    watchdog.progress(transfer.received)
        except OSError as exc:
            raise MirrorError(f"cannot read: {exc.strerror or exc}") from None


class Watchdog:
    """Holds one attempt to the deadline and the minimum speed, even inside a blocked read.

    The reading thread checks both after every read. A read can block for long, though: a
    mirror that trickles its headers or a chunk-size line never lets a read return. So a
    thread checks too, a few times a second, and when a bound is broken it shuts the
    connection's socket down, which makes the blocked read return at once. It holds its own
    duplicate of each socket, taken as soon as the TCP connection stands: that one is
    never closed under it (so its descriptor is never another file's), and it reaches the
    connection also while a TLS handshake, which a mirror can trickle too, is under way.
    """

    def __init__(self, deadline_at: float, options: DownloadOptions):
        self.reason: str | None = None
        self._deadline_at = deadline_at
        self._deadline = options.deadline
        self._min_speed = options.min_speed
        self._window = options.stall_window
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # our duplicates, closed on exit
        self._window_start: float | None = None  # None until the body starts
        self._window_bytes = 0
        self._received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self._sockets:
            sock.close()

    def remaining(self) -> float:
        return self._deadline_at - time.monotonic()

    def watch(self, sock: socket.socket) -> socket.socket:
        """Keep a duplicate of a freshly connected socket, to cut it if a bound is broken."""
        with self._lock:
            self._sockets.append(sock.dup())
        if self.reason:
            self._cut()
        return sock

    def body_started(self, received: int) -> None:
        with self._lock:
            self._window_start = time.monotonic()
            self._window_bytes = self._received = received

    def progress(self, received: int) -> None:
        """Record the bytes received so far and raise MirrorError if a bound is broken."""
        with self._lock:
            self._received = received
        self.raise_if_tripped()

    def raise_if_tripped(self) -> None:
        reason = self._check()
        if reason:
            raise MirrorError(reason)

    def _check(self) -> str | None:
        with self._lock:
            if self.reason is None:
                self.reason = self._verdict(time.monotonic())
            return self.reason

    def _verdict(self, now: float) -> str | None:
        if now >= self._deadline_at:
            return f"took longer than the deadline of {self._deadline:g} s (download.deadline)"
        if self._min_speed <= 0 or self._window_start is None:
            return None
        elapsed = now - self._window_start
        if elapsed < self._window:
            return None
        got = self._received - self._window_bytes
        if got < self._min_speed * self._window:
            return (f"stalled: {got} byte{'' if got == 1 else 's'} in {elapsed:.1f} s, slower than "
                    f"{self._min_speed:g} bytes/s (download.min_speed)")
        self._window_start, self._window_bytes = now, self._received
        return None

    def _run(self) -> None:
        tick = min(0.25, self._window / 4)
        while not self._stop.wait(tick):
            if self._check():
                self._cut()
                return

    def _cut(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):  # not connected any more
                sock.shutdown(socket.SHUT_RDWR)  # for every descriptor of the connection


def _opener(watchdog: Watchdog) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections hand their sockets to `watchdog` as soon as the TCP
    connection stands (before any TLS handshake or header can trickle), and which refuses
    redirects to FTP, whose sockets it could not watch."""

    def watched(connection_class: type) -> type:
        class Watched(connection_class):
            def __init__(self, *args: object, **kwargs: object):
                super().__init__(*args, **kwargs)
                create = self._create_connection
                self._create_connection = lambda *a, **k: watchdog.watch(create(*a, **k))

        return Watched

    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    class NoFtp(urllib.request.FTPHandler):
        def ftp_open(self, req):
            raise MirrorError(f"redirected to {req.full_url}: FTP is not allowed for mirrors")

    return urllib.request.build_opener(Http, Https, NoFtp)


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


def _range_start(response: http.client.HTTPResponse) -> int | None:
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _network_reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__


def _progress_bar(name: str, total: int | None, initial: int, options: DownloadOptions) -> tqdm:
    disable = None if options.progress is None else not options.progress
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, disable=disable, file=sys.stderr, leave=False)
