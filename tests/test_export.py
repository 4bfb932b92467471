"""`digitrec export`: each format is written, runs in its own runtime with Keras' answers, and
a mismatch or a bad target is an error that leaves what was there untouched."""

import dataclasses

import numpy as np
import pytest

from digitrec import cli
from digitrec.errors import DigitrecError
from digitrec.examples import draw_digit
from digitrec.modelfile import load_model
from digitrec.reading.images import clean_file, clean_image
from digitrec.serving import export


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    """The session's tiny model (conftest.py), trained once for every test that reads."""
    return tiny_model_file


def user_digits() -> np.ndarray:
    """Digits the export's own check does not use (other pens, sizes and seeds)."""
    pictures = [draw_digit(d, 200, pen=0.07, ink=10, paper=250, seed=700 + d) for d in range(10)]
    return np.stack([clean_image(p).digit for p in pictures])[..., None].astype(np.float32)


def entries(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("format", "name"), [("savedmodel", "digits_savedmodel"),
                                              ("onnx", "digits.onnx"),
                                              ("tflite", "digits.tflite")])
def test_each_format_runs_in_its_runtime_like_keras(tmp_path, model_file, capsys, format, name):
    output = tmp_path / "out" / name
    with pytest.raises(SystemExit) as stopped:
        cli.main(["export", "--model", str(model_file), "--format", format,
                  "--output", str(output)])
    assert stopped.value.code == 0
    assert "same answers as Keras" in capsys.readouterr().out
    assert entries(output.parent) == [name]  # nothing left beside it
    digits = user_digits()
    expected = load_model(model_file).predict_on_batch(digits)
    got = export.FORMATS[format].run(output, digits)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(got, axis=1), np.argmax(expected, axis=1))


def test_savedmodel_export_replaces_an_earlier_one_and_only_that(tmp_path, model_file):
    output = tmp_path / "savedmodel"
    export.export(model_file, "savedmodel", output)
    first = (output / "saved_model.pb").stat().st_ino
    export.export(model_file, "savedmodel", output)
    assert (output / "saved_model.pb").stat().st_ino != first
    notes = output / "notes.txt"
    notes.write_text("the user's")
    with pytest.raises(DigitrecError, match="files this command did not write.*--force"):
        export.export(model_file, "savedmodel", output)
    assert notes.read_text() == "the user's"
    export.export(model_file, "savedmodel", output, force=True)
    assert (output / "saved_model.pb").is_file()
    assert not notes.exists()
    assert entries(tmp_path) == ["savedmodel"]


EXPECTED = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])

COMPARISONS = [
    # (what the export answered, error words or "" when it is accepted)
    (EXPECTED, ""),
    (EXPECTED + 5e-5, ""),
    (EXPECTED + np.array([[2e-4, 0, 0], [0, 0, 0]]), "differ from the Keras model's by up to"),
    (np.where(EXPECTED == 0.7, np.nan, EXPECTED), "differ"),
    (np.array([[0.1, 0.45, 0.45000001], [0.5, 0.3, 0.2]]), "differ"),
    (EXPECTED.ravel()[:5], "answers"),
]


@pytest.mark.parametrize(("got", "problem"), COMPARISONS)
def test_compare_accepts_only_matching_answers(got, problem):
    if problem:
        with pytest.raises(DigitrecError, match=problem):
            export.compare(EXPECTED, got, "x")
    else:
        assert export.compare(EXPECTED, got, "x").count == 2


def test_compare_refuses_a_changed_digit_even_within_tolerance():
    expected = np.array([[0.5, 0.49999, 0.00001]])
    got = np.array([[0.49999, 0.5, 0.00001]])
    with pytest.raises(DigitrecError, match="reads 1 of 1 check digits differently"):
        export.compare(expected, got, "x")


def test_a_mismatching_export_is_an_error_and_keeps_the_old_file(tmp_path, model_file,
                                                                 monkeypatch):
    output = tmp_path / "digits.onnx"
    output.write_bytes(b"\x08 the previous, good export")
    real = export.FORMATS["onnx"].run
    broken = dataclasses.replace(export.FORMATS["onnx"],  # a broken converter
                                 run=lambda path, digits: real(path, digits) + 1e-3)
    monkeypatch.setitem(export.FORMATS, "onnx", broken)
    with pytest.raises(DigitrecError, match="differ from the Keras model's"):
        export.export(model_file, "onnx", output)
    assert output.read_bytes() == b"\x08 the previous, good export"
    assert entries(tmp_path) == ["digits.onnx"]


@pytest.mark.parametrize(("format", "make", "problem"), [
    ("savedmodel", "folder with a file", "files this command did not write"),
    ("savedmodel", "file", "is a file; give a folder name"),
    ("onnx", "folder with a file", "is a folder"),
    ("onnx", "file", "is a file that is not an ONNX model; not replacing it without --force"),
    ("tflite", "file", "is a file that is not a TensorFlow Lite model"),
])
def test_export_never_overwrites_what_it_did_not_write(tmp_path, model_file, format, make,
                                                       problem):
    output = tmp_path / "target"
    if make == "file":
        output.write_text("keep me")
    else:
        output.mkdir()
        (output / "notes.txt").write_text("keep me")
    with pytest.raises(DigitrecError, match=problem):
        export.export(model_file, format, output)
    kept = output if make == "file" else output / "notes.txt"
    assert kept.read_text() == "keep me"
    assert entries(tmp_path) == ["target"]


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{tmp}/missing.keras", "--format", "onnx"], "missing.keras: no model"),
    (["--model", "{tmp}/junk.keras", "--format", "tflite"], "not a readable Keras model"),
])
def test_export_of_a_bad_model_file_is_a_clear_error(tmp_path, capsys, args, message):
    (tmp_path / "junk.keras").write_bytes(b"not a zip at all")
    argv = ["export", *[a.format(tmp=tmp_path) for a in args], "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_default_output_and_the_docs_onnx_snippet_as_pasted(tmp_path, model_file, capsys,
                                                            monkeypatch):
    """In a project's root, `digitrec export --format onnx` writes models/model.onnx, and
    the docs' ONNX Runtime snippet runs there as pasted, on a picture the project ships."""
    import shutil
    from pathlib import Path

    from helpers import doc_block

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "models").mkdir()
    shutil.copy2(model_file, tmp_path / "models" / "model.keras")
    (tmp_path / "data" / "user_images").mkdir(parents=True)
    shutil.copy2(root / "data" / "user_images" / "photo_7.jpg", tmp_path / "data" / "user_images")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["export", "--format", "onnx"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("wrote models/model.onnx (onnx)")

    exec(doc_block("export.md", "With ONNX Runtime:", "python"), {})
    printed = capsys.readouterr().out
    digit = clean_file(tmp_path / "data" / "user_images" / "photo_7.jpg").digit
    expected = load_model(model_file).predict_on_batch(digit[None, :, :, None])[0]
    assert printed.startswith(f"{expected.argmax()} (")


def test_export_writes_into_a_device_and_never_over_its_model(tmp_path, model_file, capsys):
    import os
    import shutil
    import stat

    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make device nodes here (needs root)")
    export.export(model_file, "tflite", node)
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    before = model_file.read_bytes()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["export", "--model", str(model_file), "--format", "onnx",
                  "--output", str(model_file), "--force"])
    assert stopped.value.code == 1
    assert "is one of this command's inputs" in capsys.readouterr().err
    assert model_file.read_bytes() == before
    other = tmp_path / "other.keras"  # a model, but not this command's input
    shutil.copy(model_file, other)
    with pytest.raises(DigitrecError, match="not an ONNX model; not replacing it without "
                                            "--force"):
        export.export(model_file, "onnx", other)
    assert other.read_bytes() == before
    export.export(model_file, "onnx", other, force=True)
    assert other.read_bytes()[:1] == b"\x08"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "other.keras"]
