"""A full disk, a read-only folder or a name too long is an expected failure (issue 24,
item 2): one `error:` line naming the path (and, for a full disk, the space needed and
free), the previous outputs kept, no scratch left. Tried on a real small file system (a
tmpfs mounted for the test, as root) rather than on mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import folder_digest, synthetic_dataset_arrays, write_raw

from digitrec import files
from digitrec.data import splits
from digitrec.errors import DigitrecError
from digitrec.examples import draw_digit
from digitrec.reading import batch

ROOT = Path(__file__).resolve().parents[1]


def mount_tmpfs(folder: Path, size: str, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs",
               str(folder)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(size)`: a tmpfs of that size at a new folder, unmounted afterwards."""
    mounted = []

    def make(size: str, *options: str, name: str = "disk") -> Path:
        folder = tmp_path / name
        mount_tmpfs(folder, size, *options)
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_prepare_on_a_full_disk_fails_cleanly_and_keeps_the_previous_output(
        tmp_path, small_disk, monkeypatch):
    raw_small, raw_big = tmp_path / "raw-small", tmp_path / "raw-big"
    write_raw(raw_small, synthetic_dataset_arrays(n_train=60, n_test=20))
    write_raw(raw_big, synthetic_dataset_arrays(n_train=600, n_test=200))
    disk = small_disk("1m")
    out = disk / "prepared"
    splits.prepare(raw_small, out, 10, 0)
    before = folder_digest(out)
    with pytest.raises(DigitrecError) as refused:  # checked before any work
        splits.prepare(raw_big, out, 100, 0)
    message = str(refused.value)
    assert message.startswith(f"{out}: cannot write: not enough space") and "\n" not in message
    assert "(needs 4.1 MB, 0.6 MB free)" in message
    monkeypatch.setattr(splits, "require_space", lambda path, needed: None)
    with pytest.raises(DigitrecError) as filled:  # and when the disk fills while writing
        splits.prepare(raw_big, out, 100, 0)
    assert str(filled.value).startswith(f"{out}: cannot write: no space left on the file "
                                        "system (needs 4.1 MB, ")
    assert folder_digest(out) == before
    assert everything_under(disk) == ["prepared", *(f"prepared/{n}" for n in sorted(before))]


def test_prepare_never_maps_what_it_writes(tmp_path, monkeypatch):
    """ENOSPC through a memory map is SIGBUS, which kills the process: no map for writing."""
    write_raw(tmp_path / "raw", synthetic_dataset_arrays(n_train=60, n_test=20))

    real = np.lib.format.open_memmap

    def read_only(*args, mode="r+", **kwargs):
        assert mode == "r", f"open_memmap(mode={mode!r}) while preparing"
        return real(*args, mode=mode, **kwargs)
    monkeypatch.setattr(np.lib.format, "open_memmap", read_only)
    manifest = splits.prepare(tmp_path / "raw", tmp_path / "prepared", 10, 0, negatives=0.1)
    redrawn = np.load(tmp_path / "prepared" / "train_redrawn.npy")
    images = np.load(tmp_path / "prepared" / "train_images.npy")
    assert redrawn.shape == images.shape == (50, 28, 28, 1) and images.dtype == np.float32
    assert manifest["splits"]["train"]["redrawn_pixel_mean"] == pytest.approx(redrawn.mean())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from digitrec.backend import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def pictures(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        draw_digit(index % 10, 120, pen=0.06, ink=20, paper=235,
                   seed=index).save(folder / f"{index}.png")
    return folder


def test_predict_on_a_full_disk_keeps_every_previous_output(tmp_path, small_disk, model_file):
    disk = small_disk("64k")
    outputs = batch.BatchOutputs(csv=disk / "predictions.csv",
                                 contact_sheet=disk / "contact_sheet.png",
                                 metrics=disk / "predict.json")
    batch.predict_batch(model_file, [pictures(tmp_path / "few", 1)], outputs)
    before = folder_digest(disk)
    with pytest.raises(DigitrecError) as full:
        batch.predict_batch(model_file, [pictures(tmp_path / "many", 40)], outputs)
    message = str(full.value)
    assert "\n" not in message and ": cannot write: no space left on the file system" in message
    assert message.startswith(str(disk)) and "free)" in message
    assert folder_digest(disk) == before  # the CSV too, though it fitted: all or nothing
    assert everything_under(disk) == sorted(before)


def test_read_only_and_too_long_names_are_one_error_line(tmp_path, small_disk, model_file):
    disk = small_disk("1m", "ro")
    source = pictures(tmp_path / "few", 1)
    for output, problem in [(disk / "out.csv", "the file system is read-only"),
                            (tmp_path / ("n" * 300 + ".csv"), "the name is too long")]:
        with pytest.raises(DigitrecError, match=f"cannot write.*: {problem}") as refused:
            batch.predict_batch(model_file, [source], batch.BatchOutputs(csv=output))
        assert "\n" not in str(refused.value)
    write_raw(tmp_path / "raw", synthetic_dataset_arrays(n_train=60, n_test=20))
    with pytest.raises(DigitrecError, match=f"^{disk / 'prepared'}: cannot write: the file "
                                            "system is read-only$"):
        splits.prepare(tmp_path / "raw", disk / "prepared", 10, 0)
    with pytest.raises(DigitrecError, match="x.bin: cannot write: the file system is read-only"):
        files.atomic_write_bytes(disk / "x.bin", b"data")
    longest = tmp_path / ("n" * 251 + ".csv")  # fits; its scratch's name must fit too
    batch.predict_batch(model_file, [source], batch.BatchOutputs(csv=longest))
    assert longest.read_bytes().startswith(b"file,")


def test_the_cli_reports_a_full_disk_in_one_line(tmp_path, small_disk, model_file, capsys):
    from digitrec import cli

    disk = small_disk("16k")
    (disk / "filler").write_bytes(b"\0" * 13_000)  # every page of it but the last bytes
    with pytest.raises(SystemExit) as stopped:
        cli.main(["predict", str(pictures(tmp_path / "p", 3)), "--model", str(model_file),
                  "--csv", str(disk / "out.csv")])
    err = capsys.readouterr().err
    assert stopped.value.code == 1, err
    assert err.startswith(f"error: {disk / 'out.csv'}: cannot write: no space left on "
                          "the file system (needs ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert everything_under(disk) == ["filler"]


def test_a_killed_runs_scratch_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out" / "predictions.csv"
    target.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (target.parent / f".predictions.csv.{dead}.abc123.tmp").write_text("half")
    (tmp_path / "out" / f".predictions.csv.{dead}.xyz").mkdir()
    mine = target.parent / f".predictions.csv.{os.getpid()}.live.tmp"
    mine.write_text("this process's own, still in use")
    files.atomic_write_csv(target, ["file"], [["a"]])
    assert everything_under(tmp_path / "out") == [mine.name, "predictions.csv"]
    (tmp_path / f".prepared.{dead}.q1w2e3").mkdir()  # a killed prepare's staging folder
    (tmp_path / f".prepared.{dead}.q1w2e3" / "train_images.npy").write_bytes(b"\0" * 100)
    with files.staging_dir(tmp_path / "prepared") as staging:
        assert everything_under(tmp_path).count(staging.name) == 1
    assert not any(p.name.startswith(".prepared.") for p in tmp_path.iterdir())


def test_evaluate_on_a_full_disk_keeps_every_previous_output(tmp_path, small_disk, model_file):
    from digitrec.evaluation.evaluate import evaluate

    write_raw(tmp_path / "raw", synthetic_dataset_arrays(n_train=100, n_test=60))
    splits.prepare(tmp_path / "raw", tmp_path / "prepared", 20, 0)
    disk = small_disk("48k")
    names = [str(d) for d in range(10)]
    (disk / "eval").mkdir()
    previous = {disk / "eval.json": b'{"accuracy": 0.5}', disk / "eval" / "per_class.csv":
                b"class,accuracy\n", disk / "eval" / "confusion.png": b"\x89PNG\r\n\x1a\n"}
    for path, content in previous.items():
        path.write_bytes(content)
    with pytest.raises(DigitrecError) as full:
        evaluate(model_file, tmp_path / "prepared", disk / "eval.json", disk / "eval", names)
    assert ": cannot write: no space left on the file system (needs " in str(full.value)
    assert all(path.read_bytes() == content for path, content in previous.items())
    assert everything_under(disk) == ["eval", "eval.json", "eval/confusion.png",
                                      "eval/per_class.csv"]
