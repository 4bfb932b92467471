"""The IDX file format used by MNIST and Fashion-MNIST, read and written in one place.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the data in C order, big-endian.
Files may be gzip-compressed; `read_idx` accepts both, and `GzipIdxStream` decompresses one
as its bytes arrive, never producing more than the header (or the caller) allows.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.files import CHUNK, atomic_write_bytes

DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
MAX_DIMENSIONS = 255
MAX_HEADER_SIZE = 4 + 4 * MAX_DIMENSIONS
# The most data one file may hold: over 40 times MNIST's largest file, and far below what a
# header's uint32 dimensions can claim (2^64 bytes with three), which nothing should try to hold.
MAX_DATA_SIZE = 2 << 30
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip wrapper and checks its CRC and length


class IdxError(DigitrecError):
    """A file that is not a well-formed IDX file; `problem` is the message without the name."""

    def __init__(self, name: str | os.PathLike, problem: str):
        super().__init__(name, problem)
        self.name = str(name)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}"


class GzipError(IdxError):
    """The compressed layer is bad: not gzip, corrupt, cut short, or expanding beyond a bound."""


@dataclass(frozen=True)
class IdxHeader:
    """What the first bytes of an IDX file promise about the rest."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_size(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def data_size(self) -> int:
        # Python ints: a product of uint32 dimensions must never wrap around to a small size.
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def file_size(self) -> int:
        return self.header_size + self.data_size


def parse_header(head: bytes, name: str | os.PathLike) -> IdxHeader:
    """Decode the magic number and dimensions at the start of `head`.

    Refuses a header that promises more than MAX_DATA_SIZE bytes of data, so that no caller
    ever reserves memory or disk for what a hostile header claims.
    """
    dtype, ndim = _parse_magic(head, name)
    needed = 4 + 4 * ndim
    if len(head) < needed:
        raise IdxError(
            name, f"truncated: header of {ndim} dimensions needs {needed} bytes, "
            f"file has {len(head)}"
        )
    shape = tuple(int(d) for d in struct.unpack(f">{ndim}I", head[4:needed]))
    header = IdxHeader(dtype, shape)
    if header.data_size > MAX_DATA_SIZE:
        raise IdxError(
            name, f"header says shape {shape}: {header.data_size} bytes of data, more than "
            f"the {MAX_DATA_SIZE >> 30} GiB an IDX file may hold here"
        )
    return header


def _parse_magic(head: bytes, name: str | os.PathLike) -> tuple[np.dtype, int]:
    """The dtype and number of dimensions from the first four bytes."""
    if len(head) < 4:
        raise IdxError(name, f"truncated: {len(head)} bytes, too short for an IDX magic number")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if head[:2] == GZIP_MAGIC:
        raise IdxError(name, "is gzip-compressed but was read as a plain IDX file")
    if zero != 0:
        raise IdxError(name, f"bad magic number 0x{head[:4].hex()}: not an IDX file")
    if code not in DTYPES:
        raise IdxError(name, f"unknown dtype code 0x{code:02x} in the magic number")
    if ndim == 0:
        raise IdxError(name, "wrong number of dimensions: 0")
    return DTYPES[code], ndim


def check_size(header: IdxHeader, total_size: int, name: str | os.PathLike) -> None:
    """Require the file to hold exactly the data its header promises."""
    expected = header.file_size
    if total_size < expected:
        raise IdxError(
            name, f"truncated: header says shape {header.shape} ({expected} bytes), "
            f"file has {total_size} bytes"
        )
    if total_size > expected:
        raise IdxError(
            name, f"{total_size - expected} trailing bytes after the data for shape "
            f"{header.shape}"
        )


def _check_ndim(header: IdxHeader, ndim: int | None, name: str | os.PathLike) -> None:
    if ndim is not None and len(header.shape) != ndim:
        raise IdxError(
            name, f"wrong number of dimensions: expected {ndim}, "
            f"header says {len(header.shape)} (shape {header.shape})"
        )


def read_header(path: str | os.PathLike) -> IdxHeader:
    """Read and validate the header of a plain IDX file, including its exact length."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER_SIZE)
        size = path.stat().st_size
    except FileNotFoundError:
        raise IdxError(path, "not found; run the download stage first") from None
    except OSError as exc:
        raise IdxError(path, f"cannot read: {exc.strerror or exc}") from None
    header = parse_header(head, path)
    check_size(header, size, path)
    return header


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain, or gzip if the name ends in .gz) into a native-endian array.

    `ndim`, if given, is the number of dimensions the caller needs.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return decode_idx(_gunzip(path, ndim), path, ndim)
    header = read_header(path)
    _check_ndim(header, ndim, path)
    with open(path, "rb") as f:
        f.seek(header.header_size)
        data = np.fromfile(f, dtype=header.dtype, count=math.prod(header.shape))
    return data.reshape(header.shape).astype(header.dtype.newbyteorder("="), copy=False)


def decode_idx(raw: bytes, name: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Decode the bytes of a whole IDX file; `name` is only used in error messages."""
    header = parse_header(raw[:MAX_HEADER_SIZE], name)
    check_size(header, len(raw), name)
    _check_ndim(header, ndim, name)
    data = np.frombuffer(raw, dtype=header.dtype, offset=header.header_size)
    return data.reshape(header.shape).astype(header.dtype.newbyteorder("="))


def _gunzip(path: Path, ndim: int | None) -> bytes:
    """Decompress a whole .gz IDX file, bounded by what its header declares."""
    data = bytearray()
    stream = GzipIdxStream(path, data.extend, ndim=ndim)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            stream.feed(chunk)
    stream.finish()
    return bytes(data)


def compressed_bound(size: int) -> int:
    """The most bytes a gzip archive of `size` decompressed bytes can take, generously.

    Stored or fixed-Huffman deflate blocks grow data by at most an eighth; 64 KiB covers the
    gzip header's optional name, comment and extra fields. Anything longer is not an honest
    archive of that file, so a transfer can stop there.
    """
    return size + size // 8 + (64 << 10)


class GzipIdxStream:
    """Decompress a gzip-compressed IDX file as its bytes arrive, within bounds.

    The decompressed size may not exceed `max_size` (when the caller knows the size, e.g. from
    a checksum catalog) nor, once the header has arrived, what the header declares; the
    compressed size may not exceed `compressed_bound` of that (before the header is known, of
    the largest header). Output goes to `write` at most CHUNK bytes at a time and never past
    the bound, so a gzip bomb or an endless body stops within a chunk of it, in little
    memory. Multi-member archives and zero padding between members are accepted, as `gzip`
    accepts them. Errors are GzipError (the compressed layer) or IdxError (the IDX layer).
    `on_header`, if given, sees the header as soon as it is parsed, before any data is
    written, and may refuse it by raising.
    """

    def __init__(self, name: str | os.PathLike, write: Callable[[bytes], object],
                 ndim: int | None = None, max_size: int | None = None,
                 on_header: Callable[[IdxHeader], object] | None = None):
        self.name = name
        self.header: IdxHeader | None = None
        self.compressed = 0  # bytes fed so far
        self.size = 0  # decompressed bytes written so far
        self._write = write
        self._ndim = ndim
        self._max_size = max_size
        self._on_header = on_header
        self._magic = bytearray()  # the first two compressed bytes
        self._head = bytearray()  # the first decompressed bytes, until the header is parsed
        self._member = zlib.decompressobj(GZIP_WBITS)

    @property
    def size_limit(self) -> int:
        """The most decompressed bytes the file may hold, from what is known so far."""
        limit = MAX_HEADER_SIZE + MAX_DATA_SIZE if self.header is None else self.header.file_size
        return limit if self._max_size is None else min(limit, self._max_size)

    @property
    def compressed_limit(self) -> int:
        """The most compressed bytes allowed, from what is known so far."""
        return compressed_bound(self._known_size())

    @property
    def max_compressed_size(self) -> int:
        """The most compressed bytes any file this stream accepts could take."""
        most = MAX_HEADER_SIZE + MAX_DATA_SIZE
        return compressed_bound(most if self._max_size is None else min(most, self._max_size))

    def feed(self, data: bytes) -> None:
        """Decompress `data`, the next bytes of the archive, and write what it holds."""
        if len(self._magic) < 2:
            self._magic += data[: 2 - len(self._magic)]
            if len(self._magic) == 2 and self._magic != GZIP_MAGIC:
                raise GzipError(self.name, f"not gzip (starts with {self._magic.hex()}, "
                                           f"not {GZIP_MAGIC.hex()})")
        self.compressed += len(data)
        self._decompress(data)
        if self.compressed > self.compressed_limit:
            raise GzipError(
                self.name, f"more than {self.compressed_limit} compressed bytes, more than "
                f"an archive of at most {self._known_size()} bytes can take; stopped reading"
            )

    def finish(self) -> IdxHeader:
        """Check that the archive ended properly and held exactly one whole IDX file."""
        if self.compressed < 2:
            raise GzipError(self.name, f"not gzip ({self.compressed} bytes)")
        if not self._member.eof:
            raise GzipError(self.name, "truncated gzip data: the archive ends before its "
                                       "end-of-stream marker")
        header = self.header or parse_header(bytes(self._head), self.name)
        check_size(header, self.size, self.name)
        return header

    def _decompress(self, data: bytes) -> None:
        pending, more = data, True
        while pending or more:
            if self._member.eof:  # another member may follow, after optional zero padding
                pending = pending.lstrip(b"\0")
                if not pending:
                    return
                self._member = zlib.decompressobj(GZIP_WBITS)
            room = min(CHUNK, self.size_limit - self.size + 1)  # >= 1: 0 would mean unlimited
            try:
                out = self._member.decompress(pending, room)
            except zlib.error as exc:
                raise GzipError(self.name, f"corrupt gzip data: {exc}") from None
            pending = self._member.unused_data if self._member.eof else self._member.unconsumed_tail
            more = len(out) == room  # cut at `room`: zlib may hold more output without new input
            if out:
                self._emit(out)

    def _emit(self, out: bytes) -> None:
        self.size += len(out)
        if self.header is None:
            self._head += out[: MAX_HEADER_SIZE - len(self._head)]
            self._parse_header_when_complete()
        if self.size > self.size_limit:
            raise self._too_long()
        self._write(out)

    def _parse_header_when_complete(self) -> None:
        if len(self._head) < 4:
            return
        _, ndim = _parse_magic(bytes(self._head), self.name)
        if len(self._head) < 4 + 4 * ndim:
            return
        self.header = parse_header(bytes(self._head), self.name)
        _check_ndim(self.header, self._ndim, self.name)
        if self._on_header is not None:
            self._on_header(self.header)

    def _known_size(self) -> int:
        """The bound on the decompressed size; before the header, only the header's size."""
        return self.size_limit if self.header else min(MAX_HEADER_SIZE, self.size_limit)

    def _too_long(self) -> IdxError:
        if self.header is not None and (self._max_size is None
                                        or self.header.file_size <= self._max_size):
            return IdxError(
                self.name, f"longer than its header declares: more than {self.header.file_size} "
                f"bytes for shape {self.header.shape}; stopped reading"
            )
        return GzipError(
            self.name, f"decompresses to more than {self.size_limit} bytes, the size this file "
            f"must have (a gzip bomb, or another file); stopped reading"
        )


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as the bytes of an IDX file."""
    array = np.asarray(array)
    code = next(
        (c for c, dt in DTYPES.items() if dt.kind == array.dtype.kind
         and dt.itemsize == array.dtype.itemsize),
        None,
    )
    if code is None:
        supported = ", ".join(str(dt.newbyteorder("=")) for dt in DTYPES.values())
        raise IdxError("array", f"IDX cannot store dtype {array.dtype}; supported: {supported}")
    if not 1 <= array.ndim <= MAX_DIMENSIONS:
        raise IdxError("array",
                       f"IDX needs 1 to {MAX_DIMENSIONS} dimensions, array has {array.ndim}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write `array` as an IDX file (gzip if `compress`), atomically: all or nothing."""
    data = encode_idx(array)
    if compress:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(Path(path), data)

