"""Fetch the four IDX archives from an ordered list of mirrors into `data/raw/`.

For each file: try the mirrors in order, retry transient failures with backoff, resume a
partial HTTP transfer with a Range request, decompress, verify the decompressed size and
SHA-256 (or, with `verify=False`, only the IDX structure), and rename into place. Nothing
partial or invalid is ever left under the final name.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from digitrec import idx
from digitrec.datasets import Dataset, FileSpec
from digitrec.errors import DigitrecError
from digitrec.files import CHUNK, atomic_path, sha256_file

OFFICIAL = "official"
USER_AGENT = "digitrec/0.1 (+https://github.com/digitrec)"
TRANSIENT_HTTP_CODES = {408, 425, 429, 500, 502, 503, 504}
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


@dataclass(frozen=True)
class DownloadOptions:
    """How hard to try: attempts per mirror, first backoff in seconds, socket timeout."""

    attempts: int = 3
    backoff: float = 1.0
    timeout: float = 30.0
    progress: bool | None = None  # None: a bar only when stderr is a terminal


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

    Raises DigitrecError naming every mirror tried and why it failed when any file could
    not be obtained; files that were obtained (or already valid) stay in place.
    """
    sources = expand_mirrors(mirrors, dataset)
    unreachable: dict[str, str] = {}
    outcome: dict[str, str] = {}
    failures: list[str] = []
    for spec in dataset.files:
        try:
            outcome[spec.name] = ensure_file(
                spec, sources, raw_dir, partial_dir, verify, options, unreachable
            )
        except DigitrecError as exc:
            failures.append(str(exc))
    if failures:
        if unreachable:
            failures.append(OFFLINE_HINT)
        raise DigitrecError("\n".join(failures))
    return outcome


def ensure_file(
    spec: FileSpec,
    mirrors: Sequence[str],
    raw_dir: Path,
    partial_dir: Path,
    verify: bool,
    options: DownloadOptions,
    unreachable: dict[str, str] | None = None,
) -> str:
    """Get one valid file into `raw_dir`, trying `mirrors` in order; return where it came from.

    `unreachable` maps mirrors whose host did not answer to the reason; they are not tried
    again for later files, so an offline run fails in seconds rather than minutes.
    """
    unreachable = {} if unreachable is None else unreachable
    target = raw_dir / spec.name
    if target.exists():
        try:
            check_file(target, spec, verify)
            return "already present"
        except MirrorError:
            target.unlink()  # invalid: never leave it where the next stage would read it
    reasons = []
    for mirror in mirrors:
        source = source_for(mirror, spec.archive_name)
        if mirror in unreachable:
            reasons.append(f"  - {source}: skipped, host did not answer for an earlier file")
            continue
        try:
            fetch_and_install(source, spec, target, partial_dir, verify, options)
            return f"fetched from {source}"
        except UnreachableError as exc:
            unreachable[mirror] = str(exc)
            reasons.append(f"  - {source}: {exc}")
        except MirrorError as exc:
            reasons.append(f"  - {source}: {exc}")
    raise DigitrecError(
        f"could not get {spec.archive_name} from any mirror:\n" + "\n".join(reasons)
    )


def fetch_and_install(
    source: str,
    spec: FileSpec,
    target: Path,
    partial_dir: Path,
    verify: bool,
    options: DownloadOptions,
) -> None:
    """Fetch one archive from one source and install its decompressed, checked content."""
    if source.startswith(("http://", "https://")):
        partial = partial_dir / f"{spec.archive_name}.{_short_hash(source)}.part"
        fetch_http_with_retries(source, partial, options)
    else:
        partial = partial_dir / f"{spec.archive_name}.local.part"
        copy_local(source, partial, options)
    try:
        install_archive(partial, spec, target, verify)
    finally:
        # Whether it verified or not, this partial has served its purpose: a bad archive
        # must not be resumed into again.
        partial.unlink(missing_ok=True)


def fetch_http_with_retries(url: str, partial: Path, options: DownloadOptions) -> None:
    """Fetch `url` into `partial`, retrying transient failures and resuming what arrived."""
    for attempt in range(1, options.attempts + 1):
        try:
            fetch_http(url, partial, options)
            return
        except TransientError as exc:
            if attempt == options.attempts:
                raise type(exc)(f"{exc} (gave up after {attempt} attempts)") from None
            time.sleep(options.backoff * 2 ** (attempt - 1))


def fetch_http(url: str, partial: Path, options: DownloadOptions) -> None:
    """One HTTP attempt: continue `partial` with a Range request if it holds bytes already."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=options.timeout
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            partial.unlink()  # our partial does not fit the file any more: start over
            raise TransientError("HTTP 416 for a resumed transfer; restarting") from None
        message = f"HTTP {exc.code} {exc.reason}"
        raise (TransientError if exc.code in TRANSIENT_HTTP_CODES else MirrorError)(
            message
        ) from None
    except urllib.error.URLError as exc:
        raise UnreachableError(_network_reason(exc.reason)) from None
    except (TimeoutError, ConnectionError) as exc:
        raise UnreachableError(_network_reason(exc)) from None
    except http.client.HTTPException as exc:
        raise TransientError(_network_reason(exc)) from None

    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with open(partial, "ab" if resumed else "wb") as out, _progress_bar(
            partial.name.split(".part")[0], total, offset, options
        ) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                raise TransientError(
                    f"transfer cut after {received} bytes: {_network_reason(exc)}"
                ) from None
    if total is not None and received < total:
        raise TransientError(f"transfer cut after {received} of {total} bytes")


def copy_local(source: str, partial: Path, options: DownloadOptions) -> None:
    """Copy an archive from a local folder mirror, with the same progress bar."""
    path = Path(source)
    if not path.is_file():
        raise MirrorError("no such file")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as src, open(partial, "wb") as out, _progress_bar(
        path.name, path.stat().st_size, 0, options
    ) as bar:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            out.write(chunk)
            bar.update(len(chunk))


def install_archive(archive: Path, spec: FileSpec, target: Path, verify: bool) -> None:
    """Decompress `archive` beside `target`, check it, and only then rename it into place."""
    with open(archive, "rb") as f:
        if f.read(2) != idx.GZIP_MAGIC:
            raise MirrorError("not gzip")
    with atomic_path(target) as tmp:
        try:
            with gzip.open(archive, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        except (OSError, EOFError, zlib.error) as exc:
            raise MirrorError(f"corrupt gzip data: {exc}") from None
        check_file(tmp, spec, verify)


def check_file(path: Path, spec: FileSpec, verify: bool) -> None:
    """Raise MirrorError unless `path` is the expected file (or, unverified, valid IDX)."""
    if verify:
        size = path.stat().st_size
        if size != spec.size:
            raise MirrorError(f"checksum mismatch: {size} bytes decompressed, expected {spec.size}")
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise MirrorError(f"checksum mismatch: SHA-256 {digest}, expected {spec.sha256}")
    try:
        header = idx.read_header(path)
    except idx.IdxError as exc:
        raise MirrorError(f"bad IDX: {str(exc).split(': ', 1)[-1]}") from None
    expected_ndim = expected_dimensions(spec.name)
    if len(header.shape) != expected_ndim:
        raise MirrorError(
            f"bad IDX: {len(header.shape)} dimensions, expected {expected_ndim} for {spec.name}"
        )


def expected_dimensions(name: str) -> int:
    """`train-images-idx3-ubyte` holds 3-dimensional data, `...-idx1-...` one-dimensional."""
    return int(name.split("-idx")[1][0])


def _range_start(response: http.client.HTTPResponse) -> int | None:
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _network_reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _progress_bar(name: str, total: int | None, initial: int, options: DownloadOptions) -> tqdm:
    disable = None if options.progress is None else not options.progress
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, disable=disable, file=sys.stderr, leave=False)
