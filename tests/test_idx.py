import gzip
import struct

import numpy as np
import pytest
from helpers import empty_deflate_blocks, gzip_stream

from digitrec.data import idx


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        (np.uint8, (5, 28, 28)),
        (np.uint8, (7,)),
        (np.int8, (3, 4)),
        (np.int16, (2, 3, 4, 5)),
        (np.int32, (6, 1)),
        (np.float32, (4, 2, 2)),
        (np.float64, (3,)),
        (np.uint8, (0, 28, 28)),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    idx.write_idx(path, array, compress=compress)
    back = idx.read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian_as_the_format_says(tmp_path):
    path = tmp_path / "labels"
    idx.write_idx(path, np.array([1, 2, 3], dtype=np.int32))
    raw = path.read_bytes()
    assert raw[:4] == b"\x00\x00\x0c\x01"
    assert struct.unpack(">I", raw[4:8]) == (3,)
    assert struct.unpack(">3i", raw[8:]) == (1, 2, 3)


def write(tmp_path, data: bytes, name="bad"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def good_bytes():
    return idx.encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (good_bytes()[:-1], "truncated"),
        (good_bytes()[:6], "truncated"),
        (b"\x00\x00", "truncated"),
        (good_bytes() + b"\x00\x00", "2 trailing bytes"),
        (b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"\x00", "unknown dtype code 0x0a"),
        (b"\x00\x00\x08\x00", "wrong number of dimensions: 0"),
        (b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number"),
        (gzip.compress(good_bytes(), mtime=0), "gzip-compressed"),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path, data, problem):
    path = write(tmp_path, data)
    with pytest.raises(idx.IdxError) as error:
        idx.read_idx(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_wrong_number_of_dimensions_for_the_caller(tmp_path):
    path = write(tmp_path, good_bytes())
    with pytest.raises(idx.IdxError, match="wrong number of dimensions: expected 3"):
        idx.read_idx(path, ndim=3)


def test_gz_name_that_is_not_gzip(tmp_path):
    path = write(tmp_path, good_bytes(), name="x-idx3-ubyte.gz")
    with pytest.raises(idx.IdxError, match="not gzip") as error:
        idx.read_idx(path)
    assert str(path) in str(error.value)


def test_corrupt_gzip(tmp_path):
    data = gzip.compress(good_bytes())
    path = write(tmp_path, data[:-8] + b"\xff" * 8, name="x.gz")
    with pytest.raises(idx.IdxError, match="corrupt gzip"):
        idx.read_idx(path)


def test_unsupported_dtype_is_refused_when_writing(tmp_path):
    with pytest.raises(idx.IdxError, match="cannot store dtype uint16"):
        idx.write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
    assert not (tmp_path / "x").exists()


def test_header_whose_size_overflows_64_bits_is_refused(tmp_path):
    # (2^22, 2^22, 2^20) bytes is 2^64: a 64-bit product wraps to 0 and a 16-byte file "fits".
    path = write(tmp_path, b"\x00\x00\x08\x03" + struct.pack(">3I", 1 << 22, 1 << 22, 1 << 20))
    with pytest.raises(idx.IdxError, match=r"18446744073709551616 bytes of data, more than "
                                           r"the 2 GiB an IDX file may hold"):
        idx.read_idx(path)


def test_largest_allowed_header_passes_and_one_byte_more_does_not():
    idx.parse_header(b"\x00\x00\x08\x01" + struct.pack(">I", idx.MAX_DATA_SIZE), "ok")
    with pytest.raises(idx.IdxError, match="more than the 2 GiB"):
        idx.parse_header(b"\x00\x00\x08\x01" + struct.pack(">I", idx.MAX_DATA_SIZE + 1), "big")


def stream_all(chunks, **bounds):
    """Feed `chunks` to a GzipIdxStream; return (bytes written, stream, error or None)."""
    written = bytearray()
    stream = idx.GzipIdxStream("x.gz", written.extend, **bounds)
    try:
        for chunk in chunks:
            stream.feed(chunk)
        stream.finish()
    except idx.IdxError as exc:
        return bytes(written), stream, exc
    return bytes(written), stream, None


def test_stream_fed_one_byte_at_a_time_gives_the_file():
    data = good_bytes()
    archive = gzip.compress(data)
    written, _, error = stream_all(archive[i:i + 1] for i in range(len(archive)))
    assert (written, error) == (data, None)


def test_multi_member_archive_with_zero_padding_reads_as_gzip_does(tmp_path):
    data = good_bytes()
    archive = gzip.compress(data[:7]) + b"\0" * 5 + gzip.compress(data[7:]) + b"\0" * 3
    assert gzip.decompress(archive) == data
    path = write(tmp_path, archive, name="multi.gz")
    np.testing.assert_array_equal(idx.read_idx(path), np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(("bounds", "limit", "problem"), [
    ({}, 16 + 300 * 784, "longer than its header declares"),
    ({"max_size": 5000}, 5000, "decompresses to more than 5000 bytes"),
])
def test_gzip_bomb_stops_at_its_bound_having_read_little(bounds, limit, problem):
    header = idx.encode_idx(np.zeros((300, 28, 28), dtype=np.uint8))[:16]
    written, stream, error = stream_all(gzip_stream(header, total=1 << 30), **bounds)
    assert problem in str(error)
    assert len(written) <= limit  # nothing past the bound ever reaches the disk
    assert stream.compressed < 64 << 10  # a 1 GiB bomb stopped after a few kB of it


def test_endless_empty_deflate_blocks_stop_at_the_compressed_bound():
    _, stream, error = stream_all(empty_deflate_blocks())
    assert isinstance(error, idx.GzipError)
    assert "compressed bytes, more than an archive of at most 1024 bytes" in str(error)
    assert stream.compressed <= idx.compressed_bound(idx.MAX_HEADER_SIZE) + 4096 * 5


def test_gzip_bomb_in_read_idx_is_bounded(tmp_path):
    header = idx.encode_idx(np.zeros((10, 28, 28), dtype=np.uint8))[:16]
    path = write(tmp_path, b"".join(gzip_stream(header, total=32 << 20)), name="bomb.gz")
    with pytest.raises(idx.IdxError, match="longer than its header declares"):
        idx.read_idx(path)
