"""`dvc repro` reruns exactly what changed: each stage depends on all the code it can run and
on nothing else, computed here from the code itself so dvc.yaml can never drift from it; and
on exactly the params its outputs depend on, as params.py marks them."""

import ast
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from helpers import committed_params_text, doc_commands, flat_keys

from digitrec import codedeps
from digitrec.params import SECTIONS
from digitrec.training import resume

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
INTERPOLATION = re.compile(r"\$\{([^}]+)\}")  # a value of params.yaml in a dep's path


def code_closure(script: Path) -> set[str]:
    """The script and every package module it can import, as paths relative to the root."""
    files = codedeps.module_closure(script, SOURCE_ROOT)
    return {script.relative_to(ROOT).as_posix()} | {
        path.relative_to(ROOT).as_posix() for path in files}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_code_deps_are_exactly_what_its_script_can_import(name):
    stage = STAGES[name]
    script = ROOT / "stages" / f"{name}.py"
    assert stage["cmd"].startswith(f"python stages/{name}.py")
    listed = {dep for dep in stage["deps"] if dep.endswith(".py")}
    closure = code_closure(script)
    assert listed - closure == set(), f"{name} depends on code it cannot run"
    assert closure - listed == set(), f"{name} misses code it runs: add it to dvc.yaml"


def sections_read(script: Path) -> set[str]:
    """The params sections a stage script asks `read_params` for."""
    calls = [node for node in ast.walk(ast.parse(script.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "read_params"]
    sections = {arg.value for call in calls for arg in call.args}
    if "train" in sections:
        sections.add("dataset")  # read_params("train") reads the dataset's model and style
    return sections


def settings(section: str, shaping_outputs: bool = True) -> set[str]:
    """A section's settings as dvc.yaml names them: those that shape what a stage writes,
    or (False) those that only bound or pace how it runs."""
    if section == "dataset":
        return {"dataset"} if shaping_outputs else set()
    return {f"{section}.{f.name}" for f in fields(SECTIONS[section])
            if f.metadata["shapes_outputs"] == shaping_outputs}



def named_params(stage: dict) -> set[str]:
    """The settings a stage's params deps name; a section name stands for all of them."""
    named = set()
    for entry in stage.get("params", []):
        if entry in SECTIONS:
            named |= settings(entry) | settings(entry, False)
        else:
            named.add(entry)
    return named


def tracked_params(stage: dict) -> set[str]:
    """The settings a stage reruns for: those its params deps name, and those its dep paths
    interpolate, such as `${predict.images}`."""
    return named_params(stage) | {key for dep in stage["deps"]
                                  for key in INTERPOLATION.findall(dep)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_are_exactly_the_settings_its_outputs_depend_on(name):
    read = sections_read(ROOT / "stages" / f"{name}.py")
    shaping = set().union(*(settings(section) for section in read))
    tracked = tracked_params(STAGES[name])
    assert shaping - tracked == set(), f"{name} would keep stale outputs: track these"
    assert tracked - shaping == set(), (f"{name} reruns for settings that change none of its "
                                        "outputs (or that it does not read)")


def test_only_time_bounds_and_checkpoint_pacing_are_left_untracked():
    untracked = set().union(*(settings(section, False) for section in SECTIONS))
    assert untracked == {"download.deadline", "download.min_speed", "download.stall_window",
                         "train.checkpoint_every", "train.keep_checkpoints"}


def interpolated(text: str, params: dict) -> str:
    """`text` with each `${section.key}` replaced by its value in params.yaml, as DVC does."""
    def value(match: re.Match) -> str:
        found = params
        for key in match[1].split("."):
            found = found[key]
        return str(found)
    return INTERPOLATION.sub(value, text)


def test_docs_exp_show_hides_every_dependency_and_keeps_the_headline():
    """`dvc exp show` has a column per dependency and per params.yaml key: the docs' command
    drops every dependency (none of them kept), and keeps the model and its epochs.
    (tests/test_team.py runs it and measures the table.)"""
    command = doc_commands("experiments.md", "## Try variants")[-1]
    assert command[:3] == ["dvc", "exp", "show"] and "--only-changed" in command
    options = {option: re.compile("|".join(command[at + 1] for at, arg in enumerate(command)
                                            if arg == option))
               for option in ("--drop", "--keep")}
    params = yaml.safe_load(committed_params_text())
    deps = {interpolated(dep, params) for stage in STAGES.values() for dep in stage["deps"]}
    assert {dep for dep in deps if not options["--drop"].match(dep)} == set()
    assert {dep for dep in deps if options["--keep"].match(dep)} == set()
    kept = {key for key in flat_keys(params) if options["--keep"].match(key)}
    assert kept == {"train.model", "train.epochs"}


def test_a_change_to_predict_does_not_make_train_stale():
    train_deps = set(STAGES["train"]["deps"])
    assert "src/digitrec/reading/batch.py" not in train_deps
    assert "src/digitrec/training/multiworker.py" in train_deps  # imported only for multi_worker


def test_resume_fingerprint_hashes_the_code_the_train_stage_runs():
    hashed = {path.relative_to(ROOT).as_posix() for path in resume.code_files()}
    assert hashed == code_closure(ROOT / "stages" / "train.py") - {"stages/train.py"}


def test_closure_follows_lazy_relative_and_nested_imports(tmp_path):
    package = tmp_path / "digitrec"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "b.py", "c.py", "unused.py", "sub/__init__.py"):
        (package / name).write_text("")
    (package / "sub" / "d.py").write_text("from .. import c\n")
    (package / "a.py").write_text("import os\n\ndef later():\n    from digitrec import b\n")
    (package / "b.py").write_text("from digitrec.sub.d import something\n")
    entry = tmp_path / "script.py"
    entry.write_text("from digitrec.a import later\n")
    found = {p.relative_to(tmp_path).as_posix() for p in codedeps.module_closure(entry, tmp_path)}
    assert found == {"digitrec/__init__.py", "digitrec/a.py", "digitrec/b.py", "digitrec/c.py",
                     "digitrec/sub/__init__.py", "digitrec/sub/d.py"}
