import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitrec import images, predict
from digitrec.backend import keras
from digitrec.examples import draw_digit, make_examples


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small model that reads the example digits: trained on their own MNIST forms."""
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    digits, labels = [], []
    for digit in range(10):
        for seed in range(12):
            drawing = draw_digit(digit, 120, pen=0.05 + 0.01 * (seed % 3), ink=255, paper=0,
                                 seed=100 * digit + seed)
            digits.append(images.prepare_image(drawing).digit)
            labels.append(digit)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(np.stack(digits)[..., None], np.array(labels), epochs=40, verbose=0)
    path = folder / "model.keras"
    model.save(path)
    return path


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
        "truncated.png": "corrupt or truncated", "blank.png": "no ink found",
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
            np.testing.assert_allclose(reading.probabilities.sum(), 1.0, rtol=1e-4)
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


def run_cli(project, *args):
    return project.run(sys.executable, "-m", "digitrec.cli", *args, check=False)


@pytest.mark.slow
def test_cli_and_stage_agree(project, model_file):
    folder = project.root / "data" / "user_images"
    made = dict(make_examples(folder))
    (project.root / "models").mkdir()
    (project.root / "models" / "model.keras").write_bytes(model_file.read_bytes())

    stage = project.run(sys.executable, "stages/predict.py")
    assert f"predict: {len(made)} of {len(made)} pictures read (0 failed)" in stage.stdout
    with open(project.root / "data/predictions/predictions.csv", encoding="utf-8") as f:
        stage_rows = list(csv.DictReader(f))
    assert [row["file"] for row in stage_rows] == sorted(made)
    metrics = json.loads((project.root / "metrics/predict.json").read_text())
    assert metrics["images"] == len(made) and metrics["failed"] == 0
    assert metrics["labelled"] == len(made)
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
def test_cli_exits_non_zero_when_nothing_is_readable(project, model_file):
    (project.root / "junk").mkdir()
    (project.root / "junk" / "a.png").write_bytes(b"")
    result = run_cli(project, "predict", "junk", "--model", str(model_file))
    assert result.returncode == 1
    assert "a.png: error: empty file" in result.stdout
    assert "error: junk: none of the 1 files could be read" in result.stderr
    assert "Traceback" not in result.stderr


class TopHeavyModel:
    """Reads ink in the top half as a 1 (90% sure), anything else as a 4 (50% sure)."""

    def predict_on_batch(self, views: np.ndarray) -> np.ndarray:
        top = views[:, :14].sum(axis=(1, 2, 3)) > views[:, 14:].sum(axis=(1, 2, 3))
        probabilities = np.where(top[:, None], 0.1 / 9, 0.5 / 9) * np.ones((1, 10))
        probabilities[top, 1] = 0.9
        probabilities[~top, 4] = 0.5
        return probabilities


def test_a_doubtful_exif_turn_keeps_the_more_confident_reading():
    from digitrec.images import Prepared

    top, bottom = np.zeros((28, 28), np.float32), np.zeros((28, 28), np.float32)
    top[4:10, 8:20], bottom[18:24, 8:20] = 1.0, 1.0
    doubtful = predict.Reading("a.jpg", Path("a.jpg"), Prepared(bottom, True, None, top))
    turned_right = predict.Reading("b.jpg", Path("b.jpg"), Prepared(top, True, None, bottom))
    plain = predict.Reading("c.jpg", Path("c.jpg"), Prepared(bottom, True, None))
    predict.predict_readings(TopHeavyModel(), [doubtful, turned_right, plain])
    assert [r.prediction for r in (doubtful, turned_right, plain)] == [1, 1, 4]
