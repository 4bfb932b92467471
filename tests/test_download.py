import gzip
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    dataset_for,
    folder_digest,
    gzip_bytes,
    synthetic_dataset_arrays,
    write_archives,
    write_raw,
)

from digitrec import idx
from digitrec.datasets import TRAIN_IMAGES, TRAIN_LABELS
from digitrec.download import DownloadOptions, download
from digitrec.errors import DigitrecError

ROOT = Path(__file__).resolve().parents[1]

FAST = DownloadOptions(attempts=3, backoff=0.01, timeout=5, progress=False)


@pytest.fixture
def arrays():
    return synthetic_dataset_arrays(n_train=300, n_test=50)


@pytest.fixture
def dataset(arrays):
    return dataset_for(arrays)


def fetch(dataset, mirrors, tmp_path, verify=True):
    return download(dataset, mirrors, tmp_path / "raw", tmp_path / "partial", verify, FAST)


def assert_raw_matches(tmp_path, arrays):
    for name, array in arrays.items():
        assert (idx.read_idx(tmp_path / "raw" / name) == array).all()


def test_happy_path_verifies_and_decompresses(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "mnist", arrays)
    outcome = fetch(dataset, [mirror.url("mnist/")], tmp_path)
    assert sorted(outcome) == sorted(arrays)
    assert all(how.startswith("fetched from http://127.0.0.1") for how in outcome.values())
    assert_raw_matches(tmp_path, arrays)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(arrays)


def test_recompressed_copy_still_verifies(tmp_path, mirror, arrays, dataset):
    folder = mirror.root / "other"
    folder.mkdir()
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx.encode_idx(array), 1, mtime=123))
    fetch(dataset, [mirror.url("other")], tmp_path)
    assert_raw_matches(tmp_path, arrays)


def test_first_mirror_404_so_second_is_used(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "good", arrays)
    outcome = fetch(dataset, [mirror.url("gone/"), mirror.url("good/")], tmp_path)
    assert all("/good/" in how for how in outcome.values())
    assert sum(path.startswith("/gone/") for path in mirror.paths_requested()) == 4
    assert_raw_matches(tmp_path, arrays)


def test_corrupt_and_wrong_checksum_mirrors_are_skipped(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "good", arrays)
    (mirror.root / "notgzip").mkdir()
    (mirror.root / "wrongsum").mkdir()
    (mirror.root / "truncgz").mkdir()
    other = synthetic_dataset_arrays(n_train=300, n_test=50, seed=7)
    for name in arrays:
        (mirror.root / "notgzip" / f"{name}.gz").write_bytes(b"<html>not an archive</html>")
        (mirror.root / "wrongsum" / f"{name}.gz").write_bytes(
            gzip_bytes(idx.encode_idx(other[name])))
        (mirror.root / "truncgz" / f"{name}.gz").write_bytes(
            gzip_bytes(idx.encode_idx(arrays[name]))[:-20])
    mirrors = [mirror.url(p + "/") for p in ("notgzip", "wrongsum", "truncgz", "good")]
    outcome = fetch(dataset, mirrors, tmp_path)
    assert all("/good/" in how for how in outcome.values())
    assert_raw_matches(tmp_path, arrays)
    assert list((tmp_path / "partial").iterdir()) == []


def test_interrupted_transfer_is_resumed_with_range(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root, arrays)
    path = f"/{TRAIN_IMAGES}.gz"
    size = (mirror.root / f"{TRAIN_IMAGES}.gz").stat().st_size
    mirror.cut_once[path] = size // 2
    fetch(dataset, [mirror.url()], tmp_path)
    ranges = [rng for p, rng in mirror.requests if p == path]
    assert ranges == [None, f"bytes={size // 2}-"]
    assert_raw_matches(tmp_path, arrays)


def test_server_without_range_support_restarts_the_transfer(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root, arrays)
    mirror.ranges = False
    mirror.cut_once[f"/{TRAIN_IMAGES}.gz"] = 100
    fetch(dataset, [mirror.url()], tmp_path)
    assert_raw_matches(tmp_path, arrays)


def test_valid_files_are_not_fetched_twice(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root, arrays)
    fetch(dataset, [mirror.url()], tmp_path)
    requests_after_first = len(mirror.requests)
    outcome = fetch(dataset, [mirror.url()], tmp_path)
    assert len(mirror.requests) == requests_after_first
    assert set(outcome.values()) == {"already present"}


def test_total_failure_names_every_mirror_and_leaves_raw_as_it_was(tmp_path, mirror, arrays,
                                                                   dataset):
    write_raw(tmp_path / "raw", {TRAIN_LABELS: arrays[TRAIN_LABELS]})
    before = folder_digest(tmp_path / "raw")
    (mirror.root / "bad").mkdir()
    for name in arrays:
        (mirror.root / "bad" / f"{name}.gz").write_bytes(b"garbage")
    mirrors = [mirror.url("gone/"), mirror.url("bad/"), str(tmp_path / "no-such-folder")]
    with pytest.raises(DigitrecError) as error:
        fetch(dataset, mirrors, tmp_path)
    message = str(error.value)
    assert f"could not get {TRAIN_IMAGES}.gz from any mirror" in message
    assert f"{mirror.url('gone/')}{TRAIN_IMAGES}.gz: HTTP 404" in message
    assert f"{mirror.url('bad/')}{TRAIN_IMAGES}.gz: not gzip" in message
    assert f"no-such-folder/{TRAIN_IMAGES}.gz: no such file" in message
    assert TRAIN_LABELS + ".gz" not in message  # it was there already, and valid
    assert folder_digest(tmp_path / "raw") == before


def test_invalid_existing_file_is_replaced(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root, arrays)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / TRAIN_LABELS).write_bytes(b"\x00\x00\x08\x01junk")
    fetch(dataset, [mirror.url()], tmp_path)
    assert_raw_matches(tmp_path, arrays)


def test_timeout_is_reported(tmp_path, arrays, dataset):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts the connection but never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    options = DownloadOptions(attempts=2, backoff=0.01, timeout=0.3, progress=False)
    try:
        with pytest.raises(DigitrecError, match="timed out \\(gave up after 2 attempts\\)"):
            download(dataset, [url], tmp_path / "raw", tmp_path / "partial", True, options)
    finally:
        listener.close()


@pytest.mark.parametrize("form", ["folder", "file_url"])
def test_local_mirrors(tmp_path, arrays, dataset, form):
    write_archives(tmp_path / "archives", arrays)
    mirror = str(tmp_path / "archives")
    if form == "file_url":
        mirror = (tmp_path / "archives").as_uri()
    fetch(dataset, [mirror], tmp_path)
    assert_raw_matches(tmp_path, arrays)


def test_unverified_subset_still_needs_valid_idx(tmp_path, mirror, arrays, dataset):
    subset = {name: array[: len(array) // 2] for name, array in arrays.items()}
    write_archives(mirror.root / "subset", subset)
    with pytest.raises(DigitrecError, match="checksum mismatch"):
        fetch(dataset, [mirror.url("subset/")], tmp_path, verify=True)
    fetch(dataset, [mirror.url("subset/")], tmp_path, verify=False)
    assert_raw_matches(tmp_path, subset)

    (mirror.root / "broken").mkdir()
    for name, array in arrays.items():
        (mirror.root / "broken" / f"{name}.gz").write_bytes(gzip_bytes(idx.encode_idx(array)[:-1]))
    with pytest.raises(DigitrecError, match="bad IDX: truncated"):
        fetch(dataset, [mirror.url("broken/")], tmp_path / "second", verify=False)


def test_stage_failure_is_one_message_without_traceback(tmp_path, mirror):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["download"]["mirrors"] = [mirror.url("nothing/")]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "download.py")], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: could not get train-images-idx3-ubyte.gz")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw").exists() or not any((tmp_path / "data/raw").iterdir())
