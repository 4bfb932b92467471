"""`dvc repro` reruns exactly what changed: each stage depends on all the code it can run and
on nothing else, computed here from the code itself so dvc.yaml can never drift from it."""

from pathlib import Path

import pytest
import yaml

from digitrec import codedeps, run

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


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


def test_a_change_to_predict_does_not_make_train_stale():
    train_deps = set(STAGES["train"]["deps"])
    assert "src/digitrec/predict.py" not in train_deps
    assert "src/digitrec/multiworker.py" in train_deps  # imported only for multi_worker


def test_resume_fingerprint_hashes_the_code_the_train_stage_runs():
    hashed = {path.relative_to(ROOT).as_posix() for path in run.code_files()}
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
