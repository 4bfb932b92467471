"""Working in a team: push, clone, pull, nothing recomputed; experiments; a network remote."""

import contextlib
import hashlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import synthetic_dataset_arrays, write_archives

pytestmark = pytest.mark.slow

TINY = {"epochs": 1, "batch_size": 64, "checkpoint_every": 1}


@pytest.fixture
def pipeline_run(project, mirror):
    """The project after one tiny `dvc repro`, committed, as the first teammate has it."""
    write_archives(mirror.root, synthetic_dataset_arrays(n_train=400, n_test=100))
    project.set_params(download={"mirrors": [mirror.url()], "verify": False}, train=TINY)
    project.dvc("repro")
    commit(project, "first run")
    return project


def commit(project, message):
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", message)


def clone(project, destination: Path):
    subprocess.run(["git", "clone", "-q", str(project.root), str(destination)], check=True,
                   env=project.env)
    return type(project)(destination, project.env)


def assert_nothing_to_do(teammate):
    assert "up to date" in teammate.dvc("status").stdout
    repro = teammate.dvc("repro")
    assert "Running stage" not in repro.stdout, repro.stdout


def cache_objects(root: Path) -> list[Path]:
    files = root / ".dvc" / "cache" / "files" / "md5"
    return [p for p in files.rglob("*") if p.is_file() and not p.name.endswith(".dir")]


def assert_cache_intact(root: Path) -> None:
    """Every object in the cache has the content its name (its MD5) says."""
    for path in cache_objects(root):
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        assert digest == path.parent.name + path.name, f"corrupt cache object {path}"


def test_default_remote_push_clone_pull_recomputes_nothing(pipeline_run, tmp_path):
    project = pipeline_run
    assert project.dvc("remote", "list").stdout.split()[0] == "storage"
    project.dvc("push", "--run-cache")
    assert (tmp_path / "digitrec-storage").is_dir()  # beside the clone, as documented

    teammate = clone(project, tmp_path / "teammate")
    teammate.dvc("pull")
    model = "models/model.keras"
    assert (teammate.root / model).read_bytes() == (project.root / model).read_bytes()
    assert_nothing_to_do(teammate)


def test_pull_refuses_a_corrupt_object(pipeline_run, webdav, tmp_path):
    project = pipeline_run
    port, root = webdav
    use_remote(project, f"webdav://127.0.0.1:{port}/store")
    project.dvc("push")
    model_md5 = project.run("git", "show", "HEAD:dvc.lock").stdout.split(
        "path: models/model.keras")[1].split("md5: ")[1].split()[0]
    stored = root / "store" / "files" / "md5" / model_md5[:2] / model_md5[2:]
    stored.write_bytes(b"not the model" + stored.read_bytes()[13:])

    teammate = clone(project, tmp_path / "teammate")
    pulled = teammate.dvc("pull", check=False)
    assert pulled.returncode != 0
    assert_cache_intact(teammate.root)
    assert not (teammate.root / ".dvc/cache/files/md5" / model_md5[:2] / model_md5[2:]).exists()
    assert "metrics/eval.json" in teammate.dvc("metrics", "show").stdout


def test_metrics_diff_needs_no_pull(pipeline_run, tmp_path):
    project = pipeline_run
    project.set_params(train={"epochs": 2})
    project.dvc("repro", "train")
    commit(project, "two epochs")
    teammate = clone(project, tmp_path / "fresh")  # nothing pulled at all
    diff = teammate.dvc("metrics", "diff", "HEAD~1").stdout
    assert "metrics/train/metrics.json" in diff
    assert "train.epochs" in teammate.dvc("params", "diff", "HEAD~1").stdout


def test_experiments_run_queue_and_show(pipeline_run):
    project = pipeline_run
    project.dvc("exp", "run", "-S", "train.epochs=2")
    project.dvc("exp", "run", "--queue", "-S", "train.model=cnn3,mlp")
    project.dvc("exp", "run", "--run-all")
    shown = project.dvc("exp", "show", "--csv").stdout
    rows = [line for line in shown.splitlines()[1:] if line.strip()]
    experiments = [row for row in rows if ",workspace," not in row and ",main," not in row]
    assert len(experiments) >= 3, shown
    assert "eval.json" in shown.splitlines()[0] or "accuracy" in shown.splitlines()[0]
    assert any(",cnn3," in row for row in rows) and any(",mlp," in row for row in rows)


class CuttingProxy:
    """A TCP relay to the WebDAV server that can die mid-transfer, like a dropped link.

    After `cut_after` bytes have gone from client to server it closes every connection and
    stops listening; `start()` on the same port brings it back.
    """

    def __init__(self, target_port: int, port: int = 0):
        self.target_port = target_port
        self.port = port
        self.cut_after: int | None = None
        self.forwarded = 0
        self.cut = threading.Event()
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        self.cut.clear()
        self.forwarded = 0
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if upstream:
                    self.forwarded += len(chunk)
                    if self.cut_after is not None and self.forwarded > self.cut_after:
                        self.die()
                        return
        except OSError:
            pass

    def die(self) -> None:
        self.cut.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webdav(tmp_path):
    """A real WebDAV server (WsgiDAV) on 127.0.0.1, started and stopped by the test."""
    root = tmp_path / "webdav-root"
    (root / "store").mkdir(parents=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "webdav_server.py"), str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        pytest.fail("WsgiDAV did not start")
    yield port, root
    server.kill()
    server.wait()


def use_remote(project, url):
    project.dvc("remote", "add", "--force", "-d", "dav", url)
    project.dvc("remote", "modify", "dav", "verify", "true")
    commit(project, "team remote")


def test_webdav_remote_survives_a_dropped_connection(pipeline_run, webdav, tmp_path):
    project = pipeline_run
    port, root = webdav
    proxy = CuttingProxy(port)
    proxy.start()
    use_remote(project, f"webdav://127.0.0.1:{proxy.port}/store")

    # The link dies after 300 kB of the push; the push fails, and simply running it again
    # once the link is back completes it.
    proxy.cut_after = 300_000
    failed = project.dvc("push", "-j", "1", check=False)
    assert proxy.cut.is_set() and failed.returncode != 0, (proxy.forwarded, failed.stdout,
                                                            failed.stderr[-2000:])
    proxy.cut_after = None
    proxy.start()
    project.dvc("push", "--run-cache")

    teammate = clone(project, tmp_path / "teammate")
    proxy.cut_after = proxy.forwarded + 2_000  # dies while the pull is under way
    teammate.dvc("pull", "-j", "1", check=False)
    assert proxy.cut.is_set()
    assert_cache_intact(teammate.root)  # whatever arrived is whole; nothing half-written
    proxy.cut_after = None
    proxy.start()
    teammate.dvc("pull")
    assert_cache_intact(teammate.root)
    assert len(cache_objects(teammate.root)) >= 3
    model = "models/model.keras"
    assert (teammate.root / model).read_bytes() == (project.root / model).read_bytes()
    assert_nothing_to_do(teammate)
