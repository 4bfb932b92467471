"""The evaluate stage's PNG figures, drawn with Pillow, for people who never open `dvc plots`:
the confusion matrix and the most confident mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from digitrec import scoring
from digitrec.drawing import class_labels, fit_text, load_font, plain_text, save_png, text_width

CELL = 44
MARGIN = 56
TILE = 84
CAPTION = 30
MAX_TILE = 200         # widest mistake tile, for long class names


def draw_confusion(counts: np.ndarray, path: Path, class_names: Sequence[str] | None = None
                   ) -> None:
    """A confusion matrix: rows are true classes, columns predictions, shaded by row share.

    Class names too wide for a cell are written upwards above their column.
    """
    n = len(counts)
    names = class_labels(class_names, n)
    font, small = load_font(14), load_font(12)
    left = max(MARGIN, int(max(text_width(name, font) for name in names)) + 16)
    upright = all(text_width(name, font) <= CELL - 4 for name in names)
    top = MARGIN if upright else int(max(text_width(name, font) for name in names)) + 36
    width, height = left + n * CELL + 8, top + n * CELL + 8
    image = Image.new("RGB", (width, height + 24), "white")
    draw = ImageDraw.Draw(image)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    draw.text((left, 4), plain_text("predicted →", small), fill="black", font=small)
    draw.text((4, top - 18), plain_text("true ↓", small), fill="black", font=small)
    for i, name in enumerate(names):
        column_x = left + i * CELL
        if upright:
            draw.text((column_x + (CELL - text_width(name, font)) / 2, top - 34), name,
                      fill="black", font=font)
        else:
            _upwards(image, name, font, column_x + CELL // 2, top - 6)
        draw.text((left - 8 - text_width(name, font), top + i * CELL + CELL // 2 - 8), name,
                  fill="black", font=font)
        for j in range(n):
            x, y = left + j * CELL, top + i * CELL
            if i == j:
                shade = (int(255 - 155 * share[i, j]), int(255 - 60 * share[i, j]), 255)
            else:
                strength = min(1.0, share[i, j] * 20)
                shade = (255, int(255 - 170 * strength), int(255 - 170 * strength))
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=shade, outline="#dddddd")
            text = str(int(counts[i, j]))
            draw.text((x + (CELL - text_width(text, small)) / 2, y + CELL / 2 - 7), text,
                      fill="black", font=small)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0
    draw.text((left, height), f"{total} test images, accuracy {accuracy:.2%}", fill="black",
              font=small)
    save_png(image, path)


def _upwards(image: Image.Image, text: str, font: Any, centre_x: int, bottom: int) -> None:
    """Write `text` reading upwards, centred on `centre_x`, ending at `bottom`."""
    box = font.getbbox(text)
    tile = Image.new("L", (int(box[2]) + 2, int(box[3]) + 2), 0)
    ImageDraw.Draw(tile).text((0, 0), text, fill=255, font=font)
    tile = tile.rotate(90, expand=True)
    image.paste("black", (centre_x - tile.width // 2, bottom - tile.height), mask=tile)


def draw_mistakes(images: np.ndarray, scored: scoring.Scores, path: Path, count: int = 36,
                  columns: int = 9, class_names: Sequence[str] | None = None) -> None:
    """The most confident mistakes: each picture with its true class, prediction, confidence."""
    names = class_labels(class_names, scored.probabilities.shape[1])
    labels, predicted, confidence = scored.labels, scored.predicted, scored.confidence
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    font = load_font(12)
    captions = [plain_text(f"true {names[labels[i]]} → {names[predicted[i]]}", font) for i in worst]
    tile_w = max([TILE] + [min(MAX_TILE, int(text_width(c, font)) + 9) for c in captions])
    rows = max(1, -(-len(worst) // columns))
    sheet = Image.new("RGB", (columns * tile_w, rows * (TILE + CAPTION) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    title = (f"{len(wrong)} mistakes; the {len(worst)} most confident" if len(wrong)
             else "no mistakes")
    draw.text((4, 4), title, fill="black", font=font)
    for slot, (index, caption) in enumerate(zip(worst, captions, strict=True)):
        x, y = (slot % columns) * tile_w, 24 + (slot // columns) * (TILE + CAPTION)
        pixels = (np.asarray(images[index])[..., 0] * 255).clip(0, 255).astype(np.uint8)
        digit = Image.fromarray(255 - pixels).resize((TILE - 8, TILE - 8), Image.NEAREST)
        sheet.paste(digit, (x + (tile_w - digit.width) // 2, y + 4))
        draw.text((x + 4, y + TILE - 2), fit_text(caption, font, tile_w - 8), fill="black",
                  font=font)
        draw.text((x + 4, y + TILE + 12), f"{confidence[index]:.0%} sure", fill="#b00000",
                  font=font)
    save_png(sheet, path)

