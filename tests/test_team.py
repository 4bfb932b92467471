"""Working in a team: push, clone, pull, nothing recomputed; experiments; a network remote."""

import csv
import hashlib
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PIPELINE_TRAIN, doc_block, doc_commands, flat_keys, shell_commands

pytestmark = pytest.mark.slow

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


def test_team_walkthrough_with_a_teammate_in_an_unrelated_folder(pipeline_ran, tmp_path):
    """The docs' team block as written, but for `<repo-url>`, the team's folder, and the
    steps that need a network (`pip install`, `git push`: the teammate clones the first
    person's repository directly). The teammate's clone is nowhere near the first one, so
    the committed `../digitrec-storage` would not be the same folder: `digitrec doctor` says
    so in one line, and the docs' `dvc remote modify --local` step fixes it."""
    first = pipeline_ran
    team = tmp_path / "team drive" / "digitrec-storage"
    elsewhere = tmp_path / "home" / "teammate" / "code"
    elsewhere.mkdir(parents=True)
    block = doc_block("team.md", "## Sharing the data and the model")
    first_person, teammate_block = re.split(r"^# a teammate.*$", block, maxsplit=1,
                                            flags=re.MULTILINE)

    def steps(text):
        for command in shell_commands(text):
            command = [str(team) if word == "/mnt/team/digitrec-storage" else word
                       for word in command]
            while command:  # `a && b`: each in turn
                step, command = split_and(command)
                if step[:2] not in (["pip", "install"], ["git", "push"]):
                    yield step

    for step in steps(first_person):
        first.run(*step)
    assert (team / "files").is_dir()

    teammate = None
    for step in steps(teammate_block):
        if step[:2] == ["git", "clone"]:
            assert step[2] == "<repo-url>"
            teammate = clone(first, elsewhere / step[3])
            missing = elsewhere / "digitrec-storage"  # where the committed default points
            doctor = teammate.run("digitrec", "doctor", check=False)
            assert doctor.returncode == 1
            assert doctor.stderr.splitlines() == [
                f"error: DVC remote 'storage' is the folder {missing}, which does not exist "
                f"(needed only to share data with dvc push and pull); set the team's with "
                f"`dvc remote modify --local storage url PATH` (see docs/team.md)"]
        elif step == ["cd", "digitrec"]:
            continue
        else:
            result = teammate.run(*step)
    assert "Data and pipelines are up to date." in result.stdout  # the last step, dvc repro
    assert "Running stage" not in result.stdout
    model = "models/model.keras"
    assert (teammate.root / model).read_bytes() == (first.root / model).read_bytes()
    assert_nothing_to_do(teammate)


def split_and(command: list[str]) -> tuple[list[str], list[str]]:
    """`a && b` as `a` and `b`."""
    if "&&" not in command:
        return command, []
    at = command.index("&&")
    return command[:at], command[at + 1:]


def test_experiments_walkthrough_does_what_its_comments_say_and_diffs_need_no_pull(
        pipeline_run, tmp_path):
    """The docs' experiments block, run top to bottom in a clean workspace: each queued
    variant is the committed recipe with its one change (the models queued after
    `-S train.epochs=3` do not inherit it), the workspace is left as it was, and the
    `dvc exp show` line fits a 200-column terminal without collapsing a column into `…`.
    Then `dvc exp apply` of the 3-epoch run is a second run's numbers against the first
    (also the evaluate stage's end-to-end check): params, metrics and plots diffs in the
    workspace, then committed, in a clone that pulled nothing at all."""
    project = pipeline_run
    *runs, show = doc_commands("experiments.md", "## Try variants")
    assert [command[:3] for command in runs] == [["dvc", "exp", "run"]] * 3
    for command in runs:
        project.dvc(*command[1:])
    assert project.run("git", "status", "--porcelain").stdout == ""

    rows = list(csv.DictReader(io.StringIO(project.dvc(*show[1:], "--csv").stdout)))
    branches = [row for row in rows if row["typ"].startswith("branch")]
    experiments = sorted((row["train.model"], row["train.epochs"]) for row in branches)
    committed = str(PIPELINE_TRAIN["epochs"])
    assert experiments == sorted([("auto", "3"), ("cnn3", committed), ("mlp", committed)])

    terminal = type(project)(project.root, {**project.env, "COLUMNS": "200"})
    table = terminal.dvc(*show[1:], "--no-pager").stdout
    assert max(map(len, table.splitlines())) <= 200, table
    assert "…" not in table, table
    header = table.splitlines()[1]
    metrics = {f"{file}:{key}" if key == "accuracy" else key  # DVC's name for a name clash
               for file in METRICS for key in flat_keys(json.loads(
                   (project.root / file).read_text()))}
    assert {"metrics/eval.json:accuracy", "metrics/predict.json:accuracy", "ece",
            "val.accuracy", "train.model", "train.epochs"} <= set(header.split())
    assert set(header.split()) - {"Experiment", "Created"} <= metrics | {
        "train.model", "train.epochs"}, header

    # The committed run's numbers, then the 3-epoch experiment's in the workspace.
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    assert shown[""]["data"] == {file: {"data": committed_json(project, "HEAD", file)}
                                 for file in METRICS}
    (longer,) = [row["Experiment"] for row in branches if row["train.epochs"] == "3"]
    project.dvc("exp", "apply", longer)
    params = project.dvc("params", "diff").stdout
    (row,) = [line.split() for line in params.splitlines() if "train.epochs" in line]
    assert row == ["params.yaml", "train.epochs", committed, "3"], params  # HEAD, workspace
    assert json.loads(project.dvc("metrics", "diff", "--json").stdout) == {
        file: changed(committed_json(project, "HEAD", file),
                      json.loads((project.root / file).read_text()))
        for file in METRICS}
    html = tmp_path / "plots-diff"
    project.dvc("plots", "diff", "HEAD", "-o", str(html))
    assert_plots_diff_shows_both_runs(project, html)

    commit(project, "three epochs")
    teammate = clone(project, tmp_path / "fresh")  # nothing pulled at all
    table = teammate.dvc("metrics", "diff", "HEAD~1").stdout
    expected = [[file, key, shown_number(old), shown_number(new)]
                for file in METRICS
                for key, (old, new) in changed_pairs(
                    committed_json(project, "HEAD~1", file),
                    committed_json(project, "HEAD", file)).items()]
    # one row per changed number (DVC orders the files as it finds them)
    assert sorted(line.split()[:4] for line in table.splitlines()[1:]) == sorted(
        expected), table
    assert len(expected) >= 5, table  # a longer run changes the headline numbers
    params = teammate.dvc("params", "diff", "HEAD~1").stdout.splitlines()
    assert [line.split() for line in params[1:]] == [
        ["params.yaml", "train.epochs", committed, "3"]]


METRICS = ("metrics/eval.json", "metrics/predict.json")


def committed_json(project, revision: str, path: str) -> dict:
    return json.loads(project.run("git", "show", f"{revision}:{path}").stdout)


def flat_values(values: dict, prefix: str = "") -> dict:
    """A metrics file's numbers by the dotted names DVC gives them."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        flat.update(flat_values(value, f"{name}.") if isinstance(value, dict)
                    else {name: value})
    return flat


def changed_pairs(old: dict, new: dict) -> dict:
    old, new = flat_values(old), flat_values(new)
    return {key: (old.get(key), new.get(key)) for key in old.keys() | new.keys()
            if old.get(key) != new.get(key)}


def changed(old: dict, new: dict) -> dict:
    """What `dvc metrics diff --json` says of one file: each changed number, old and new."""
    result = {}
    for key, (before, after) in changed_pairs(old, new).items():
        assert before is not None and after is not None, key
        result[key] = {"old": before, "new": after, "diff": pytest.approx(after - before)}
    return result


def shown_number(value) -> str:
    """A number as `dvc metrics diff` prints it (rounded to 5 decimals)."""
    return str(round(value, 5))


def assert_plots_diff_shows_both_runs(project, html: Path) -> None:
    """The page's plots hold each revision's own rows, and its images are both runs'."""
    page = (html / "index.html").read_text()
    specs = {}
    for chunk in page.split("var spec = ")[1:]:
        spec, _ = json.JSONDecoder().raw_decode(chunk)
        title = spec.get("title")
        specs[title["text"] if isinstance(title, dict) else title] = spec
    assert {"Loss", "Accuracy", "Confusion matrix (test)",
            "Per-class accuracy (test)"} <= set(specs), sorted(specs, key=str)

    def rows(title, rev, fields):
        return sorted(tuple(value[field] for field in fields)
                      for value in specs[title]["data"]["values"] if value["rev"] == rev)

    def tsv(text):
        return [tuple(line.split("\t")) for line in text.strip().splitlines()[1:]]

    for rev, read in (("workspace", lambda name: (project.root / name).read_text()),
                      ("HEAD", lambda name: project.run("git", "show", f"HEAD:{name}").stdout)):
        loss = [(step, value) for name in ("train", "val") for step, value in
                tsv(read(f"metrics/train/plots/metrics/{name}/loss.tsv"))]
        assert rows("Loss", rev, ("step", "loss")) == sorted(loss), rev
        confusion = list(csv.reader(io.StringIO(read("metrics/eval/confusion.csv"))))[1:]
        assert rows("Confusion matrix (test)", rev, ("actual", "predicted")) == sorted(
            map(tuple, confusion)), rev
    assert len(rows("Loss", "workspace", ("step",))) == 2 * 3  # train and val, 3 epochs
    for image in ("confusion", "mistakes"):
        for rev in ("workspace", "HEAD"):
            png = (html / "static" / f"{rev}_metrics_eval_{image}.png").read_bytes()
            assert png[:4] == b"\x89PNG", (rev, image)


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


def test_webdav_remote_survives_the_server_dying_mid_transfer_and_refuses_corruption(
        pipeline_run, webdav, tmp_path):
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

    # A corrupt object on the remote is refused: the pull fails, the cache stays whole.
    model_md5 = project.run("git", "show", "HEAD:dvc.lock").stdout.split(
        "path: models/model.keras")[1].split("md5: ")[1].split()[0]
    stored = store / model_md5[:2] / model_md5[2:]
    stored.write_bytes(b"not the model" + stored.read_bytes()[13:])
    late = clone(project, tmp_path / "late-teammate")
    pulled = late.dvc("pull", check=False)
    assert pulled.returncode != 0
    assert_cache_intact(late.root)
    assert not (late.root / ".dvc/cache/files/md5" / model_md5[:2] / model_md5[2:]).exists()
    assert not (late.root / model).exists()
    shown = json.loads(late.dvc("metrics", "show", "--json").stdout)  # in git: still there
    assert shown[""]["data"]["metrics/eval.json"]["data"] == committed_json(
        project, "HEAD", "metrics/eval.json")
