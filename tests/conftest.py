import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import MirrorServer, committed_params_text  # noqa: E402

# Fixtures that make a test slow in the marker's sense (pyproject.toml: it runs DVC, a
# subprocess, or trains a model): every test that uses one, directly or through another
# fixture, is marked `slow`, so `pytest -m "not slow"` never waits for them.
SLOW_FIXTURES = {"project",  # runs git in a fresh copy of the project
                 "trains_a_model"}  # requested by each fixture that trains one


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trains_a_model():
    """Nothing: a fixture that trains a model requests it, which marks its tests `slow`."""


@pytest.fixture
def mirror(tmp_path):
    """A loopback HTTP server over `tmp_path / "www"`, stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = MirrorServer(root)
    yield server
    server.close()


PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "src",
                 ".dvc/config", ".dvc/.gitignore", "data/user_images")


def make_project(root: Path) -> "Project":
    """A fresh git + DVC copy of this project's pipeline at `root`, as a new clone has it
    (the committed params.yaml, not the working copy's)."""
    import os
    import shutil
    import subprocess

    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    # The committed params.yaml, whatever the user has put in the working copy.
    (root / "params.yaml").write_text(committed_params_text())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    return Project(root, env)


@pytest.fixture
def project(tmp_path):
    """A fresh git + DVC copy of this project's pipeline, as a new clone would have it."""
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def _first_pipeline_run(tmp_path_factory):
    """One tiny five-stage `dvc repro` of the project, not committed; made once per session,
    since it costs a minute: `pipeline_ran` and `pipeline_run` hand each test a copy."""
    from helpers import PIPELINE_TRAIN, synthetic_dataset_arrays, write_archives

    folder = tmp_path_factory.mktemp("pipeline")
    www = folder / "www"
    www.mkdir()
    server = MirrorServer(www)  # kept up: a later `dvc repro` may ask download's status
    write_archives(www, synthetic_dataset_arrays(n_train=400, n_test=100))
    made = make_project(folder / "project")
    made.set_params(download={"mirrors": [server.url()], "verify": False},
                    train=PIPELINE_TRAIN)
    made.dvc("repro")
    yield made
    server.close()


@pytest.fixture
def pipeline_ran(_first_pipeline_run, tmp_path):
    """The project after one tiny `dvc repro`, not yet committed: a copy of the session's
    run (its git history, DVC cache and outputs) at `tmp_path / "project"`, so the default
    remote `../digitrec-storage` is in `tmp_path` as it is beside a fresh project."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(_first_pipeline_run.root, root, symlinks=True)
    return Project(root, _first_pipeline_run.env)


@pytest.fixture
def pipeline_run(pipeline_ran):
    """The project after one tiny `dvc repro`, committed, as the first teammate has it."""
    pipeline_ran.run("git", "add", "-A")
    pipeline_ran.run("git", "commit", "-q", "-m", "first run")
    return pipeline_ran


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory, trains_a_model):
    """The small model that reads drawn digits (tiny_model.py), trained once per session
    and shared read-only by the predict, serve and export tests."""
    from tiny_model import train_tiny_model

    path = train_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model.keras")
    path.chmod(0o444)  # a test that changed it would change every other test's model
    return path


class Project:
    """A project copy and a way to run commands in it with this interpreter's tools."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 600):
        import subprocess

        result = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True, timeout: float = 600):
        return self.run(sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)

    def set_params(self, **sections) -> None:
        import yaml

        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(params.get(key), dict):
                params[key].update(value)
            else:
                params[key] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False))
