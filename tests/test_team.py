"""Working in a team: push, clone, pull, nothing recomputed; experiments; a network remote."""

import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import doc_command, flat_keys, synthetic_dataset_arrays, write_archives

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


def assert_objects_whole(objects: Path) -> None:
    """Every object under a DVC `files/md5` folder has the content its name (its MD5) says."""
    for path in objects.rglob("*"):
        if path.is_file() and len(path.parent.name + path.name) == 32:
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            assert digest == path.parent.name + path.name, f"corrupt object {path}"


def assert_no_trusted_corruption(root: Path) -> None:
    """DVC trusts a read-only cache object without hashing it again, so a read-only object
    must be whole. (dvc-objects 5.2 can leave a truncated download under its final name
    when a single-file transfer fails, but writable, so the next command hashes it, finds
    it corrupt and downloads it again.)"""
    for path in cache_objects(root):
        if path.stat().st_mode & 0o222 == 0:
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            assert digest == path.parent.name + path.name, f"trusted corrupt object {path}"


def assert_cache_intact(root: Path) -> None:
    assert_objects_whole(root / ".dvc" / "cache" / "files" / "md5")


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
    use_remote(project, f"webdav://127.0.0.1:{webdav.port}/store")
    project.dvc("push")
    model_md5 = project.run("git", "show", "HEAD:dvc.lock").stdout.split(
        "path: models/model.keras")[1].split("md5: ")[1].split()[0]
    stored = webdav.root / "store" / "files" / "md5" / model_md5[:2] / model_md5[2:]
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
    project.dvc("repro", "evaluate")
    commit(project, "two epochs")
    teammate = clone(project, tmp_path / "fresh")  # nothing pulled at all
    diff = teammate.dvc("metrics", "diff", "HEAD~1").stdout
    assert "metrics/eval.json" in diff and "accuracy" in diff
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

    # The README's command fits a terminal: every headline metric, params and no dependency.
    # Not counted: rev, typ and parent, which only --csv has (the table merges them into
    # Experiment), and the queue's State and Executor, shown while it holds tasks.
    command = doc_command("dvc exp show --drop", "experiments.md")
    header = project.dvc(*command[1:], "--csv").stdout.splitlines()[0].split(",")
    table = [column for column in header
             if column not in ("rev", "typ", "parent", "State", "Executor")]
    assert len(table) <= 30, table
    metrics = {f"{file}:{key}" if key == "accuracy" else key  # DVC's name for a name clash
               for file in ("metrics/eval.json", "metrics/predict.json")
               for key in flat_keys(json.loads((project.root / file).read_text()))}
    params = flat_keys(yaml.safe_load((project.root / "params.yaml").read_text()))
    assert metrics <= set(table), table
    assert set(table) - metrics - {"Experiment", "Created"} <= params, table
    assert "train.model" in table and "download.deadline" not in table


class WebDAVServer:
    """A real WebDAV server (WsgiDAV) in its own process on 127.0.0.1.

    `start(die_after=N)` runs one that SIGKILLs itself once N bytes of file content have
    gone in or out; `start()` again on the same port and folder brings the remote back.
    """

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, die_after: int | None = None) -> None:
        command = [sys.executable, str(Path(__file__).parent / "webdav_server.py"),
                   str(self.root), str(self.port)]
        if die_after is not None:
            command += ["--die-after", str(die_after)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("WsgiDAV did not start")

    def killed(self) -> bool:
        """Whether the server died of SIGKILL (rather than being stopped, or running)."""
        return self.process.poll() == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webdav(tmp_path):
    """A WebDAV server over `tmp_path / "webdav-root"`, started and stopped by the test."""
    root = tmp_path / "webdav-root"
    (root / "store").mkdir(parents=True)
    server = WebDAVServer(root)
    server.start()
    yield server
    server.stop()


def use_remote(project, url):
    project.dvc("remote", "add", "--force", "-d", "dav", url)
    project.dvc("remote", "modify", "dav", "verify", "true")
    commit(project, "team remote")


def test_webdav_remote_survives_the_server_dying_mid_transfer(pipeline_run, webdav, tmp_path):
    project = pipeline_run
    use_remote(project, f"webdav://127.0.0.1:{webdav.port}/store")
    store = webdav.root / "store" / "files" / "md5"

    # The server process is killed after 300 kB of the push; the push fails, and running
    # it again once the server is back completes it, with every stored object whole.
    webdav.stop()
    webdav.start(die_after=300_000)
    failed = project.dvc("push", "-j", "1", check=False)
    assert webdav.killed() and failed.returncode != 0, failed.stderr[-2000:]
    webdav.start()
    project.dvc("push", "--run-cache")
    assert_objects_whole(store)

    teammate = clone(project, tmp_path / "teammate")
    webdav.stop()
    webdav.start(die_after=200_000)  # dies while the pull is under way
    failed = teammate.dvc("pull", "-j", "1", check=False)
    assert webdav.killed() and failed.returncode != 0, failed.stderr[-2000:]
    assert_no_trusted_corruption(teammate.root)
    for name in ("models/model.keras", "data/prepared/train_images.npy"):
        if (teammate.root / name).exists():  # whatever was checked out is whole
            assert (teammate.root / name).read_bytes() == (project.root / name).read_bytes()
    webdav.start()
    teammate.dvc("pull")
    assert_cache_intact(teammate.root)
    assert len(cache_objects(teammate.root)) >= 3
    model = "models/model.keras"
    assert (teammate.root / model).read_bytes() == (project.root / model).read_bytes()
    assert_nothing_to_do(teammate)
