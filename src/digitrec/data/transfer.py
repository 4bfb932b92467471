"""One archive from one source, within bounds: the transfer under `download`.

An HTTP(S) mirror is read a chunk as soon as it arrives (`read1`), retried with backoff when
the failure is transient, and resumed with a Range request; a watchdog (`attempt.py`) holds
every attempt to a deadline and a minimum speed, also inside a blocked read. A local folder
is read the same way. Whatever arrives is decompressed and checked as it comes
(`idx.GzipIdxStream`), so a file that is longer than it can be stops there, and written to a
temporary file that is renamed into place only when complete. A mirror that breaks a bound
raises `MirrorError`, and `download` moves on to the next one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from digitrec import __version__
from digitrec.catalog import FileSpec
from digitrec.data import idx
from digitrec.data.attempt import (
    MirrorError,
    TransientError,
    UnreachableError,
    Watchdog,
    watched_opener,
)
from digitrec.data.credentials import CredentialsError, credentials
from digitrec.errors import DigitrecError
from digitrec.files import CHUNK, WriteError, disk_error_of, disk_message, make_shareable
from digitrec.params import DownloadParams

USER_AGENT = f"digitrec/{__version__} (+https://github.com/digitrec)"
TRANSIENT_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Retries:
    """How hard to try one mirror, beyond the time bounds of `download` in params.yaml.

    `attempts` and `backoff`: tries per mirror for transient failures and the first pause
    between them (it doubles). `timeout`: seconds one socket operation may block.
    `progress`: a bar on stderr (None: only when stderr is a terminal).
    """

    attempts: int = 3
    backoff: float = 1.0
    timeout: float = 30.0
    progress: bool | None = None


def fetch_to(source: str, spec: FileSpec, staged: Path, bounds: DownloadParams,
             retries: Retries) -> None:
    """Fetch one archive from one source into `staged`, decompressed and checked, or not at all.

    `bounds` is download's params section: whether to verify, and the time bounds.

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
            transfer = Transfer(spec, bounds.verify, out, tmp)
            if source.startswith(("http://", "https://")):
                fetch_http_with_retries(source, transfer, bounds, retries)
            else:
                copy_local(source, transfer, bounds, retries)
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
            if disk_error_of(exc) is None:
                raise DigitrecError(f"{self._path}: cannot write: {exc.strerror or exc}"
                                    ) from None
            with suppress(OSError):  # its space counts as free in the message once gone
                self._out.close()
            Path(self._path).unlink(missing_ok=True)
            raise WriteError(disk_message(Path(self._path).parent / self.spec.name, exc,
                                          self.spec.size)) from None
        if self.verify:  # the digest is only compared when verifying
            self._sha.update(data)


@contextmanager
def _as_mirror_error() -> Iterator[None]:
    try:
        yield
    except idx.GzipError as exc:
        raise MirrorError(exc.problem) from None
    except idx.IdxError as exc:
        raise MirrorError(f"bad IDX: {exc.problem}") from None


def fetch_http_with_retries(url: str, transfer: Transfer, bounds: DownloadParams,
                            retries: Retries) -> None:
    """Fetch `url` into `transfer`, retrying transient failures and resuming what arrived.

    Credentials in the URL or `.netrc` are used (`credentials.credentials`).
    """
    deadline_at = time.monotonic() + bounds.deadline
    try:
        url, authorization = credentials(url)
    except CredentialsError as exc:
        raise MirrorError(str(exc)) from None
    for attempt in range(1, retries.attempts + 1):
        try:
            fetch_http(url, transfer, bounds, retries, deadline_at, authorization)
            return
        except TransientError as exc:
            if attempt == retries.attempts:
                raise type(exc)(f"{exc} (gave up after {attempt} attempts)") from None
            pause = retries.backoff * 2 ** (attempt - 1)
            if time.monotonic() + pause >= deadline_at:
                raise MirrorError(f"{exc}; the deadline of {bounds.deadline:g} s "
                                  f"(download.deadline) leaves no time to try again") from None
            time.sleep(pause)


def fetch_http(url: str, transfer: Transfer, bounds: DownloadParams, retries: Retries,
               deadline_at: float, authorization: str | None = None) -> None:
    """One HTTP attempt, continuing `transfer` with a Range request if bytes arrived already.

    `authorization` (HTTP Basic) goes in an unredirected header: a redirect to another
    host never carries it.
    """
    offset = transfer.received
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    if authorization is not None:
        request.add_unredirected_header("Authorization", authorization)
    with Watchdog(deadline_at, bounds) as watchdog:
        timeout = max(0.001, min(retries.timeout, watchdog.remaining()))
        try:
            response = watched_opener(watchdog).open(request, timeout=timeout)
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
            receive(response, transfer, offset, retries.progress, watchdog)


def receive(response: http.client.HTTPResponse, transfer: Transfer, offset: int,
            progress: bool | None, watchdog: Watchdog) -> None:
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
    with _progress_bar(transfer.spec.archive_name, total, transfer.received, progress) as bar:
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


def copy_local(source: str, transfer: Transfer, bounds: DownloadParams,
               retries: Retries) -> None:
    """Read an archive from a local folder mirror, within the same bounds as a download."""
    path = Path(source)
    if not path.is_file():
        raise MirrorError("no such file")
    size = path.stat().st_size
    if size > transfer.max_compressed_size:
        raise MirrorError(f"is {size} bytes, more than an archive of this file can take "
                          f"({transfer.max_compressed_size} bytes)")
    with (
        Watchdog(time.monotonic() + bounds.deadline, bounds) as watchdog,
        _progress_bar(transfer.spec.archive_name, size, 0, retries.progress) as bar,
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


def _progress_bar(name: str, total: int | None, initial: int, progress: bool | None) -> tqdm:
    disable = None if progress is None else not progress
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, disable=disable, file=sys.stderr, leave=False)
