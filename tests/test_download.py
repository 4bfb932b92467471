import gzip
import itertools
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    MirrorServer,
    Reply,
    committed_params_text,
    dataset_for,
    empty_deflate_blocks,
    folder_digest,
    gzip_bytes,
    gzip_stream,
    pieces,
    self_signed_certificate,
    synthetic_dataset_arrays,
    synthetic_digits,
    wait_for,
    write_archives,
    write_raw,
)

import digitrec
from digitrec.catalog import TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from digitrec.data import idx
from digitrec.data.download import download
from digitrec.data.transfer import Retries
from digitrec.errors import DigitrecError
from digitrec.params import DownloadParams

ROOT = Path(__file__).resolve().parents[1]

FAST = Retries(attempts=3, backoff=0.01, timeout=5, progress=False)
# Tiny bounds, so that every hostile case below fails within about two seconds.
TIGHT = Retries(attempts=2, backoff=0.01, timeout=2, progress=False)
TIGHT_BOUNDS = {"deadline": 2.0, "min_speed": 100.0, "stall_window": 0.5}


def sources(mirrors, verify=True, tight=False) -> DownloadParams:
    """download's params section with these mirrors (and, `tight`, tiny time bounds)."""
    return DownloadParams(mirrors=tuple(mirrors), verify=verify,
                          **(TIGHT_BOUNDS if tight else {}))


@pytest.fixture
def arrays():
    return synthetic_dataset_arrays(n_train=300, n_test=50)


@pytest.fixture
def dataset(arrays):
    return dataset_for(arrays)


def fetch(dataset, mirrors, tmp_path, verify=True):
    return download(dataset, sources(mirrors, verify), tmp_path / "raw", tmp_path / "partial",
                    FAST)


def assert_raw_matches(tmp_path, arrays):
    for name, array in arrays.items():
        assert (idx.read_idx(tmp_path / "raw" / name) == array).all()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(arrays)


def scratch_left(partial_dir):
    """What a run left in its scratch folder, besides the lock file and the staging folder."""
    return sorted(str(p.relative_to(partial_dir)) for p in partial_dir.rglob("*")
                  if p.name != ".lock" and p != partial_dir / "staging")


def header_of(array):
    return idx.encode_idx(array)[: 4 + 4 * array.ndim]


def archive_of(array):
    return gzip_bytes(idx.encode_idx(array))


def test_happy_path_verifies_and_decompresses(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "mnist", arrays)
    outcome = fetch(dataset, [mirror.url("mnist/")], tmp_path)
    assert sorted(outcome) == sorted(arrays)
    assert all(how.startswith("fetched from http://127.0.0.1") for how in outcome.values())
    assert_raw_matches(tmp_path, arrays)
    assert scratch_left(tmp_path / "partial") == []
    assert mirror.user_agents == {f"digitrec/{digitrec.__version__} (+https://github.com/digitrec)"}


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


# uint8 data of shape (2^22, 2^22, 2^20): 2^64 bytes, which a 64-bit product wraps to 0.
OVERFLOW_HEADER = b"\x00\x00\x08\x03" + struct.pack(">3I", 1 << 22, 1 << 22, 1 << 20)

LONGER_THAN_HEADER = (r"bad IDX: longer than its header declares: "
                      r"more than \d+ bytes for shape \(300, 28, 28\)")

# Hostile mirrors: what the first mirror serves for train-images (its other files are
# missing), whether checksums are verified, and how the failure must be reported. In every
# case the download moves on to the second, good mirror and leaves no scratch behind.
HOSTILE = [
    pytest.param(lambda a: b"<html>not an archive</html>", True, "not gzip", id="not-gzip"),
    pytest.param(lambda a: archive_of(synthetic_digits(300, seed=7)[0]), True,
                 "checksum mismatch: SHA-256", id="wrong-checksum"),
    pytest.param(lambda a: archive_of(a[TRAIN_IMAGES])[:-20], True, "truncated gzip data",
                 id="truncated-gzip"),
    pytest.param(lambda a: archive_of(a[TRAIN_IMAGES])[:-8] + b"\xff" * 8, True,
                 "corrupt gzip data: .*incorrect data check", id="corrupt-gzip"),
    pytest.param(lambda a: archive_of(a[TRAIN_LABELS]), False,
                 r"bad IDX: wrong number of dimensions: expected 3, header says 1",
                 id="labels-where-images-belong"),
    pytest.param(lambda a: gzip_bytes(OVERFLOW_HEADER), False,
                 r"bad IDX: header says shape \(4194304, 4194304, 1048576\): "
                 r"18446744073709551616 bytes of data, more than the 2 GiB",
                 id="idx-size-overflow"),
    pytest.param(lambda a: Reply(lambda: gzip_stream(header_of(a[TRAIN_IMAGES]))), True,
                 LONGER_THAN_HEADER,
                 id="endless-body-verified"),
    pytest.param(lambda a: Reply(lambda: gzip_stream(header_of(a[TRAIN_IMAGES]))), False,
                 LONGER_THAN_HEADER,
                 id="endless-body-unverified"),
    pytest.param(lambda a: Reply(lambda: gzip_stream(header_of(a[TRAIN_IMAGES]), 10 << 30)),
                 False, r"bad IDX: longer than its header declares", id="gzip-bomb-10GiB"),
    pytest.param(lambda a: Reply(lambda: gzip_stream(
        header_of(a[TRAIN_IMAGES])[:4] + struct.pack(">3I", 2_000_000, 28, 28), 10 << 30)),
                 True, r"checksum mismatch: the IDX header says shape \(2000000, 28, 28\)",
                 id="gzip-bomb-lying-header"),
    pytest.param(lambda a: Reply(empty_deflate_blocks), False,
                 r"more than \d+ compressed bytes, more than an archive of at most 1024 bytes",
                 id="endless-empty-deflate-blocks"),
    pytest.param(lambda a: Reply(pieces(archive_of(a[TRAIN_IMAGES]), 65536), length=10**12),
                 True, r"announces 1000000000000 bytes, more than an archive of this file",
                 id="huge-content-length"),
    pytest.param(lambda a: Reply(lambda: [], status="302 Found",
                                 headers={"Location": "file:///etc/passwd"}),
                 True, r"HTTP 302 Found - Redirection to url 'file:///etc/passwd' is not allowed",
                 id="redirect-to-a-local-file"),
    pytest.param(lambda a: Reply(lambda: [], status="302 Found",
                                 headers={"Location": "ftp://127.0.0.1/x.gz"}),
                 True, r"redirected to ftp://127.0.0.1/x.gz: FTP is not allowed for mirrors",
                 id="redirect-to-ftp"),
    pytest.param(lambda a: Reply(pieces(archive_of(a[TRAIN_IMAGES]), 1), pause=0.05), True,
                 r"stalled: \d+ bytes in \d+\.\d s, slower than 100 bytes/s", id="trickle"),
    pytest.param(lambda a: Reply(lambda: itertools.repeat(b""), pause=0.1), True,
                 r"stalled: 0 bytes", id="silent-after-headers"),
    pytest.param(lambda a: Reply(pieces(archive_of(a[TRAIN_IMAGES]), 65536), pause=0.2,
                                 trickle_head=True),
                 True, r"took longer than the deadline of 2 s", id="trickled-headers"),
    pytest.param(lambda a: Reply(pieces(archive_of(a[TRAIN_IMAGES]), 2000), pause=0.1), True,
                 r"took longer than the deadline of 2 s", id="steady-but-too-slow"),
]


@pytest.mark.parametrize(("serve", "verify", "expected"), HOSTILE)
def test_hostile_mirror_is_named_and_the_next_one_used(tmp_path, mirror, arrays, dataset,
                                                       capsys, serve, verify, expected):
    assert len(archive_of(arrays[TRAIN_IMAGES])) > 100_000  # too big for 2 s at 20 kB/s
    write_archives(mirror.root / "good", arrays)
    hostile = serve(arrays)
    if isinstance(hostile, Reply):
        mirror.replies[f"/bad/{TRAIN_IMAGES}.gz"] = hostile
    else:
        (mirror.root / "bad").mkdir()
        (mirror.root / "bad" / f"{TRAIN_IMAGES}.gz").write_bytes(hostile)
    bad, good = mirror.url("bad/"), mirror.url("good/")
    outcome = download(dataset, sources([bad, good], verify, tight=True), tmp_path / "raw",
                       tmp_path / "partial", TIGHT)
    assert outcome[TRAIN_IMAGES] == f"fetched from {good}{TRAIN_IMAGES}.gz"
    if isinstance(hostile, Reply) and hostile.trickle_head:
        assert f"/bad/{TRAIN_IMAGES}.gz" not in mirror.sent  # cut before the headers ended
    warnings = capsys.readouterr().err
    assert re.search(f"used the next mirror after {re.escape(bad)}{TRAIN_IMAGES}.gz: {expected}",
                     warnings), warnings
    assert_raw_matches(tmp_path, arrays)
    assert scratch_left(tmp_path / "partial") == []


@pytest.mark.parametrize(("hostile", "expected"), [
    pytest.param(None, None, id="good"),
    pytest.param(Reply(lambda: itertools.repeat(b""), pause=0.1), "stalled: 0 bytes",
                 id="silent-after-headers"),
    pytest.param(Reply(lambda: iter([b""]), pause=0.2, trickle_head=True),
                 "took longer than the deadline of 2 s", id="trickled-headers"),
])
def test_https_mirror_is_verified_and_watched_too(tmp_path, monkeypatch, arrays, dataset,
                                                  capsys, hostile, expected):
    pytest.importorskip("cryptography")
    (tmp_path / "tls").mkdir()
    certificate, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # the client trusts this one only
    server = MirrorServer(tmp_path / "tls", tls=(certificate, key))
    try:
        write_archives(server.root / "good", arrays)
        if hostile is not None:
            server.replies[f"/bad/{TRAIN_IMAGES}.gz"] = hostile
        outcome = download(dataset, sources([server.url("bad/"), server.url("good/")], True,
                                            tight=True),
                           tmp_path / "raw", tmp_path / "partial", TIGHT)
    finally:
        server.close()
    assert outcome[TRAIN_IMAGES] == f"fetched from {server.url('good/')}{TRAIN_IMAGES}.gz"
    if hostile is not None and hostile.trickle_head:
        assert f"/bad/{TRAIN_IMAGES}.gz" not in server.sent  # cut before the headers ended
    warning = capsys.readouterr().err.splitlines()[0]
    assert (expected or "HTTP 404 Not Found") in warning, warning
    assert_raw_matches(tmp_path, arrays)


def test_redirect_to_another_http_place_is_followed(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "good", arrays)
    for name in arrays:
        mirror.replies[f"/moved/{name}.gz"] = Reply(
            lambda: [], status="301 Moved Permanently",
            headers={"Location": f"{mirror.url('good/')}{name}.gz"})
    outcome = download(dataset, sources([mirror.url("moved/")], True, tight=True),
                       tmp_path / "raw", tmp_path / "partial", TIGHT)
    assert all("/moved/" in how for how in outcome.values())
    assert_raw_matches(tmp_path, arrays)


def test_a_gzip_bomb_in_a_local_folder_is_bounded_too(tmp_path, arrays, dataset):
    folder = tmp_path / "archives"
    write_archives(folder, arrays)
    bomb = b"".join(gzip_stream(header_of(arrays[TRAIN_IMAGES]), 64 << 20))
    (folder / f"{TRAIN_IMAGES}.gz").write_bytes(bomb)
    with pytest.raises(DigitrecError, match="longer than its header declares"):
        fetch(dataset, [str(folder)], tmp_path)
    assert not (tmp_path / "raw").exists()
    # no temporary file; the three good files wait, verified, for the next run
    assert scratch_left(tmp_path / "partial") == sorted(
        f"staging/{name}" for name in arrays if name != TRAIN_IMAGES)


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


def test_failed_switch_keeps_every_old_file_and_never_mixes(tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root / "a", arrays)
    fetch(dataset, [mirror.url("a/")], tmp_path)
    before = folder_digest(tmp_path / "raw")
    other = synthetic_dataset_arrays(n_train=300, n_test=50, seed=7)
    write_archives(mirror.root / "b", {k: v for k, v in other.items() if k != TEST_LABELS})
    with pytest.raises(DigitrecError, match=f"could not get {TEST_LABELS}.gz"):
        fetch(dataset_for(other), [mirror.url("b/")], tmp_path)
    assert folder_digest(tmp_path / "raw") == before  # not three new files and one old

    write_archives(mirror.root / "b", other)  # the mirror is complete again
    requests = len(mirror.requests)
    outcome = fetch(dataset_for(other), [mirror.url("b/")], tmp_path)
    assert mirror.paths_requested()[requests:] == [f"/b/{TEST_LABELS}.gz"]
    assert {how for name, how in outcome.items() if name != TEST_LABELS} == {
        "fetched by an earlier run, verified again"}
    assert_raw_matches(tmp_path, other)
    assert scratch_left(tmp_path / "partial") == []


def test_unverified_files_present_are_fetched_again(tmp_path, mirror, arrays, dataset):
    first = {name: array[: len(array) // 2] for name, array in arrays.items()}
    second = {name: array[len(array) // 2:] for name, array in arrays.items()}
    write_archives(mirror.root / "one", first)
    write_archives(mirror.root / "two", second)
    fetch(dataset, [mirror.url("one/")], tmp_path, verify=False)
    outcome = fetch(dataset, [mirror.url("two/")], tmp_path, verify=False)
    assert all("/two/" in how for how in outcome.values())
    assert_raw_matches(tmp_path, second)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_killed_download_then_the_next_run_cleans_up(tmp_path, mirror, arrays, sig):
    path = f"/slow/{TRAIN_IMAGES}.gz"
    mirror.replies[path] = Reply(pieces(archive_of(arrays[TRAIN_IMAGES]), 1000), pause=0.05)
    # The other three are there, so the run cannot end (on their 404s) before the signal.
    write_archives(mirror.root / "slow",
                   {name: array for name, array in arrays.items() if name != TRAIN_IMAGES})
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load(committed_params_text())
    params["download"].update(mirrors=[mirror.url("slow/")], verify=False, min_speed=0)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # As from a terminal: SIGINT at its default, which Python turns into KeyboardInterrupt,
    # even when pytest itself runs with it ignored (a shell's background job, an xdist worker).
    process = subprocess.Popen([sys.executable, str(ROOT / "stages" / "download.py")],
                               cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=default_sigint)
    try:
        wait_for(lambda: mirror.sent.get(path, 0) >= 5000 or process.poll() is not None,
                 "the download to be under way")
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    scratch, raw = project / "data" / "downloads", project / "data" / "raw"
    if sig != signal.SIGKILL:
        assert (process.returncode, "Traceback" in stderr) == (130, False), stderr
        assert "interrupted" in stderr
        assert scratch_left(scratch) == []
    else:
        assert scratch_left(scratch) != []  # kill -9 leaves its temporary file...
    assert not raw.exists()

    raw.mkdir(parents=True)  # ... and older versions left theirs inside data/raw/
    (raw / f".{TRAIN_IMAGES}.k2j4x9.tmp").write_bytes(b"\0" * 1000)
    (scratch / f"{TRAIN_IMAGES}.gz.0123abcd.part").write_bytes(b"\0" * 1000)
    write_archives(mirror.root / "good", arrays)
    download(dataset_for(arrays), sources([mirror.url("good/")], False), raw, scratch, FAST)
    assert scratch_left(scratch) == []  # ...which the next run removes first
    assert sorted(p.name for p in raw.iterdir()) == sorted(arrays)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_second_download_at_the_same_time_is_refused(tmp_path, arrays, dataset):
    fcntl = pytest.importorskip("fcntl")
    write_archives(tmp_path / "archives", arrays)
    (tmp_path / "partial").mkdir()
    with open(tmp_path / "partial" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DigitrecError, match="another download is running in this project"):
            fetch(dataset, [str(tmp_path / "archives")], tmp_path)
    assert not (tmp_path / "raw").exists()


def test_unusable_scratch_folder_is_one_clear_error(tmp_path, arrays, dataset):
    write_archives(tmp_path / "archives", arrays)
    (tmp_path / "partial").write_text("a file where the scratch folder belongs")
    with pytest.raises(DigitrecError, match="partial/.lock: cannot create"):
        fetch(dataset, [str(tmp_path / "archives")], tmp_path)


def test_timeout_is_reported(tmp_path, arrays, dataset):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts the connection but never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    options = Retries(attempts=2, backoff=0.01, timeout=0.3, progress=False)
    try:
        with pytest.raises(DigitrecError, match="timed out \\(gave up after 2 attempts\\)"):
            download(dataset, sources([url], True), tmp_path / "raw", tmp_path / "partial",
                     options)
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
    params = yaml.safe_load(committed_params_text())
    params["download"]["mirrors"] = [mirror.url("nothing/")]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "download.py")], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: could not get train-images-idx3-ubyte.gz")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw").exists()  # nothing half-made where data goes


@pytest.mark.slow
def test_dvc_repro_failed_download_keeps_data_raw(project, mirror):
    write_archives(mirror.root / "good", synthetic_dataset_arrays(n_train=300, n_test=60))
    project.set_params(download={"mirrors": [mirror.url("good/")], "verify": False})
    project.dvc("repro", "download")
    raw = project.root / "data" / "raw"
    before = folder_digest(raw)
    assert len(before) == 4

    project.set_params(download={"mirrors": [mirror.url("gone/")]})
    failed = project.dvc("repro", "download", check=False)
    assert failed.returncode != 0
    assert f"{mirror.url('gone/')}{TRAIN_IMAGES}.gz: HTTP 404" in failed.stdout + failed.stderr
    assert folder_digest(raw) == before  # DVC did not delete it, and the stage kept it

    project.set_params(download={"mirrors": [mirror.url("good/")]})
    assert "up to date" in project.dvc("status", "download").stdout  # still what dvc.lock says


# --- a mirror that needs a password: used, never shown ----------------------------------------

BASIC = "Basic " + __import__("base64").b64encode(b"reader:s3cr3t/+%@x").decode()


def test_credentials_in_the_url_are_sent_and_never_shown(tmp_path, mirror, arrays, dataset,
                                                         capsys):
    write_archives(mirror.root / "private", arrays)
    mirror.auth = BASIC
    base = mirror.url("private/").replace("http://", "http://reader:s3cr3t%2F%2B%25%40x@")
    wrong = base.replace("s3cr3t", "wrong-s3cr3t")
    outcome = fetch(dataset, [wrong, base], tmp_path)
    assert_raw_matches(tmp_path, arrays)
    assert mirror.authorizations.count(BASIC) == 4  # every file, with the header
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "reader:***@127.0.0.1" in err
    assert "holds a password, which DVC records in dvc.lock" in err
    assert "s3cr3t" not in err + repr(outcome)
    mirror.missing.add(f"/private/{TRAIN_IMAGES}.gz")
    (tmp_path / "raw" / TRAIN_IMAGES).unlink()
    with pytest.raises(DigitrecError) as failed:
        fetch(dataset, [base], tmp_path)
    assert "reader:***@" in str(failed.value) and "s3cr3t" not in str(failed.value)


def test_credentials_from_netrc_or_the_environment(tmp_path, mirror, arrays, dataset,
                                                   monkeypatch, capsys):
    write_archives(mirror.root / "private", arrays)
    mirror.auth = BASIC
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\n  login reader\n  password s3cr3t/+%@x\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fetch(dataset, [mirror.url("private/")], tmp_path)
    assert_raw_matches(tmp_path, arrays)
    assert mirror.authorizations == [BASIC] * 4
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("MIRROR_TOKEN", "s3cr3t/+%@x")
    with_variable = mirror.url("private/").replace("http://", "http://reader:${MIRROR_TOKEN}@")
    for name in arrays:
        (tmp_path / "raw" / name).unlink()
    fetch(dataset, [with_variable], tmp_path)
    assert_raw_matches(tmp_path, arrays)
    assert mirror.authorizations == [BASIC] * 8
    assert capsys.readouterr().err == ""  # no password in params: no warning
    monkeypatch.delenv("MIRROR_TOKEN")
    (tmp_path / "raw" / TRAIN_IMAGES).unlink()
    with pytest.raises(DigitrecError, match=r"\$\{MIRROR_TOKEN\} is not set in the environment"):
        fetch(dataset, [with_variable], tmp_path)
    netrc.write_text("machine 127.0.0.1 login reader password s3cr3t and-the-rest\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(DigitrecError, match=r"netrc: not a valid .netrc file \(line \d\)") as bad:
        fetch(dataset, [mirror.url("private/")], tmp_path)
    assert "and-the-rest" not in str(bad.value)


@pytest.mark.parametrize(("text", "shown"), [
    ("http://user:TOKEN@host/x", "http://user:***@host/x"),
    ("error: https://u:p@ss:w@h:8/a?b and http://plain/x", "error: https://u:***@h:8/a?b and "
                                                           "http://plain/x"),
    ("https://TOKEN@github.com/x", "https://***@github.com/x"),
    ("('http://u:TOKEN@h', 'x')", "('http://u:***@h', 'x')"),
    ("http://h/a@b and /some/folder@2", "http://h/a@b and /some/folder@2"),
])
def test_a_secret_in_a_url_is_redacted_wherever_it_is_shown(text, shown, capsys):
    from digitrec.errors import exit_code, redact

    assert redact(text) == shown

    def fails():
        raise DigitrecError(text)
    assert exit_code(fails) == 1
    assert capsys.readouterr().err == f"error: {shown}\n"


def test_a_home_folder_of_nobody_is_a_clear_error(tmp_path, dataset):
    with pytest.raises(DigitrecError, match="~nonexistentuser-digitrec/x: no such user's home"):
        fetch(dataset, ["~nonexistentuser-digitrec/x"], tmp_path)


def test_a_full_disk_stops_the_download_with_one_line_and_frees_its_scratch(
        tmp_path, mirror, arrays, dataset):
    write_archives(mirror.root, arrays)
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(DigitrecError) as full:
            download(dataset, sources([mirror.url(), mirror.url()]), disk / "raw",
                     disk / "partial", FAST)
        message = str(full.value)
        assert "\n" not in message and ": cannot write: no space left on the file system " \
               "(needs " in message
        assert message.startswith(str(disk / "partial" / "staging"))
        assert scratch_left(disk / "partial") == []
        assert not any((disk / "partial" / "staging").iterdir())
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_fifo_where_a_raw_file_goes_is_never_replaced(tmp_path, mirror, arrays, dataset):
    import os

    write_archives(mirror.root, arrays)
    (tmp_path / "raw").mkdir()
    os.mkfifo(tmp_path / "raw" / TRAIN_LABELS)
    with pytest.raises(DigitrecError, match=f"{TRAIN_LABELS}: is not a regular file"):
        fetch(dataset, [mirror.url()], tmp_path)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [TRAIN_LABELS]
