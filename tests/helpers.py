"""Test helpers: small MNIST-like data the tests make themselves, a loopback mirror, and
the documentation's commands as a user would run them."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import runpy
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitrec.catalog import (
    MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    Dataset,
    FileSpec,
)
from digitrec.data import idx
from digitrec.files import sha256_file

# The train section of the session's shared pipeline run (conftest.py `pipeline_run`).
PIPELINE_TRAIN = {"epochs": 1, "batch_size": 64, "checkpoint_every": 1}


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` 28x28 uint8 images whose class is learnable: a bright block at a place per class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.uint8) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = 4 + 7 * (label // 4), 4 + 6 * (label % 4)
        dr, dc = rng.integers(-1, 2, size=2)
        images[i, row + dr:row + dr + 6, col + dc:col + dc + 5] = 255
    return images, labels


def synthetic_dataset_arrays(n_train: int = 200, n_test: int = 100, seed: int = 0
                             ) -> dict[str, np.ndarray]:
    train_x, train_y = synthetic_digits(n_train, seed)
    test_x, test_y = synthetic_digits(n_test, seed + 1)
    return {TRAIN_IMAGES: train_x, TRAIN_LABELS: train_y, TEST_IMAGES: test_x,
            TEST_LABELS: test_y}


def write_archives(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write each array as `<name>.gz` in `folder`, as a mirror holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        idx.write_idx(folder / f"{name}.gz", array, compress=True)


def write_raw(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        idx.write_idx(folder / name, array)


def dataset_for(arrays: dict[str, np.ndarray], mirrors: tuple[str, ...] = ()) -> Dataset:
    """A catalog entry whose checksums are those of `arrays`, as the real ones are of MNIST."""
    files = []
    for name in [f.name for f in MNIST.files]:
        data = idx.encode_idx(arrays[name])
        files.append(FileSpec(name, len(data), hashlib.sha256(data).hexdigest(),
                              arrays[name].ndim))
    return Dataset("synthetic", mirrors, tuple(files), tuple(str(d) for d in range(10)))


def local_tf_configs(workers: int) -> list[str]:
    """`TF_CONFIG` values for a cluster of `workers` processes on this machine, on free
    127.0.0.1 ports: one per process, worker 0 first."""
    sockets = [socket.socket() for _ in range(workers)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]}
    for sock in sockets:
        sock.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(workers)]


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())} if folder.exists() else {}


@dataclass
class Reply:
    """A scripted, possibly hostile answer: a status line and headers, then the body.

    `body()` yields the body's chunks and may never end; `pause` seconds pass before each
    chunk, and before each byte of the status line and headers when `trickle_head`.
    `length`, when given, is announced as Content-Length whatever the body holds.
    """

    body: Callable[[], Iterable[bytes]]
    pause: float = 0.0
    length: int | None = None
    trickle_head: bool = False
    status: str = "200 OK"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MirrorServer:
    """A loopback HTTP mirror with switchable faults, recording every request.

    `missing`: paths that answer 404. `cut_once`: path -> bytes sent before the connection
    is dropped, the first time only. `ranges`: whether Range requests get 206. `replies`:
    path -> a scripted Reply (endless, trickling, lying...). `sent`: path -> body bytes sent
    of a Reply (present once its headers were all sent). `tls`: serve HTTPS instead.
    `auth`: the Basic `Authorization` value every request must carry, else 401;
    `authorizations` records what each request carried.
    """

    root: Path
    missing: set[str] = field(default_factory=set)
    cut_once: dict[str, int] = field(default_factory=dict)
    ranges: bool = True
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    user_agents: set[str] = field(default_factory=set)
    sent: dict[str, int] = field(default_factory=dict)
    tls: tuple[Path, Path] | None = None  # (certificate, key)
    auth: str | None = None
    authorizations: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self
        self._closing = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                server.user_agents.add(self.headers.get("User-Agent", ""))
                server.authorizations.append(self.headers.get("Authorization"))
                if server.auth is not None and self.headers.get("Authorization") != server.auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in server.replies:
                    self.close_connection = True
                    with contextlib.suppress(OSError):  # the client hung up, as it should
                        self.send_scripted(server.replies[self.path])
                    return
                file = server.root / self.path.lstrip("/")
                if self.path in server.missing or not file.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = file.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if match and server.ranges:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut_once.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[start:start + cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def send_scripted(self, reply: Reply) -> None:
                head = f"HTTP/1.1 {reply.status}\r\nConnection: close\r\n"
                if reply.length is not None:
                    head += f"Content-Length: {reply.length}\r\n"
                head += "".join(f"{key}: {value}\r\n" for key, value in reply.headers.items())
                head = (head + "\r\n").encode()
                for part in ([head[i:i + 1] for i in range(len(head))] if reply.trickle_head
                             else [head]):
                    if reply.trickle_head and server._closing.wait(reply.pause):
                        return
                    self.wfile.write(part)
                server.sent[self.path] = 0
                for chunk in reply.body():
                    if server._closing.wait(reply.pause):
                        return
                    self.wfile.write(chunk)
                    server.sent[self.path] += len(chunk)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, prefix: str = "") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}/{prefix}"

    def paths_requested(self) -> list[str]:
        return [path for path, _ in self.requests]

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def gzip_stream(head: bytes, total: int | None = None) -> Iterator[bytes]:
    """A gzip archive of `head` then zeros, `total` bytes in all (None: forever), compressed
    as it is sent: 10 GiB of zeros are a 10 MB gzip bomb that costs nothing to serve."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    yield compressor.compress(head) + compressor.flush(zlib.Z_SYNC_FLUSH)
    block = bytes(1 << 20)
    size = len(head)
    while total is None or size < total:
        part = block if total is None else block[: total - size]
        size += len(part)
        yield compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


def empty_deflate_blocks() -> Iterator[bytes]:
    """A gzip header, then empty stored deflate blocks forever: endless input, no output."""
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    while True:
        yield b"\x00\x00\x00\xff\xff" * 4096


def pieces(data: bytes, size: int) -> Callable[[], Iterator[bytes]]:
    """A Reply body that sends `data` in pieces of `size` bytes."""
    return lambda: (data[i:i + size] for i in range(0, len(data), size))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until `condition()` holds; fail the test naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, for a loopback HTTPS mirror that a client
    trusts when SSL_CERT_FILE names the certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def committed_params_text() -> str:
    """`params.yaml` as committed (`git show HEAD:params.yaml`), not the working copy: a
    user edits that one (for a local mirror, say, or by applying an experiment), and the
    tests must pass whatever it holds. Outside a git checkout (an unpacked sdist) the file
    itself is the shipped one."""
    try:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:params.yaml"],
                               capture_output=True, text=True, timeout=30)
    except OSError:  # no git
        return (ROOT / "params.yaml").read_text()
    if shown.returncode != 0:  # not a checkout, or the file not committed yet
        return (ROOT / "params.yaml").read_text()
    return shown.stdout


def doc_command(start: str, page: str) -> list[str]:
    """The first shell command in `docs/PAGE` that starts with `start`, its continuation
    lines joined and a trailing comment dropped, split as the shell would: what a user
    copies."""
    lines = iter((DOCS / page).read_text().splitlines())
    for line in lines:
        if line.startswith(start):
            command = line
            while command.endswith("\\"):
                command = command[:-1] + next(lines)
            return shlex.split(command, comments=True)
    raise AssertionError(f"docs/{page} has no command starting with {start!r}")


def shell_commands(text: str) -> list[list[str]]:
    """The shell commands of a block of text, continuation lines joined and comments
    dropped, each split as the shell would: what a user pastes."""
    commands, pending = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        words = shlex.split(pending + line, comments=True)
        pending = ""
        if words:
            commands.append(words)
    return commands


def doc_commands(page: str, after: str) -> list[list[str]]:
    """The shell commands of the first ```bash block of `docs/PAGE` after the text `after`."""
    return shell_commands(doc_block(page, after))


def doc_block(page: str, after: str, language: str = "bash") -> str:
    """The first ```LANGUAGE block of `docs/PAGE` after the text `after`."""
    text = (DOCS / page).read_text()
    if after not in text:
        raise AssertionError(f"docs/{page} has no {after!r}")
    rest = text.split(after, 1)[1]
    return rest.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def flat_keys(values: dict, prefix: str = "") -> set[str]:
    """A params or metrics file's keys as `dvc exp show` names its columns: mappings
    flattened with dots, lists kept whole."""
    keys = set()
    for key, value in values.items():
        name = f"{prefix}{key}"
        keys |= flat_keys(value, f"{name}.") if isinstance(value, dict) else {name}
    return keys


@dataclass
class StageRun:
    """What a stage script's run left: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(root: Path, action: Callable[[], object], argv: list[str],
                   check: bool = True) -> StageRun:
    """Run `action` as a command run from `root` with `argv` would run, but in this process:
    the suite imports TensorFlow once rather than once per command. Its exit code is taken
    from `sys.exit` (0 if it returns); what it prints is captured. An unexpected exception
    is not caught: it fails the test, as a traceback would. Use a subprocess only where the
    process itself is under test (a kill, a real `dvc repro`, a console script's exit)."""
    out, err = io.StringIO(), io.StringIO()
    cwd, saved_argv = os.getcwd(), sys.argv
    code: int | str | None = 0
    try:
        os.chdir(root)
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                action()
            except SystemExit as exit_:
                code = exit_.code
    finally:
        os.chdir(cwd)
        sys.argv = saved_argv
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    result = StageRun(returncode, out.getvalue(), err.getvalue())
    if check and returncode != 0:
        raise AssertionError(f"{argv} failed ({returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_stage(root: Path, name: str, *args: str, check: bool = True) -> StageRun:
    """`python stages/NAME.py ARGS` in the project at `root` (run as `__main__`, from the
    project root), in this process (see run_in_process)."""
    script = root / "stages" / f"{name}.py"
    return run_in_process(root, lambda: runpy.run_path(str(script), run_name="__main__"),
                          [str(script), *args], check=check)


def run_cli(root: Path, *args: str, check: bool = False) -> StageRun:
    """`digitrec ARGS` from `root`, in this process (see run_in_process)."""
    from digitrec import cli

    return run_in_process(root, lambda: cli.main(list(args)), ["digitrec", *args], check=check)


def backed_up_epochs(backups: Path) -> int:
    """The last epoch a training run has backed up under `backups` (0: none yet)."""
    done = []
    for path in backups.glob("*/training_metadata.json"):
        with contextlib.suppress(OSError, ValueError):  # gone, or caught half-written
            done.append(json.loads(path.read_text())["epoch"])
    return max(done, default=0)


def kill_once_backed_up(process: subprocess.Popen, backups: Path, min_epochs: int,
                        victim: subprocess.Popen | None = None, timeout: float = 300) -> None:
    """SIGKILL `victim` (default: `process`, the training run) once `process` has backed up
    `min_epochs` epochs under `backups`, or once it ended or `timeout` passed; the caller
    checks that the kill came in time (the victim's return code is -SIGKILL)."""
    victim = victim or process
    deadline = time.monotonic() + timeout
    while (time.monotonic() < deadline and process.poll() is None
           and backed_up_epochs(backups) < min_epochs):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
