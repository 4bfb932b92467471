import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import MirrorServer, committed_params_text  # noqa: E402


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


@pytest.fixture
def project(tmp_path):
    """A fresh git + DVC copy of this project's pipeline, as a new clone would have it (the
    committed params.yaml, not the working copy's)."""
    import os
    import shutil
    import subprocess

    root = tmp_path / "project"
    root.mkdir()
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
