"""Example pictures of handwritten-style digits, drawn by the project itself.

They stand in for a user's own pictures in `data/user_images/`: pen strokes of varying width
on paper with uneven light and texture, a light-on-dark chalkboard, a transparent PNG, all
in different sizes and formats, with a `labels.csv`. Run `python -m digitrec.examples DIR`
to draw them again.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Strokes of each digit in a unit square (x right, y down), as a pen would draw them.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5, 0.05), (0.2, 0.2), (0.12, 0.5), (0.2, 0.82), (0.5, 0.95), (0.8, 0.82),
         (0.88, 0.5), (0.8, 0.18), (0.5, 0.05)]],
    1: [[(0.35, 0.22), (0.55, 0.05), (0.55, 0.95)]],
    2: [[(0.18, 0.25), (0.35, 0.07), (0.65, 0.07), (0.8, 0.25), (0.7, 0.5), (0.2, 0.93),
         (0.85, 0.93)]],
    3: [[(0.2, 0.12), (0.5, 0.05), (0.78, 0.2), (0.55, 0.45), (0.8, 0.7), (0.55, 0.95),
         (0.2, 0.85)]],
    4: [[(0.65, 0.95), (0.65, 0.05), (0.12, 0.65), (0.9, 0.65)]],
    5: [[(0.8, 0.06), (0.25, 0.06), (0.2, 0.45), (0.6, 0.4), (0.82, 0.65), (0.6, 0.93),
         (0.2, 0.88)]],
    6: [[(0.72, 0.06), (0.35, 0.3), (0.18, 0.65), (0.35, 0.93), (0.7, 0.88), (0.78, 0.62),
         (0.5, 0.5), (0.22, 0.62)]],
    7: [[(0.15, 0.08), (0.85, 0.08), (0.42, 0.95)]],
    8: [[(0.5, 0.48), (0.22, 0.28), (0.5, 0.05), (0.78, 0.28), (0.5, 0.48), (0.2, 0.72),
         (0.5, 0.95), (0.8, 0.72), (0.5, 0.48)]],
    9: [[(0.78, 0.3), (0.5, 0.05), (0.22, 0.28), (0.5, 0.5), (0.78, 0.3), (0.72, 0.95)]],
}


def draw_digit(digit: int, size: int, pen: float, ink: int, paper: int, seed: int,
               wobble: float = 0.03) -> Image.Image:
    """One digit as grey strokes of width `pen` (fraction of `size`) on plain `paper`."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(image)
    width = max(1, round(pen * size))
    margin, span = 0.2 * size, 0.6 * size
    for stroke in STROKES[digit]:
        points = [(margin + (x + rng.normal(0, wobble)) * span,
                   margin + (y + rng.normal(0, wobble)) * span) for x, y in stroke]
        draw.line(points, fill=ink, width=width, joint="curve")
        for x, y in points:
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=ink)
    return image


def draw_number(text: str, height: int, pen: float, ink: int, paper: int, seed: int,
                gap: float = 0.15) -> Image.Image:
    """A number written left to right, each digit drawn by `draw_digit` at `height`; between
    neighbours `gap` x height of paper (a negative gap makes them overlap and touch)."""
    digits = [np.asarray(draw_digit(int(d), height, pen, ink, paper, seed + i))
              for i, d in enumerate(text)]
    spans = [np.flatnonzero((d != paper).any(axis=0)) for d in digits]
    margin = int(0.2 * height)
    width = sum(s[-1] - s[0] + 1 for s in spans) + int(gap * height) * (len(text) - 1)
    canvas = np.full((height, max(1, width) + 2 * margin), paper, dtype=np.uint8)
    cursor = margin
    for digit, span in zip(digits, spans, strict=True):
        for column in span:
            x = cursor + column - span[0]
            inked = digit[:, column] != paper
            canvas[inked, x] = digit[inked, column]
        cursor += span[-1] - span[0] + 1 + int(gap * height)
    return Image.fromarray(canvas)


def photo_of_paper(image: Image.Image, seed: int) -> Image.Image:
    """Uneven light, paper grain and a little blur, as a phone photo of a page has."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape
    ramp = np.linspace(-35, 10, width)[None, :] + np.linspace(-15, 5, height)[:, None]
    grain = rng.normal(0, 6, size=pixels.shape)
    photo = np.clip(pixels + ramp + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(photo).filter(ImageFilter.GaussianBlur(1.2)).convert("RGB")


def make_examples(folder: Path) -> list[tuple[str, int]]:
    """Draw the example pictures into `folder` with a labels.csv; return (file, label)."""
    folder.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, int]] = []
    for digit in range(10):
        name = f"photo_{digit}.jpg"
        page = draw_digit(digit, 360, pen=0.025, ink=40, paper=225, seed=digit)
        photo_of_paper(page, seed=digit).save(folder / name, quality=85)
        made.append((name, digit))
    for digit in (2, 7):
        name = f"chalkboard_{digit}.png"
        draw_digit(digit, 200, pen=0.07, ink=235, paper=30, seed=10 + digit).save(folder / name)
        made.append((name, digit))
    for digit in (3, 5):
        name = f"drawing_{digit}.png"
        strokes = draw_digit(digit, 280, pen=0.09, ink=255, paper=0, seed=20 + digit)
        canvas = Image.new("RGBA", strokes.size, (20, 20, 160, 0))
        canvas.putalpha(strokes)
        canvas.save(folder / name)
        made.append((name, digit))
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label"])
        writer.writerows(made)
    return made


if __name__ == "__main__":
    made = make_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "data/user_images"))
    print(f"drew {len(made)} example pictures")
