"""`digitrec doctor`: what stands in the way in this project, each in one line, before DVC
says it less clearly.

DVC reports a remote folder that does not exist as missing cache files and a failed
checkout ("Is your cache up to date?"), never naming the folder; the committed default
remote is relative to the clone, so a teammate's clone in another folder meets exactly
that. The checks run in order and stop at the first problem, raised as `DigitrecError`
with what to do about it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from digitrec.errors import DigitrecError
from digitrec.params import PARAMS_FILE, read_params
from digitrec.paths import MODEL

PROJECT_FILES = (Path("dvc.yaml"), PARAMS_FILE, Path("stages"), Path(".dvc"))
SET_REMOTE = "dvc remote modify --local {name} url PATH"


def check_project() -> str:
    """The current folder is a digitrec project's root."""
    missing = [str(path) for path in PROJECT_FILES if not path.exists()]
    if missing:
        raise DigitrecError(f"{Path.cwd()}: not a digitrec project root (no "
                            f"{', '.join(missing)}); run `digitrec doctor` from the folder "
                            f"that holds dvc.yaml")
    return f"project: {Path.cwd()}"


def check_params() -> str:
    """params.yaml is valid, every section of it."""
    params = read_params("dataset", "download", "prepare", "train", "predict")
    return f"{PARAMS_FILE}: valid (dataset {params.dataset}, model {params.train.model})"


def default_remote() -> tuple[str, str]:
    """The default DVC remote's name and URL, as DVC resolves them: local config first, a
    relative folder made absolute from the config file that names it."""
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=".dvc")
    except ConfigError as exc:
        raise DigitrecError(f".dvc/config: {exc}") from None
    name = config["core"].get("remote")
    if not name:
        raise DigitrecError("no default DVC remote: add one with "
                            "`dvc remote add -d storage PATH` (see docs/team.md)")
    if name not in config["remote"]:
        raise DigitrecError(f"the default DVC remote {name!r} is not defined in .dvc/config "
                            f"or .dvc/config.local")
    return name, str(config["remote"][name]["url"])


def check_remote(remote: Callable[[], tuple[str, str]] = default_remote) -> str:
    """The default remote can be reached: a folder remote exists. Other remotes (S3, SSH,
    WebDAV...) are named but left to DVC, which reports their errors itself."""
    name, url = remote()
    scheme = urlparse(url).scheme
    if scheme not in ("", "file") and len(scheme) > 1:  # a drive letter is no scheme
        return f"remote: {name} is {url} (not checked here: `dvc pull` reports its errors)"
    folder = Path(urlparse(url).path if scheme == "file" else url)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DigitrecError(
            f"DVC remote {name!r} is the folder {folder}, which {what} (needed only to "
            f"share data with dvc push and pull); set the team's with "
            f"`{SET_REMOTE.format(name=name)}` (see docs/team.md)")
    return f"remote: {name} is the folder {folder}"


def check_model() -> str:
    """Whether the model is there yet (not a problem before `dvc pull` or `dvc repro`)."""
    if MODEL.is_file():
        return f"model: {MODEL}"
    return f"model: no {MODEL} yet (`dvc pull` fetches it, `dvc repro` trains it)"


CHECKS: tuple[Callable[[], str], ...] = (check_project, check_params, check_model,
                                         check_remote)


def doctor(report: Callable[[str], None] = print) -> str:
    """Run every check in order, reporting each that passes; the first problem raises."""
    for check in CHECKS:
        report(check())
    return "doctor: nothing in the way"
