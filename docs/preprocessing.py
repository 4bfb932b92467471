"""Draw docs/preprocessing.png, the README's figure of what each preprocessing step does.

Run from the project root: `python docs/preprocessing.py`. The pictures are drawn by
`digitrec.examples`, so the figure needs no data.
"""

from pathlib import Path

from PIL import Image

from digitrec.examples import draw_digit, photo_of_paper
from digitrec.reading.images import clean_image
from digitrec.reading.sheet import draw_steps

OUTPUT = Path(__file__).with_name("preprocessing.png")


def pictures() -> list[Image.Image]:
    """A phone photo of a page (uneven light, grain), and a thin line drawn in a paint
    program on a large white canvas, off-centre."""
    photo = photo_of_paper(draw_digit(4, 480, pen=0.03, ink=50, paper=215, seed=4), seed=4)
    canvas = Image.new("L", (900, 600), 255)
    canvas.paste(draw_digit(7, 420, pen=0.006, ink=0, paper=255, seed=7), (380, 40))
    return [photo, canvas]


def main() -> None:
    rows = []
    for picture in pictures():
        steps: list = []
        clean_image(picture, steps)
        rows.append((picture, steps))
    draw_steps(rows, OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
