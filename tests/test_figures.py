import numpy as np
import pytest
from PIL import Image, ImageFont

from digitrec import drawing, scoring
from digitrec.evaluation import figures

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


def dejavu_installed():
    try:
        ImageFont.truetype(drawing.FONT_NAME, 12)
    except OSError:
        return False
    return True


@pytest.mark.skipif(not dejavu_installed(), reason="DejaVu Sans is not installed")
def test_arrows_are_drawn_with_a_font_that_has_them():
    font = drawing.load_font(12)
    assert drawing.plain_text("true 5 → 3", font) == "true 5 → 3"


def test_without_dejavu_arrows_fall_back_to_plain_text(monkeypatch):
    monkeypatch.setattr(drawing, "FONT_NAME", "NoSuchFont-digitrec.ttf")
    font = drawing.load_font(12)
    assert drawing.plain_text("predicted →", font) == "predicted ->"
    assert drawing.plain_text("true ↓", font) == "true v"
    assert drawing.fit_text("a-very-long-file-name.png", font, 60).startswith("...")


@pytest.mark.parametrize("names", [None, FASHION])
def test_confusion_and_mistakes_take_class_names(tmp_path, names):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(10, 10))
    figures.draw_confusion(counts, tmp_path / "confusion.png", class_names=names)
    labels = rng.integers(0, 10, size=40)
    probabilities = rng.dirichlet(np.ones(10), size=40)
    images = rng.random((40, 28, 28, 1))
    figures.draw_mistakes(images, scoring.scores(probabilities, labels),
                          tmp_path / "mistakes.png", class_names=names)
    with Image.open(tmp_path / "confusion.png") as confusion:
        width = confusion.width
    longest = max(drawing.text_width(n, drawing.load_font(14)) for n in names or ["0"])
    assert width >= longest + 10 * figures.CELL  # the row names fit beside the cells
