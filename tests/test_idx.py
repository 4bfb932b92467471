import gzip
import struct

import numpy as np
import pytest

from digitrec import idx


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
        (gzip.compress(good_bytes()), "gzip-compressed"),
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
