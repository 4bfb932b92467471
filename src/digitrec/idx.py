"""The IDX file format used by MNIST and Fashion-MNIST, read and written in one place.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the data in C order, big-endian.
Files may be gzip-compressed; `read_idx` accepts both.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.files import atomic_write_bytes

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


class IdxError(DigitrecError):
    """A file that is not a well-formed IDX file."""


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
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def parse_header(head: bytes, name: str | os.PathLike) -> IdxHeader:
    """Decode the magic number and dimensions at the start of `head`."""
    if len(head) < 4:
        raise IdxError(f"{name}: truncated: {len(head)} bytes, too short for an IDX magic number")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if head[:2] == GZIP_MAGIC:
        raise IdxError(f"{name}: is gzip-compressed but was read as a plain IDX file")
    if zero != 0:
        raise IdxError(f"{name}: bad magic number 0x{head[:4].hex()}: not an IDX file")
    if code not in DTYPES:
        raise IdxError(f"{name}: unknown dtype code 0x{code:02x} in the magic number")
    if ndim == 0:
        raise IdxError(f"{name}: wrong number of dimensions: 0")
    needed = 4 + 4 * ndim
    if len(head) < needed:
        raise IdxError(
            f"{name}: truncated: header of {ndim} dimensions needs {needed} bytes, "
            f"file has {len(head)}"
        )
    shape = struct.unpack(f">{ndim}I", head[4:needed])
    return IdxHeader(DTYPES[code], tuple(int(d) for d in shape))


def check_size(header: IdxHeader, total_size: int, name: str | os.PathLike) -> None:
    """Require the file to hold exactly the data its header promises."""
    expected = header.header_size + header.data_size
    if total_size < expected:
        raise IdxError(
            f"{name}: truncated: header says shape {header.shape} ({expected} bytes), "
            f"file has {total_size} bytes"
        )
    if total_size > expected:
        raise IdxError(
            f"{name}: {total_size - expected} trailing bytes after the data for shape "
            f"{header.shape}"
        )


def _check_ndim(header: IdxHeader, ndim: int | None, name: str | os.PathLike) -> None:
    if ndim is not None and len(header.shape) != ndim:
        raise IdxError(
            f"{name}: wrong number of dimensions: expected {ndim}, "
            f"header says {len(header.shape)} (shape {header.shape})"
        )


def read_header(path: str | os.PathLike) -> IdxHeader:
    """Read and validate the header of a plain IDX file, including its exact length."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * MAX_DIMENSIONS)
    header = parse_header(head, path)
    check_size(header, path.stat().st_size, path)
    return header


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain, or gzip if the name ends in .gz) into a native-endian array.

    `ndim`, if given, is the number of dimensions the caller needs.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return decode_idx(_gunzip(path), path, ndim)
    header = read_header(path)
    _check_ndim(header, ndim, path)
    with open(path, "rb") as f:
        f.seek(header.header_size)
        data = np.fromfile(f, dtype=header.dtype, count=int(np.prod(header.shape)))
    return data.reshape(header.shape).astype(header.dtype.newbyteorder("="), copy=False)


def decode_idx(raw: bytes, name: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Decode the bytes of a whole IDX file; `name` is only used in error messages."""
    header = parse_header(raw[: 4 + 4 * MAX_DIMENSIONS], name)
    check_size(header, len(raw), name)
    _check_ndim(header, ndim, name)
    data = np.frombuffer(raw, dtype=header.dtype, offset=header.header_size)
    return data.reshape(header.shape).astype(header.dtype.newbyteorder("="))


def _gunzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        if f.read(2) != GZIP_MAGIC:
            raise IdxError(f"{path}: not gzip (no gzip magic bytes at the start)")
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise IdxError(f"{path}: corrupt gzip data: {exc}") from None


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
        raise IdxError(f"IDX cannot store dtype {array.dtype}; supported: {supported}")
    if not 1 <= array.ndim <= MAX_DIMENSIONS:
        raise IdxError(f"IDX needs 1 to {MAX_DIMENSIONS} dimensions, array has {array.ndim}")
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

