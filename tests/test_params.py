"""Every params section is checked once: a wrong type, a value out of range, an unknown or
missing key is one `error:` line naming the key, exit 1, no traceback, nothing written."""

import os
import sys
from pathlib import Path

import pytest
import yaml
from helpers import committed_params_text, doc_block, run_stage

from digitrec.catalog import resolve_auto
from digitrec.errors import DigitrecError
from digitrec.params import (
    Augment,
    DownloadParams,
    PredictParams,
    PrepareParams,
    TrainParams,
    read_params,
)
from digitrec.schema import parse_section

ROOT = Path(__file__).resolve().parents[1]
# The committed file: the tests pass whatever a user has put in the working copy.
SHIPPED_TEXT = committed_params_text()
SHIPPED = yaml.safe_load(SHIPPED_TEXT)


def test_code_defaults_equal_the_shipped_params_yaml(tmp_path):
    shipped = tmp_path / "params.yaml"
    shipped.write_text(SHIPPED_TEXT)
    params = read_params("dataset", "download", "prepare", "train", "predict", path=shipped)
    assert params.dataset == "mnist"
    assert params.download == DownloadParams()
    assert params.prepare == PrepareParams()
    assert params.train == TrainParams()
    assert params.predict == PredictParams()


def with_change(section: str, key: str | None, value) -> dict:
    """The shipped params with one value changed (`key` None: the whole section; a value of
    `...`: the key removed)."""
    params = yaml.safe_load(SHIPPED_TEXT)
    target = params
    if key is None:
        params[section] = value
        return params
    *parents, last = [section, *key.split(".")]
    for name in parents:
        if not isinstance(target.get(name), dict):
            target[name] = {}  # e.g. `augment: true`, changed field by field
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return params


# (section, key, bad value, what the error must say)
BAD = [
    ("train", "learning_rate", "abc",
     "train.learning_rate: expected auto, or a positive number, at most 10, got 'abc'"),
    ("train", "learning_rate", float("inf"),
     "train.learning_rate: expected auto, or a positive number"),
    ("train", "learning_rate", 0,
     "train.learning_rate: expected auto, or a positive number, at most 10, got 0"),
    ("train", "epochs", "3",
     "train.epochs: expected auto, or a whole number from 1 to 10000, got '3'"),
    ("train", "epochs", 1.5,
     "train.epochs: expected auto, or a whole number from 1 to 10000, got 1.5"),
    ("train", "epochs", 0, "train.epochs: expected auto, or a whole number from 1 to 10000, got 0"),
    ("train", "epochs", True, "train.epochs: expected auto, or a whole number"),
    ("train", "augment", [1, 2], "train.augment: expected true, false, or a mapping"),
    ("train", "augment", "yes", "train.augment: expected true, false, or a mapping"),
    ("train", "augment.shift", "big", "train.augment.shift: expected pixels, from 0 to 14"),
    ("train", "augment.redrawn", 1.5, "train.augment.redrawn: expected a share"),
    ("train", "optimizer", "rmsprop", "train.optimizer: expected one of adam, adamw, sgd"),
    ("train", "ema", "yes", "train.ema: expected true or false, got 'yes'"),
    ("train", "epochz", 3, "unknown setting train.epochz; train takes model, epochs"),
    ("train", "seed", ..., "missing setting train.seed"),
    ("prepare", "seed", "x", "prepare.seed: expected a whole number from 0 to 4294967295, got 'x'"),
    ("prepare", "val_size", ..., "missing setting prepare.val_size"),
    ("prepare", "val_size", 1.5, "prepare.val_size: expected a fraction between 0 and 1"),
    ("prepare", "val_size", 0, "prepare.val_size: expected a fraction"),
    ("prepare", "val_size", -0.1, "prepare.val_size: expected a fraction"),
    ("prepare", "val_size", 1.0, "prepare.val_size: expected a fraction"),
    ("download", "mirrors", "official", "download.mirrors: expected a list of mirrors"),
    ("download", "mirrors", [], "download.mirrors: expected a list of mirrors"),
    ("download", "verify", "no", "download.verify: expected true or false"),
    ("download", "deadline", -5, "download.deadline: expected seconds, above 0 and at most"),
    ("download", "deadline", "soon", "download.deadline: expected seconds, above 0"),
    ("download", "stall_window", 0, "download.stall_window: expected seconds, above 0"),
    ("download", "min_speed", -1, "download.min_speed: expected bytes per second, 0 or more"),
    ("download", "min_speed", True, "download.min_speed: expected bytes per second"),
    ("predict", "unsure_below", 2, "predict.unsure_below: expected a confidence from 0 to 1"),
    ("prepare", "seed", -1, "prepare.seed: expected a whole number from 0 to 4294967295"),
    ("train", "seed", 10**23, "train.seed: expected a whole number from 0 to 4294967295"),
    ("train", "epochs", 10**23, "train.epochs: expected auto, or a whole number from 1 to 10000"),
    ("train", "batch_size", 10**23, "train.batch_size: expected a whole number from 1 to"),
    ("train", "learning_rate", 1e300, "train.learning_rate: expected auto, or a positive"),
    ("train", "augment.shift", 1e300, "train.augment.shift: expected pixels, from 0 to 14"),
    ("download", "mirrors", ["ftp://x/"], "download.mirrors: expected a list of mirrors"),
    ("download", "mirrors", ["file://host/x"], "download.mirrors: expected a list of mirrors"),
    ("download", "mirrors", ["http://[::1"], "download.mirrors: expected a list of mirrors"),
    ("download", "mirrors", ["/tmp\0x"], "download.mirrors: expected a list of mirrors"),
    ("download", "mirrors", ["http://host/with space/"], "download.mirrors: expected a list"),
    ("download", "mirrors", ["http://host/x\x1b[2J"], "download.mirrors: expected a list"),
    ("download", "mirrors", ["http://u:p@/x"], "download.mirrors: expected a list"),
    ("download", "mirrors", ["http://reader:" + "TOKEN" * 20 + "@host/", "ftp://x/"],
     "got ['http://reader:***@host/', 'ftp://x/']"),
    ("predict", None, "pictures/", "predict: expected a mapping of settings"),
    ("predict", "images", "/proc", "predict.images: expected a folder of pictures (not under"),
    ("predict", "images", "/sys/class/", "predict.images: expected a folder of pictures"),
    ("predict", "images", "/dev/../proc/self", "predict.images: expected a folder of pictures"),
    ("dataset", None, "kmnist", "dataset: expected one of mnist, fashion_mnist, got 'kmnist'"),
]


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD,
                         ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD])
def test_bad_params_are_one_clear_error(tmp_path, section, key, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_change(section, key, value)))
    with pytest.raises(DigitrecError) as error:
        read_params(section, path=path)
    assert message in str(error.value)
    assert str(error.value).startswith(f"{path}: ")
    assert "\n" not in str(error.value)
    assert "TOKEN" not in str(error.value)


def test_good_forms_are_read():
    augments = ((True, Augment()), (False, None), ({"shift": 1}, Augment(shift=1.0)))
    for value, expected in augments:
        params = with_change("train", "augment", value)
        train = resolve_auto(params)["train"]
        assert parse_section(TrainParams, train, "train").augment == expected
    counted = with_change("prepare", "val_size", 250)["prepare"]
    assert parse_section(PrepareParams, counted, "prepare").val_size == 250


def test_file_level_problems(tmp_path, monkeypatch):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"train:\n  model: digitnet\xff\n")
    with pytest.raises(DigitrecError, match="not valid UTF-8"):
        read_params("train", path=path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(DigitrecError, match="not valid YAML"):
        read_params("train", path=path)
    path.write_text("- a list\n")
    with pytest.raises(DigitrecError, match="expected a mapping of sections"):
        read_params("train", path=path)
    path.unlink()
    monkeypatch.chdir(tmp_path)  # the default params.yaml, here missing: the wrong folder
    with pytest.raises(DigitrecError, match="params.yaml: not found; run from the project"):
        read_params("train")
    path.write_text("dataset: mnist\n")
    with pytest.raises(DigitrecError, match="missing section 'train'"):
        read_params("train", path=path)
    with pytest.raises(DigitrecError, match="missing.yaml: not found$"):
        read_params("train", path=tmp_path / "missing.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  epochs: 2\n  epochs: 3\n", 'not valid YAML: .*duplicate key "epochs"'),
    ("dataset: mnist\ntrian: {epochs: 3}\n", "unknown section 'trian'"),
    ("epochs: 1" + "0" * 5000 + "\n", "not a params file this project can read"),
    ("epochs: " + "[" * 10_000 + "]" * 10_000 + "\n", "not a params file this project can"),
    ("# padding\n" * 200_000, "more than a params file may hold"),
])
def test_malformed_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(DigitrecError, match=message):
        read_params("dataset", path=path)


def test_values_are_read_as_dvc_reads_them(tmp_path):
    """YAML 1.2, as DVC's parser: `1:30` and `on` are strings, not 90 and true."""
    params = with_change("train", "epochs", 10)
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(params)
    assert "epochs: 10" in text and "ema: false" in text
    path.write_text(text.replace("epochs: 10", "epochs: 1:30").replace("ema: false", "ema: on"))
    with pytest.raises(DigitrecError, match="train.epochs: expected auto, or a whole.*'1:30'"):
        read_params("train", path=path)
    path.write_text(text.replace("ema: false", "ema: on"))
    with pytest.raises(DigitrecError, match="train.ema: expected true or false, got 'on'"):
        read_params("train", path=path)


def test_an_exploding_alias_is_refused_quickly_with_a_short_message(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\ntrain:\n  epochs: *a8\n")
    with pytest.raises(DigitrecError) as error:
        read_params("train", path=path)
    assert len(str(error.value)) < 300


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    with pytest.raises(DigitrecError, match="not a regular file"):
        read_params("train", path=fifo)


@pytest.mark.parametrize(("stage", "section", "key", "value"), [
    ("prepare", "prepare", "val_size", 1.5),
    ("train", "train", "epochs", 1.5),
    ("download", "download", "mirrors", "official"),
])
def test_stage_with_bad_params_writes_nothing_and_exits_1(project, stage, section, key, value):
    project.set_params(**{section: {key: value}})
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*")
                    if ".git" not in p.parts)
    result = run_stage(project.root, stage, check=False)  # in this process
    assert result.returncode == 1
    assert result.stderr.startswith("error: params.yaml: ")
    assert f"{section}.{key}" in result.stderr
    assert "Traceback" not in result.stderr
    after = sorted(p.relative_to(project.root) for p in project.root.rglob("*")
                   if ".git" not in p.parts and "__pycache__" not in p.parts)
    assert after == [p for p in before if "__pycache__" not in p.parts]


def test_the_docs_accurate_setting_is_valid_and_is_what_the_benchmarks_train():
    block = yaml.safe_load(doc_block("training.md", "## The accurate setting", "yaml"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from train_speed import ACCURATE
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert block == {"train": ACCURATE}
    params = {**SHIPPED, "train": {**SHIPPED["train"], **block["train"]}}
    train = parse_section(TrainParams, resolve_auto(params)["train"], "train")
    assert train.model == ACCURATE["model"] and train.epochs == ACCURATE["epochs"]


@pytest.mark.parametrize("override", ["train.epochs=3", "train.model=cnn3",
                                      "download.verify=false",
                                      "download.mirrors=[/mnt/mnist,official]"])
def test_dvc_exp_run_set_param_keeps_every_comment(tmp_path, override):
    """`dvc exp run -S KEY=VALUE` rewrites params.yaml (DVC's own code, as here): it changes
    only the line of that key (and adds a list item), so every comment and the layout stay."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(SHIPPED_TEXT)
    apply_overrides(path, [override])
    before, after = SHIPPED_TEXT.splitlines(), path.read_text().splitlines()
    assert [line for line in before if line not in after] == (
        [] if override.startswith("download.mirrors") else
        [next(line for line in before if line.strip().startswith(
            override.split("=")[0].split(".")[-1] + ":"))])
    assert [line for line in before if line.lstrip().startswith("#")] == [
        line for line in after if line.lstrip().startswith("#")]
    assert len(after) - len(before) == (1 if override.startswith("download.mirrors") else 0)
