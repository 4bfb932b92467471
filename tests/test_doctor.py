"""`digitrec doctor`, and the `digitrec` commands run where a user runs them: outside the
project root, or without saying where to export."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import committed_params_text

from digitrec.cli import main
from digitrec.serving.export import FORMATS, default_output

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> tuple[int, str, str]:
    """`digitrec ARGS` in this process: its exit code, stdout and stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A project as a teammate's clone has it before `dvc pull`, in `tmp_path/clone`, the
    current folder; its committed remote is the default `../digitrec-storage`."""
    root = tmp_path / "clone"
    (root / ".dvc").mkdir(parents=True)
    shutil.copy2(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy2(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(ROOT / "stages", root / "stages")
    (root / "params.yaml").write_text(committed_params_text())
    monkeypatch.chdir(root)
    return root


def test_doctor_names_a_missing_remote_folder_and_how_to_set_it(clone):
    code, out, err = run_cli("doctor")
    assert code == 1
    missing = clone.parent / "digitrec-storage"  # the default, resolved from this clone
    assert err == (f"error: DVC remote 'storage' is the folder {missing}, which does not "
                   f"exist (needed only to share data with dvc push and pull); set the "
                   f"team's with `dvc remote modify --local storage url PATH` "
                   f"(see docs/team.md)\n")
    assert "params.yaml: valid" in out


def test_doctor_passes_once_the_remote_is_set_as_the_docs_say(clone, tmp_path):
    shared = tmp_path / "elsewhere" / "team-storage"
    shared.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "modify", "--local", "storage",
                    "url", str(shared)], check=True, capture_output=True)
    code, out, err = run_cli("doctor")
    assert (code, err) == (0, "")
    assert f"remote: storage is the folder {shared}\n" in out
    assert "model: no models/model.keras yet" in out  # before the pull: not a problem
    assert out.endswith("doctor: nothing in the way\n")


def test_doctor_outside_a_project_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("doctor")
    assert code == 1 and out == ""
    assert err.startswith(f"error: {tmp_path}: not a digitrec project root (no dvc.yaml")


def test_doctor_reports_bad_params_in_one_line(clone):
    (clone / "params.yaml").write_text(committed_params_text().replace("seed: 42", "seed: x", 1))
    code, _, err = run_cli("doctor")
    assert code == 1
    assert err.startswith("error: params.yaml: prepare.seed") and err.count("\n") == 1


@pytest.mark.parametrize("command", [["predict", "picture.png"], ["serve"],
                                     ["export", "--format", "onnx"]])
def test_a_model_command_outside_the_project_root_says_that_is_the_problem(
        tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*command)
    assert code == 1 and out == ""
    assert err == (f"error: models/model.keras: not found here, and {tmp_path} is not the "
                   f"project root (no dvc.yaml); run from the project root, or give --model\n")


def test_in_the_project_root_a_missing_model_still_says_train_one(clone):
    code, _, err = run_cli("predict", str(ROOT / "data" / "user_images" / "photo_7.jpg"))
    assert code == 1
    assert err.startswith("error: models/model.keras: no model file; train one first")


def test_export_defaults_to_a_git_ignored_path_beside_the_model():
    outputs = {name: default_output(name) for name in FORMATS}
    assert outputs == {"savedmodel": Path("models/savedmodel"),
                       "onnx": Path("models/model.onnx"),
                       "tflite": Path("models/model.tflite")}
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", *map(str, outputs.values())], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == [str(path) for path in outputs.values()]
