import csv
import json
import os
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import helpers
import numpy as np
import pytest
from PIL import Image

from digitrec.backend import keras
from digitrec.examples import draw_digit, make_examples
from digitrec.reading import batch as predict
from digitrec.reading import names, sheet


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    """The session's tiny model (conftest.py), trained once for every test that reads."""
    return tiny_model_file


def write_bad_inputs(folder):
    """Every kind of awkward file a user's folder may hold, and the outcome expected."""
    folder.mkdir(parents=True, exist_ok=True)
    good = draw_digit(7, 200, pen=0.05, ink=20, paper=235, seed=1)
    good.save(folder / "seven with spaces.png")
    good.save(folder / "sieben-ä-数字.jpg")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")
    buffer = folder / "whole.png"
    good.save(buffer)
    (folder / "truncated.png").write_bytes(buffer.read_bytes()[:200])
    buffer.unlink()
    Image.new("L", (400, 300), 240).save(folder / "blank.png")
    frames = [draw_digit(d, 120, pen=0.06, ink=0, paper=255, seed=d) for d in (3, 8)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    good.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(good, dtype=np.uint16) * 257).save(folder / "deep16.png")
    good.convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.new("L", (3000, 3000), 255).save(folder / "bomb.png")
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "sub" / "deeper").mkdir(parents=True)
    good.save(folder / "sub" / "deeper" / "nested.bmp")
    return {
        "seven with spaces.png": "", "sieben-ä-数字.jpg": "", "cmyk.jpg": "",
        "deep16.png": "", "palette.png": "", "animated.gif": "", "sub/deeper/nested.bmp": "",
        "notes.txt": "not an image", "empty.png": "empty file",
        "truncated.png": "corrupt or truncated", "blank.png": "",
        "bomb.png": "too large to decode safely",
    }


def test_bad_input_never_stops_the_batch(tmp_path, model_file, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # bomb.png is 9 Mpx
    expected = write_bad_inputs(tmp_path / "pictures")
    readings = predict.predict_paths(model_file, [tmp_path / "pictures"])
    by_name = {r.name: r for r in readings}
    assert set(by_name) == set(expected)  # hidden file skipped, subfolder read, relative name
    for name, problem in expected.items():
        reading = by_name[name]
        if problem:
            assert problem in reading.error, (name, reading.error)
            assert reading.probabilities is None
        else:
            assert reading.error == "", (name, reading.error)
            if name != "blank.png":
                np.testing.assert_allclose(reading.probabilities.sum(), 1.0, rtol=1e-4)
    assert by_name["blank.png"].status == "not_digits"  # read: it holds no digit
    assert by_name["animated.gif"].prediction == 3  # the first frame
    for name in ("seven with spaces.png", "sieben-ä-数字.jpg", "cmyk.jpg", "deep16.png",
                 "palette.png", "sub/deeper/nested.bmp"):
        assert by_name[name].prediction == 7, name


def test_folder_of_nothing_readable_fails_with_a_message(tmp_path, model_file):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    readings = predict.predict_paths(model_file, [folder])
    with pytest.raises(predict.DigitrecError, match="none of the 1 files could be read"):
        predict.require_some(readings, str(folder))


# --- hostile inputs: one row per case --------------------------------------------------------

def tiny_model(inputs=(28, 28, 1), outputs=10, activation="softmax"):
    return keras.Sequential([keras.Input(inputs), keras.layers.Flatten(),
                             keras.layers.Dense(outputs, activation=activation)])


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, model_file):
    """Model files that must be refused, by the name of what is wrong with them."""
    folder = tmp_path_factory.mktemp("bad_models")
    made = {}
    for name, model in [("wrong_input", tiny_model(inputs=(32, 32, 1))),
                        ("no_channel", tiny_model(inputs=(28, 28))),
                        ("three_outputs", tiny_model(outputs=3)),
                        ("raw_scores", tiny_model(activation=None)),
                        ("lambda", keras.Sequential([keras.Input((28, 28, 1)),
                                                     keras.layers.Lambda(lambda x: x * 2),
                                                     keras.layers.Flatten(),
                                                     keras.layers.Dense(10, "softmax")]))]:
        made[name] = folder / f"{name}.keras"
        model.save(made[name])
    good = model_file.read_bytes()
    made["text"] = folder / "text.keras"
    made["text"].write_text("this is not a model\n")
    made["truncated"] = folder / "truncated.keras"
    made["truncated"].write_bytes(good[: len(good) // 2])
    made["bit_flipped"] = folder / "bit_flipped.keras"
    made["bit_flipped"].write_bytes(flip_a_bit_in(model_file, "model.weights.h5"))
    made["h5_name"] = folder / "model.h5"
    made["h5_name"].write_bytes(good)
    made["folder"] = folder / "folder.keras"
    made["folder"].mkdir()
    made["fifo"] = folder / "fifo.keras"
    os.mkfifo(made["fifo"])
    made["missing"] = folder / "missing.keras"
    return made


def flip_a_bit_in(archive_path, member):
    """The archive's bytes with one bit flipped in the middle of `member`'s data."""
    data = bytearray(archive_path.read_bytes())
    with zipfile.ZipFile(archive_path) as archive:
        info = archive.getinfo(member)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:
                                                          info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x10
    return bytes(data)


@dataclass
class Hostile:
    """One hostile input: how to make it, and what the user must see.

    `arrange(folder, bad_models)` changes the picture folder (which holds one good picture,
    seven.png) and returns the run's arguments it overrides: model, paths, csv.
    A case either `raises` (a DigitrecError matching it; no output written), or succeeds
    with an error `row` (name, error part) and/or a `warning`.
    """

    arrange: Callable[[Path, dict], dict]
    raises: str = ""
    row: tuple[str, str] | None = None
    warning: str = ""


def labels_file(text, encoding="utf-8"):
    def arrange(folder, models):
        (folder / "labels.csv").write_bytes(text.encode(encoding))
        return {}
    return arrange


def picture_named(raw_name: bytes):
    def arrange(folder, models):
        with open(os.fsencode(folder) + b"/" + raw_name, "wb") as f:
            f.write((folder / "seven.png").read_bytes())
        return {}
    return arrange


def direct(make):
    """A path given on the command line beside the folder."""
    def arrange(folder, models):
        path = folder.parent / "direct"
        make(path)
        return {"paths": [folder, path]}
    return arrange


def fifo_in_folder(folder, models):
    os.mkfifo(folder / "pipe.png")
    (folder / "zeros.png").symlink_to("/dev/zero")
    return {}


def csv_to(where):
    def arrange(folder, models):
        target = folder.parent / where
        (folder.parent / "a_file").write_text("x")
        (folder.parent / "a_folder").mkdir(exist_ok=True)
        return {"csv": target, "model": models["text"]}  # the csv is checked first
    return arrange


def nothing_readable(folder, models):
    (folder / "seven.png").write_bytes(b"not a picture")
    return {}


HOSTILE = {
    **{f"model {name}": Hostile(lambda f, m, name=name: {"model": m[name]}, raises=message)
       for name, message in [
           ("text", r"text.keras: not a readable Keras model \(not a zip archive"),
           ("truncated", r"truncated.keras: not a readable Keras model"),
           ("bit_flipped", r"bit_flipped.keras: not a readable Keras model \(damaged"),
           ("lambda", r"lambda.keras: not a readable Keras model"),
           ("h5_name", r"model.h5: not a Keras model file \(the name must end in .keras"),
           ("folder", r"folder.keras: not a regular file"),
           ("fifo", r"fifo.keras: not a regular file"),
           ("missing", r"missing.keras: no model file"),
           ("wrong_input", r"takes input \(None, 32, 32, 1\), not \(None, 28, 28, 1\)"),
           ("no_channel", r"takes input \(None, 28, 28\), not"),
           ("three_outputs", r"gives output \(None, 3\), not \(None, 10\)"),
           ("raw_scores", r"outputs are not probabilities"),
       ]},
    "name not UTF-8": Hostile(picture_named(b"caf\xe9 \xff.png"),
                              row=("caf\\xe9 \\xff.png", "")),
    "name with a newline": Hostile(picture_named(b"two\nlines.png"),
                                   row=("two\\nlines.png", "")),
    "name with a backslash": Hostile(picture_named(b"back\\slash.png"),
                                     row=("back\\\\slash.png", "")),
    "labels with a BOM": Hostile(labels_file("\ufefffile,label\nseven.png,7\n")),
    "labels naming ./seven.png": Hostile(labels_file("file,label\n./seven.png,7\n")),
    "labels with two paths given": Hostile(
        lambda f, m: {**labels_file("file,label\nseven.png,7\n")(f, m),
                      **direct(lambda p: p.write_bytes((f / "seven.png").read_bytes()))(f, m)}),
    "labels not UTF-8": Hostile(labels_file("file,label\nsieben-\xe4.png,7\n", "latin-1"),
                                raises=r"labels.csv:2: not UTF-8"),
    "label 1.5": Hostile(labels_file("file,label\nseven.png,1.5\n"),
                         raises=r"labels.csv:2: label '1.5' is not digits \(such as 7 or "
                                r"0869, at most 40\) or 'none'"),
    "label -1": Hostile(labels_file("file,label\nx.png,1\nseven.png,-1\n"),
                        raises=r"labels.csv:3: label '-1' is not digits"),
    "label x": Hostile(labels_file("file,label\nseven.png,x\n"),
                       raises=r"labels.csv:2: label 'x' is not digits"),
    "labels without header": Hostile(labels_file("seven.png,7\n"),
                                     raises=r"labels.csv:1: expected a header"),
    "labels twice": Hostile(labels_file("file,label\nseven.png,1\nseven.png,7\n"),
                            warning="listed more than once, the last line wins: seven.png "
                                    "on lines 2, 3"),
    "labels for no picture": Hostile(labels_file("file,label\nseven.png,7\nghost.png,1\n"),
                                     warning="1 names match no picture: ghost.png"),
    "labels with a lone backslash": Hostile(
        labels_file("file,label\nseven.png,7\nback\\slash.png,1\n"),
        raises=r"labels.csv:3: in the file name, a backslash at character 5 starts no escape "
               r"\(a backslash in a name is written \\\\, as predictions.csv shows it\)"),
    "labels with a backslash for no picture": Hostile(
        labels_file("file,label\nseven.png,7\nnew\\new.png,1\n"),  # \n: a newline
        warning="1 names match no picture: new\\new.png (a backslash in a name is written "
                "\\\\"),
    "csv to a folder": Hostile(csv_to("a_folder"), raises=r"a_folder: is a folder"),
    "csv under a file": Hostile(csv_to("a_file/out.csv"),
                                raises=r"out.csv: cannot write there: .*a_file is not a folder"),
    "csv unwritable": Hostile(lambda f, m: {"csv": Path("/proc/digitrec/out.csv"),
                                            "model": m["text"]},
                              raises=r"out.csv: cannot write there"),
    "fifo given": Hostile(direct(os.mkfifo), row=("direct", "not a regular file (a FIFO)")),
    "link loop given": Hostile(direct(lambda p: p.symlink_to(p)),
                               row=("direct", "Too many levels of symbolic links")),
    "broken link given": Hostile(direct(lambda p: p.symlink_to(p.parent / "gone")),
                                 row=("direct", "broken symbolic link")),
    "fifo and /dev/zero in folder": Hostile(fifo_in_folder,
                                            row=("pipe.png", "not a regular file (a FIFO)")),
    "no such path": Hostile(lambda f, m: {"paths": [f / "nope"]}, raises="nope: no such file"),
    "nothing readable": Hostile(nothing_readable, raises="none of the 1 files could be read"),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_gets_a_clear_answer(tmp_path, model_file, bad_models, case):
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_digit(7, 200, pen=0.05, ink=20, paper=235, seed=1).save(folder / "seven.png")
    run = {"model": model_file, "paths": [folder], "csv": tmp_path / "out" / "predictions.csv"}
    run.update(case.arrange(folder, bad_models))
    outputs = predict.BatchOutputs(csv=run["csv"], contact_sheet=tmp_path / "out" / "sheet.png",
                              metrics=tmp_path / "out" / "predict.json")
    previous = {}  # a previous run's outputs, which a failure must keep
    for path, content in zip(outputs.paths(), (b"file,prediction,previous\n",
                                               b"\x89PNG\r\n\x1a\nprevious",
                                               b'{"previous": 1}'), strict=True):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            previous[path] = content
        except OSError:
            pass  # the places no CSV can be written

    if case.raises:
        with pytest.raises(predict.DigitrecError, match=case.raises) as error:
            predict.predict_batch(run["model"], run["paths"], outputs)
        assert "\n" not in str(error.value)
        assert previous and all(path.read_bytes() == content
                                for path, content in previous.items())
        return

    batch = predict.predict_batch(run["model"], run["paths"], outputs)
    with open(outputs.csv, encoding="utf-8", newline="") as f:  # strict UTF-8
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert set(rows) == {r.name for r in batch.readings}
    assert any(name.endswith("seven.png") and row["prediction"] == "7"
               for name, row in rows.items())
    if case.row:
        name, problem = case.row
        (row,) = [row for file, row in rows.items() if file.split("/")[-1] == name]
        assert problem in row["error"], row
    warnings = "\n".join(batch.warnings)
    assert case.warning in warnings
    if not case.warning:
        assert not warnings
    assert json.loads(outputs.metrics.read_text())["images"] == len(rows)
    with Image.open(outputs.contact_sheet) as sheet:  # a 300 x 96 cell per picture, 4 a row
        assert sheet.size == (4 * 300, -(-len(rows) // 4) * 96), sheet.size


TRICKY_NAMES = [b"caf\xe9.png", b"caf\\xe9.png", b"\\", b"\\\\", b"two\nlines", b"two\\nlines",
                "\xa0.png".encode(), b"\xa0.png", b"\x1b[31m.png", b"\\x1b[31m.png",
                "\u2028".encode(), b"\\u2028", "\U0001f600".encode(), "sieben-ä-数字.jpg".encode(),
                "café.png".encode(), "cafe\u0301.png".encode(), b"cafe\\u0301.png",  # NFC, NFD
                "\ud55c.png".encode(), "\u1112\u1161\u11ab.png".encode()]  # and Hangul


def test_every_file_name_shows_as_itself_alone():
    shown = [names.readable(name) for name in TRICKY_NAMES]
    assert len(set(shown)) == len(TRICKY_NAMES)
    import unicodedata  # and never two that look alike (an NFC name and its NFD twin)
    assert len({unicodedata.normalize("NFC", text) for text in shown}) == len(TRICKY_NAMES)
    assert all(text.isprintable() for text in shown)
    assert [names.name_bytes(text) for text in shown] == TRICKY_NAMES


def test_names_that_used_to_escape_alike_are_two_rows_labelled_apart(tmp_path, model_file):
    """A name with a byte that is not UTF-8, and one with a real backslash and "xe9"."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for raw, digit in ((b"caf\xe9.png", 3), (b"caf\\xe9.png", 7)):
        picture = os.fsdecode(os.fsencode(folder) + b"/" + raw)
        draw_digit(digit, 160, pen=0.05, ink=20, paper=235, seed=digit).save(picture)
    (folder / "labels.csv").write_text("file,label\ncaf\\xe9.png,3\ncaf\\\\xe9.png,7\n")
    out = predict.BatchOutputs(csv=tmp_path / "p.csv", contact_sheet=tmp_path / "sheet.png")
    batch = predict.predict_batch(model_file, [folder], out)
    with open(out.csv, encoding="utf-8", newline="") as f:
        rows = {row["file"]: row["prediction"] for row in csv.DictReader(f)}
    assert rows == {"caf\\xe9.png": "3", "caf\\\\xe9.png": "7"}
    assert batch.labels == {"caf\\xe9.png": "3", "caf\\\\xe9.png": "7"}
    assert (batch.figures["labelled"], batch.figures["correct"]) == (2, 2)
    assert batch.warnings == []


def test_labels_give_accuracy_and_the_misread(tmp_path, model_file):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for digit in (1, 3, 7):
        draw_digit(digit, 160, pen=0.05, ink=20, paper=235, seed=digit).save(
            folder / f"d{digit}.png")
    (folder / "labels.csv").write_text("\ufefffile,label\nd1.png,1\nd3.png,3\nd7.png,2\n",
                                       encoding="utf-8")
    batch = predict.predict_batch(model_file, [folder])
    assert [r.prediction for r in batch.readings] == [1, 3, 7]
    assert batch.figures["labelled"] == 3 and batch.figures["correct"] == 2
    assert [r.name for r in batch.misread()] == ["d7.png"]
    assert "2/3 correct (66.7%)" in predict.summary_line(batch)


@pytest.mark.parametrize(("threshold", "unsure"), [(0.0, False), (1.0, True)])
def test_unsure_readings_are_marked(tmp_path, model_file, threshold, unsure):
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_digit(3, 160, pen=0.05, ink=20, paper=235, seed=3).save(folder / "three.png")
    out = predict.BatchOutputs(csv=tmp_path / "p.csv", metrics=tmp_path / "p.json")
    batch = predict.predict_batch(model_file, [folder], out, threshold=threshold)
    with open(out.csv, encoding="utf-8") as f:
        (row,) = csv.DictReader(f)
    assert row["unsure"] == ("true" if unsure else "false")
    assert json.loads(out.metrics.read_text())["unsure"] == int(unsure)
    assert ("unsure" in predict.summary_line(batch))


def test_class_names_label_the_csv(tmp_path, model_file):
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_digit(7, 160, pen=0.05, ink=20, paper=235, seed=7).save(folder / "seven.png")
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    (folder / "labels.csv").write_text("file,label\nseven.png,seven\n")
    out = predict.BatchOutputs(csv=tmp_path / "p.csv", contact_sheet=tmp_path / "sheet.png")
    batch = predict.predict_batch(model_file, [folder], out, class_names=names)
    with open(out.csv, encoding="utf-8") as f:
        (row,) = csv.DictReader(f)
    assert (row["prediction"], row["class"]) == ("7", "seven")
    assert batch.figures["correct"] == 1


def test_big_folders_keep_only_what_the_sheet_shows(tmp_path, model_file):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(5):
        draw_digit(index, 80, pen=0.06, ink=0, paper=255, seed=index).save(
            folder / f"{index}.png")
    readings = predict.predict_pictures(model_file, predict.find_pictures([folder]),
                                        keep_cleaned=2)
    assert [r.cleaned is not None for r in readings] == [True, True, False, False, False]
    assert all(r.probabilities is not None for r in readings)
    sheet.draw_contact_sheet(readings, {}, tmp_path / "sheet.png", columns=2, limit=2)
    with Image.open(tmp_path / "sheet.png") as drawn:
        assert drawn.size == (2 * 300, 96 + 24)  # one row, and the line about the other 3


def run_cli(project, *args):
    """`digitrec ARGS` in the project, in this process (helpers.run_cli)."""
    return helpers.run_cli(project.root, *args)


def run_cli_process(project, *args):
    """`python -m digitrec.cli ARGS` in its own process: its real exit code and output."""
    return project.run(sys.executable, "-m", "digitrec.cli", *args, check=False)


def test_cli_and_stage_agree(project, model_file):
    folder = project.root / "data" / "user_images"
    made = dict(make_examples(folder))
    (project.root / "models").mkdir()
    (project.root / "models" / "model.keras").write_bytes(model_file.read_bytes())

    stage = helpers.run_stage(project.root, "predict")
    assert f"predict: {len(made)} of {len(made)} pictures read (0 failed, " in stage.stdout
    with open(project.root / "data/predictions/predictions.csv", encoding="utf-8") as f:
        stage_rows = list(csv.DictReader(f))
    assert [row["file"] for row in stage_rows] == sorted(made)
    metrics = json.loads((project.root / "metrics/predict.json").read_text())
    assert metrics["images"] == len(made) and metrics["failed"] == 0
    assert set(metrics) == {"images", "failed", "unsure", "not_digits", "accuracy"}
    assert metrics["accuracy"] == pytest.approx(
        sum(int(r["prediction"]) == made[r["file"]] for r in stage_rows) / len(made))
    assert metrics["accuracy"] >= 0.8
    with Image.open(project.root / "data/predictions/contact_sheet.png") as sheet:
        assert sheet.width >= 600

    cli = run_cli(project, "predict", "data/user_images", "--csv", "cli.csv")
    assert cli.returncode == 0, cli.stderr
    with open(project.root / "cli.csv", encoding="utf-8") as f:
        cli_rows = list(csv.DictReader(f))
    assert cli_rows == stage_rows
    for row in stage_rows:
        assert f"{row['file']}: {row['prediction']} (" in cli.stdout

    single = run_cli(project, "predict", "data/user_images/photo_3.jpg")
    expected = {row["file"]: row["prediction"] for row in stage_rows}["photo_3.jpg"]
    assert single.stdout.startswith(f"photo_3.jpg: {expected} (")


@pytest.mark.slow
def test_failed_predict_under_dvc_repro_keeps_the_previous_outputs(pipeline_ran):
    """On a copy of the session's pipeline run (conftest.py), whose `dvc repro` ran predict."""
    project = pipeline_ran
    folder = project.root / "data" / "user_images"
    kept = [project.root / "data/predictions/predictions.csv",
            project.root / "data/predictions/contact_sheet.png",
            project.root / "metrics/predict.json"]
    before = [path.read_bytes() for path in kept]
    for picture in folder.iterdir():
        if picture.name != "labels.csv":
            picture.write_bytes(b"not a picture any more")
    result = project.dvc("repro", "--single-item", "predict", check=False)
    assert result.returncode != 0
    assert "could be read as a picture of a digit" in result.stdout + result.stderr
    assert "photo_3.jpg: not an image" in result.stdout + result.stderr  # and why, each
    assert [path.read_bytes() for path in kept] == before


@pytest.mark.slow
def test_cli_exits_non_zero_when_nothing_is_readable(project, model_file):
    (project.root / "junk").mkdir()
    (project.root / "junk" / "a.png").write_bytes(b"")
    result = run_cli_process(project, "predict", "junk", "--model", str(model_file))
    assert result.returncode == 1
    assert "a.png: error: empty file" in result.stdout
    assert "error: junk: none of the 1 files could be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_accuracy_misreads_and_bad_models(project, model_file, bad_models):
    folder = project.root / "mine"
    folder.mkdir()
    for digit in (1, 3):
        draw_digit(digit, 160, pen=0.05, ink=20, paper=235, seed=digit).save(
            folder / f"d{digit}.png")
    with open(os.fsencode(folder) + b"/\xff.png", "wb") as f:
        f.write((folder / "d3.png").read_bytes())
    (folder / "labels.csv").write_text("file,label\nd1.png,1\nd3.png,8\nghost.png,2\n")

    result = run_cli(project, "predict", "mine", "--model", str(model_file), "--csv", "out.csv",
                     "--unsure-below", "1")
    assert result.returncode == 0, result.stderr
    assert "d1.png: 1 (" in result.stdout and ", unsure)" in result.stdout
    assert "\\xff.png: 3 (" in result.stdout
    assert "misread (1):\n  d3.png: read 3, label 8" in result.stdout
    assert "1/2 correct (50.0%)" in result.stdout
    assert "warning: mine/labels.csv: 1 names match no picture: ghost.png" in result.stderr

    result = run_cli(project, "predict", "mine", "--model", str(bad_models["raw_scores"]),
                     "--csv", "out.csv")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("outputs are not probabilities (finite, 0 to 1, "
                                          "summing to 1); its last layer needs a softmax")
    assert "Traceback" not in result.stderr and result.stdout == ""
    with open(project.root / "out.csv", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 3  # the first run's CSV, kept


def test_cli_names_classes_by_the_project_dataset(tmp_path, monkeypatch):
    from digitrec import cli

    monkeypatch.chdir(tmp_path)
    assert cli.project_class_names()[:3] == ("0", "1", "2")  # no project here: digits
    (tmp_path / "params.yaml").write_text("dataset: fashion_mnist\n")
    assert cli.project_class_names()[:2] == ("T-shirt/top", "Trouser")


class TopHeavyModel:
    """Reads ink in the top half as a 1 (99% sure), anything else as a 4 (85% sure)."""

    def predict_on_batch(self, views: np.ndarray) -> np.ndarray:
        top = views[:, :14].sum(axis=(1, 2, 3)) > views[:, 14:].sum(axis=(1, 2, 3))
        probabilities = np.where(top[:, None], 0.01 / 9, 0.15 / 9) * np.ones((1, 10))
        probabilities[top, 1] = 0.99
        probabilities[~top, 4] = 0.85
        return probabilities


def test_a_doubtful_exif_turn_keeps_the_more_confident_reading():
    from digitrec.reading.images import Cleaned, Layout
    from digitrec.reading.segment import Candidate

    def cleaned(digit, as_stored=None):
        ways = [digit] if as_stored is None else [digit, as_stored]
        layouts = [Layout([Candidate(0, 1, 1, 0, way[None], [(0, 0, 28, 28)], [1.0])],
                          [(0, 0, 28, 28)], 1.0, turned=way is digit) for way in ways]
        return Cleaned(digit, True, None, as_stored, layouts=layouts)

    top, bottom = np.zeros((28, 28), np.float32), np.zeros((28, 28), np.float32)
    top[4:10, 8:20], bottom[18:24, 8:20] = 1.0, 1.0
    doubtful = predict.Reading("a.jpg", Path("a.jpg"), cleaned(bottom, top))
    turned_right = predict.Reading("b.jpg", Path("b.jpg"), cleaned(top, bottom))
    plain = predict.Reading("c.jpg", Path("c.jpg"), cleaned(bottom))
    predict.predict_readings(TopHeavyModel(), [doubtful, turned_right, plain])
    assert [r.prediction for r in (doubtful, turned_right, plain)] == [1, 1, 4]
