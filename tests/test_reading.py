"""Reading what a picture says: whole numbers left to right (apart, touching, one digit
drawn in two strokes), "not a digit" for letters and marks, and a clear answer for
pictures that hold too much, all through the path `predict` and `serve` share."""

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw
from tiny_model import drawn_digits

from digitrec.data.negatives import draw_negatives
from digitrec.examples import draw_digit, draw_number
from digitrec.reading import batch as predict
from digitrec.reading.labels import answers


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, trains_a_model):
    """A small model that reads the drawn digits and spreads its belief evenly over the ten
    classes for negatives (outlier exposure), as the pipeline's model is trained to."""
    keras.utils.set_random_seed(0)
    digits, labels = drawn_digits()
    negatives = draw_negatives(240, seed=0)[..., None]
    targets = np.concatenate([np.eye(10)[labels], np.full((len(negatives), 10), 0.1)])
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    model.fit(np.concatenate([digits, negatives]), targets, epochs=40, verbose=0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def letter(text: str, size: int) -> Image.Image:
    """Dark capital letters on paper, in Pillow's own font (present on every machine)."""
    from PIL import ImageFont

    image = Image.new("L", (size * len(text), size), 235)
    font = ImageFont.load_default(size=int(size * 0.8))
    ImageDraw.Draw(image).text((size * 0.1, size * 0.05), text, fill=20, font=font)
    return image


def read_folder(model_file, folder, tmp_path):
    outputs = predict.BatchOutputs(csv=tmp_path / "out" / "predictions.csv",
                                   readings=tmp_path / "out" / "readings.json",
                                   contact_sheet=tmp_path / "out" / "sheet.png",
                                   metrics=tmp_path / "out" / "predict.json")
    batch = predict.predict_batch(model_file, [folder], outputs)
    return batch, outputs


def read_picture(model_file, picture: Image.Image, tmp_path) -> predict.Reading:
    """What the reader makes of one picture, saved as a PNG in a folder of its own."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    picture.save(folder / "picture.png")
    batch, _ = read_folder(model_file, folder, tmp_path)
    return batch.readings[0]


def test_numbers_are_read_whole_left_to_right(model_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    written = {"apart.png": ("4071", 0.3), "close.png": ("0869", 0.08),
               "touching.png": ("35", -0.04), "lone.png": ("7", 0.0)}
    for name, (text, gap) in written.items():
        draw_number(text, 140, pen=0.05, ink=20, paper=235, seed=3, gap=gap).save(folder / name)
    (folder / "labels.csv").write_text("file,label\n" + "".join(
        f"{name},{text}\n" for name, (text, _) in written.items()))

    batch, outputs = read_folder(model_file, folder, tmp_path)

    got = {r.name: r.text for r in batch.readings}
    assert got == {name: text for name, (text, _) in written.items()}
    assert batch.figures["accuracy"] == 1.0 and batch.figures["digit_accuracy"] == 1.0
    with open(outputs.csv, encoding="utf-8", newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert rows["close.png"]["text"] == "0869"  # leading zero kept, as text
    assert rows["apart.png"]["prediction"] == ""  # the single-digit columns: one digit only
    assert rows["lone.png"]["prediction"] == "7" and rows["lone.png"]["p7"] != ""
    records = {r["file"]: r for r in json.loads(outputs.readings.read_text())["pictures"]}
    boxes = [c["box"] for c in records["apart.png"]["characters"]]
    width, height = Image.open(folder / "apart.png").size
    assert [c["digit"] for c in records["apart.png"]["characters"]] == [4, 0, 7, 1]
    assert all(0 <= left < right <= width and 0 <= top < bottom <= height
               for left, top, right, bottom in boxes)
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    assert all(a[2] <= b[0] + 2 for a, b in zip(boxes, boxes[1:], strict=False))  # side by side


def test_numbers_on_ruled_paper_and_small_on_a_large_page(model_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    ruled = draw_number("407", 140, pen=0.05, ink=20, paper=235, seed=4, gap=0.3)
    draw = ImageDraw.Draw(ruled)
    for y in (12, 120):  # the lines of the page, one through the digits' feet
        draw.line([(0, y), (ruled.width, y)], fill=60, width=3)
    ruled.save(folder / "ruled.png")
    page = Image.new("L", (2400, 1800), 235)  # a photographed page, the number small on it
    page.paste(draw_number("5128", 90, pen=0.05, ink=20, paper=235, seed=6, gap=0.25),
               (700, 900))
    page.save(folder / "page.jpg", quality=90)

    batch, _ = read_folder(model_file, folder, tmp_path)

    assert {r.name: r.text for r in batch.readings} == {"ruled.png": "407", "page.jpg": "5128"}
    boxes = [c.box for c in next(r for r in batch.readings if r.name == "page.jpg").read.characters]
    assert all(left >= 690 and right <= 1400 and top >= 890 and bottom <= 1000
               for left, top, right, bottom in boxes)  # in the page's own pixels


def test_a_digit_drawn_in_two_strokes_is_one_digit(model_file, tmp_path):
    five = np.asarray(draw_digit(5, 160, pen=0.05, ink=20, paper=235, seed=5)).copy()
    five[:, :] = np.where(np.arange(160)[:, None] < 36, 235, five)  # lift the pen: bar apart
    bar = Image.fromarray(five)
    ImageDraw.Draw(bar).line([(62, 28), (128, 28)], fill=20, width=8)
    assert read_picture(model_file, bar, tmp_path).text == "5"


def test_letters_and_marks_are_not_digits(model_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    letter("A", 160).save(folder / "letter_A.png")
    letter("K", 160).save(folder / "letter_K.png")
    scribble = Image.new("L", (200, 200), 235)
    rng = np.random.default_rng(1)
    ImageDraw.Draw(scribble).line([tuple(p) for p in rng.uniform(20, 180, (14, 2))], fill=20,
                                  width=6)
    scribble.save(folder / "scribble.png")
    draw_digit(3, 160, pen=0.05, ink=20, paper=235, seed=3).save(folder / "three.png")
    (folder / "labels.csv").write_text("file,label\nletter_A.png,none\nletter_K.png,none\n"
                                       "scribble.png,none\nthree.png,3\n")

    batch, outputs = read_folder(model_file, folder, tmp_path)

    by_name = {r.name: r for r in batch.readings}
    for name in ("letter_A.png", "letter_K.png", "scribble.png"):
        assert by_name[name].status == "not_digits", (name, by_name[name].text)
        assert by_name[name].text == ""
    assert by_name["three.png"].text == "3" and by_name["three.png"].status != "not_digits"
    assert all(answers(r, batch.labels[r.name]) for r in batch.readings)
    metrics = json.loads(outputs.metrics.read_text())
    assert metrics["not_digits"] == 3 and metrics["accuracy"] == 1.0


def test_pictures_that_hold_too_much_get_a_clear_answer(model_file, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    dots = Image.new("L", (600, 600), 235)
    draw = ImageDraw.Draw(dots)
    for y in range(15, 600, 27):
        for x in range(15, 600, 27):
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=20)  # 484 marks of equal size
    dots.save(folder / "dots.png")
    Image.new("L", (300, 300), 10).save(folder / "all_ink.png")
    frame = Image.new("L", (300, 300), 20)
    ImageDraw.Draw(frame).rectangle([3, 3, 296, 296], fill=235)
    frame.save(folder / "frame.png")  # one mark the size of the whole picture
    draw_number("12", 100, 0.05, 20, 235, seed=1).save(folder / "twelve.png")

    batch, outputs = read_folder(model_file, folder, tmp_path)

    by_name = {r.name: r for r in batch.readings}
    assert by_name["dots.png"].status == "failed"
    assert "separate marks" in by_name["dots.png"].error
    assert by_name["all_ink.png"].status in ("failed", "not_digits")
    assert by_name["frame.png"].status in ("failed", "not_digits")
    assert by_name["twelve.png"].text == "12"
    with open(outputs.csv, encoding="utf-8", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_labels_take_digit_strings_and_none(tmp_path):
    from digitrec.errors import DigitrecError
    from digitrec.reading.labels import read_labels

    path = tmp_path / "labels.csv"
    path.write_text("file,label\na.png,0869\nb.png,none\nc.png,7\n")
    assert read_labels(path).values == {"a.png": "0869", "b.png": "", "c.png": "7"}
    path.write_text("file,label\na.png," + "1" * 5000 + "\n")
    too_long = r"labels.csv:2: label '1{40}\.\.\.' is not digits"
    with pytest.raises(DigitrecError, match=too_long) as error:
        read_labels(path)
    assert len(str(error.value)) < 300  # the label is not repeated whole
    path.write_text("file,label\n" + "a.png,7\n" * 100_000)
    warning, = read_labels(path).warnings
    assert "a.png on lines 2, 3, 4, 5, 6 and 99995 more" in warning and len(warning) < 300


def test_a_speck_beside_a_digit_is_no_digit_of_its_own(model_file, tmp_path):
    nine = draw_digit(9, 160, pen=0.05, ink=20, paper=235, seed=9)
    ImageDraw.Draw(nine).line([(140, 80), (140, 108)], fill=20, width=3)  # a stray short stroke
    assert read_picture(model_file, nine, tmp_path).text == "9"


def test_two_lines_of_digits_are_never_a_sure_number(model_file, tmp_path):
    top = draw_number("12", 120, pen=0.05, ink=20, paper=235, seed=1, gap=0.3)
    page = Image.new("L", (top.width, 2 * top.height), 235)
    page.paste(top, (0, 0))
    page.paste(draw_number("34", 120, pen=0.05, ink=20, paper=235, seed=7, gap=0.3),
               (0, top.height))
    assert read_picture(model_file, page, tmp_path).status in ("unsure", "not_digits")


def test_unsure_follows_the_confidence_shown(model_file, tmp_path):
    """A reading's confidence is that all its digits are right; below the threshold it is
    unsure, and a picture with no digit has no single-digit prediction in the CSV."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_number("4071", 140, pen=0.05, ink=20, paper=235, seed=3, gap=0.3).save(folder / "n.png")
    letter("K", 160).save(folder / "k.png")
    outputs = predict.BatchOutputs(csv=tmp_path / "p.csv")
    for threshold in (0.0, 0.999999):
        batch = predict.predict_batch(model_file, [folder], outputs, threshold=threshold)
        number_reading = next(r for r in batch.readings if r.name == "n.png")
        assert number_reading.unsure == (number_reading.confidence < threshold)
    with open(outputs.csv, encoding="utf-8", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["file"] == "k.png")
    assert (row["status"], row["prediction"], row["unsure"]) == ("not_digits", "", "false")


def test_a_word_with_two_strays_is_no_number_one_stray_is_left_out():
    from digitrec.reading.number import Character, judge

    def character(left: int, probabilities: np.ndarray) -> Character:
        return Character((left, 0, left + 20, 30), probabilities)

    sure = [character(30 * i, np.eye(10)[d] * 0.97 + 0.003) for i, d in enumerate((4, 2, 7))]
    spread = np.full(10, 0.1)
    one = judge([*sure, character(90, spread)], unsure_below=0.5)
    assert (one.status, one.text) == ("unsure", "427")
    two = judge([*sure, character(90, spread), character(120, spread)], unsure_below=0.5)
    assert (two.status, two.text) == ("not_digits", "")


def test_a_dash_far_above_a_number_is_no_piece_of_its_digits():
    """A short mark far from the writing (a dash high on the page) joins no digit: the
    number's last digit keeps its own box, as it would without it."""
    from digitrec.reading.segment import find_marks

    number = draw_number("743", 60, pen=0.06, ink=20, paper=235, seed=2, gap=0.3)
    page = Image.new("L", (number.width, 3 * number.height), 235)
    page.paste(number, (0, 2 * number.height))
    ink = 1.0 - np.asarray(page, dtype=np.float32) / 255
    alone = [m.box for m in find_marks(ink > 0.5).marks]
    right = alone[-1][2]
    ImageDraw.Draw(page).line([(right - 14, 14), (right - 6, 22)], fill=20, width=4)
    ink = 1.0 - np.asarray(page, dtype=np.float32) / 255
    assert [m.box for m in find_marks(ink > 0.5).marks] == alone
