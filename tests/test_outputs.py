"""An output path never destroys what is there (issue 24, item 1): devices and FIFOs are
written into, links followed, a command's own inputs and files of another kind refused;
tried on real device nodes, FIFOs and links in a scratch folder, and on /dev/null itself."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from digitrec import cli, files, outputs
from digitrec.errors import DigitrecError
from digitrec.examples import draw_digit
from digitrec.reading import batch

CSV_HEAD = b"file,text,status,"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """Any model that answers probabilities: what is read does not matter here."""
    from digitrec.backend import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_digit(3, 120, pen=0.06, ink=20, paper=235, seed=3).save(folder / "three.png")
    (folder / "labels.csv").write_text("file,label\nthree.png,3\n")
    return folder


def null_device(folder: Path) -> Path:
    """A character device node like /dev/null (1, 3), made in a scratch folder."""
    node = folder / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make device nodes here (needs root)")
    return node


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


class FifoReader(threading.Thread):
    """Reads a FIFO to its end, as `cat fifo` would."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.data = path, b""
        self.start()

    def run(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()


# --- the helpers themselves --------------------------------------------------------------

def test_a_device_is_written_into_and_stays_a_device(tmp_path):
    node = null_device(tmp_path)
    files.atomic_write_bytes(node, b"gone into the void")
    files.atomic_write_json(node, {"a": 1})
    assert is_char_device(node)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_fifo_is_written_into(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    files.atomic_write_bytes(fifo, b"through the pipe")
    reader.join(10)
    assert reader.data == b"through the pipe"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_is_followed_never_replaced(tmp_path):
    target = tmp_path / "real" / "out.json"
    target.parent.mkdir()
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    files.atomic_write_json(link, {"written": True})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"written": true' in target.read_text()
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "new.json")
    files.atomic_write_json(dangling, {"new": 1})
    assert dangling.is_symlink() and (tmp_path / "real" / "new.json").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["new.json", "out.json"]


def test_a_link_to_a_folder_is_followed_by_a_folder_swap(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old").write_text("old")
    link = tmp_path / "out"
    link.symlink_to(real)
    with files.staging_dir(link) as staging:
        (staging / "new").write_text("new")
        files.replace_dir(staging, link)
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]


def block_device(folder: Path) -> Path:
    node = folder / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    return node


def test_check_output_refuses_what_writing_would_destroy(tmp_path):
    kind = outputs.csv_kind(["file", "prediction"])
    ours = tmp_path / "ours.csv"
    ours.write_bytes(b"file,prediction,x\n")
    outputs.check_output(ours, kind)
    (tmp_path / "empty.csv").write_bytes(b"")
    outputs.check_output(tmp_path / "empty.csv", kind)
    outputs.check_output(tmp_path / "new" / "deeper" / "x.csv", kind)
    foreign = tmp_path / "notes.csv"
    foreign.write_text("my notes")
    with pytest.raises(DigitrecError, match="notes.csv: exists and is a file that is not a "
                                            "CSV starting file,prediction,...; not replacing "
                                            "it without --force"):
        outputs.check_output(foreign, kind)
    outputs.check_output(foreign, kind, force=True)
    with pytest.raises(DigitrecError, match=r"move it away first"):
        outputs.check_output(foreign, kind, forced_by="")
    with pytest.raises(DigitrecError, match="is one of this command's inputs"):
        outputs.check_output(ours, kind, inputs=[tmp_path / "a", ours], force=True)
    os.link(ours, tmp_path / "hard.csv")  # the same file by another name
    with pytest.raises(DigitrecError, match="hard.csv: is one of this command's inputs"):
        outputs.check_output(tmp_path / "hard.csv", kind, inputs=[ours])
    with pytest.raises(DigitrecError, match="is a folder; give a file name"):
        outputs.check_output(tmp_path, kind)
    try:
        disk = block_device(tmp_path)
    except PermissionError:
        disk = None
    if disk is not None:
        with pytest.raises(DigitrecError, match="disk: is a block device"):
            outputs.check_output(disk, kind, force=True)
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(DigitrecError, match="sock: is a socket"):
            outputs.check_output(tmp_path / "sock", kind, force=True)
    finally:
        listening.close()
    with pytest.raises(DigitrecError, match=r"x\.\.\.\(3\d\d characters\)\.\.\.x+: "
                                            r"cannot write.*: the name is too long"):
        outputs.check_output(tmp_path / ("x" * 300), kind)


# --- the commands ------------------------------------------------------------------------

def test_predict_writes_into_devices_fifos_and_links(tmp_path, pictures, model_file, capsys):
    node = null_device(tmp_path)
    code, _, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                            "--csv", str(node)], capsys)
    assert code == 0, err
    assert is_char_device(node)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    code, _, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                            "--csv", str(fifo)], capsys)
    reader.join(10)
    assert code == 0, err
    assert reader.data.startswith(CSV_HEAD) and b"three.png" in reader.data
    target = tmp_path / "kept" / "predictions.csv"
    target.parent.mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, _, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                            "--csv", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes().startswith(CSV_HEAD)
    # Only now, with the scratch device shown to stay a device: the machine's own.
    code, _, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                            "--csv", "/dev/null"], capsys)
    assert code == 0, err
    assert is_char_device(Path("/dev/null"))


@pytest.mark.parametrize("victim", ["labels.csv", "three.png", "model", "hard link to model"])
def test_predict_refuses_to_write_over_its_inputs(tmp_path, pictures, model_file, capsys,
                                                  victim):
    if victim == "model":
        output = model_file
    elif victim == "hard link to model":
        output = tmp_path / "model-link.csv"
        os.link(model_file, output)
    else:
        output = pictures / victim
    before = output.read_bytes()
    code, out, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                              "--csv", str(output), "--force"], capsys)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "is one of this command's inputs" in err
    assert output.read_bytes() == before
    assert out == ""  # refused before any picture was read


def test_predict_replaces_an_earlier_csv_but_another_file_only_with_force(
        tmp_path, pictures, model_file, capsys):
    output = tmp_path / "out.csv"
    args = ["predict", str(pictures), "--model", str(model_file), "--csv", str(output)]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args, capsys)[0] == 0  # an earlier predictions CSV: replaced
    output.write_bytes(b"\x89PNG\r\n\x1a\nsomeone's picture")
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "not replacing it without --force" in err
    assert output.read_bytes().startswith(b"\x89PNG")
    assert run_cli([*args, "--force"], capsys)[0] == 0
    assert output.read_bytes().startswith(CSV_HEAD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "pictures"]


def test_predict_stage_outputs_are_checked_too(tmp_path, pictures, model_file):
    outputs = batch.BatchOutputs(csv=tmp_path / "p.csv", contact_sheet=tmp_path / "sheet.png",
                                 metrics=tmp_path / "predict.json", forced_by="")
    (tmp_path / "sheet.png").write_text("not a picture")
    with pytest.raises(DigitrecError, match="sheet.png: exists and is a file that is not a "
                                            r"PNG picture; not replacing it \(move it away"):
        batch.predict_batch(model_file, [pictures], outputs)
    assert not (tmp_path / "p.csv").exists()
    (tmp_path / "sheet.png").unlink()
    (tmp_path / "predict.json").symlink_to("/dev/null")
    batch.predict_batch(model_file, [pictures], outputs)
    assert (tmp_path / "predict.json").is_symlink() and is_char_device(Path("/dev/null"))
    assert (tmp_path / "sheet.png").read_bytes().startswith(b"\x89PNG")


def test_predict_refuses_an_empty_csv_name(pictures, model_file, capsys):
    code, _, err = run_cli(["predict", str(pictures), "--model", str(model_file),
                            "--csv", ""], capsys)
    assert code == 1 and err == "error: --csv: an empty file name; give the CSV file to write\n"
