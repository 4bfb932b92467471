"""PNG reports drawn with Pillow, for people who never open `dvc plots`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitrec.files import atomic_path

CELL = 44
MARGIN = 56
TILE = 84
CAPTION = 30


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)


def draw_confusion(counts: np.ndarray, path: Path, class_names: list[str] | None = None
                   ) -> None:
    """A confusion matrix: rows are true digits, columns predictions, shaded by row share."""
    n = len(counts)
    size = MARGIN + n * CELL + 8
    image = Image.new("RGB", (size, size + 24), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(12)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    draw.text((MARGIN, 4), "predicted →", fill="black", font=small)
    draw.text((4, MARGIN - 18), "true ↓", fill="black", font=small)
    for i in range(n):
        draw.text((MARGIN + i * CELL + CELL // 2 - 4, 22), str(i), fill="black", font=font)
        draw.text((MARGIN - 18, MARGIN + i * CELL + CELL // 2 - 8), str(i), fill="black",
                  font=font)
        for j in range(n):
            x, y = MARGIN + j * CELL, MARGIN + i * CELL
            if i == j:
                shade = (int(255 - 155 * share[i, j]), int(255 - 60 * share[i, j]), 255)
            else:
                strength = min(1.0, share[i, j] * 20)
                shade = (255, int(255 - 170 * strength), int(255 - 170 * strength))
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=shade, outline="#dddddd")
            text = str(int(counts[i, j]))
            width = draw.textlength(text, font=small)
            draw.text((x + (CELL - width) / 2, y + CELL / 2 - 7), text, fill="black", font=small)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0
    draw.text((MARGIN, size), f"{total} test images, accuracy {accuracy:.2%}", fill="black",
              font=small)
    save_png(image, path)


def draw_mistakes(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                  path: Path, count: int = 36, columns: int = 9,
                  class_names: list[str] | None = None) -> None:
    """The most confident mistakes: each digit with its true label, prediction, confidence."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    rows = max(1, -(-len(worst) // columns))
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    title = (f"{len(wrong)} mistakes; the {len(worst)} most confident" if len(wrong)
             else "no mistakes")
    draw.text((4, 4), title, fill="black", font=font)
    for slot, index in enumerate(worst):
        x, y = (slot % columns) * TILE, 24 + (slot // columns) * (TILE + CAPTION)
        pixels = (np.asarray(images[index])[..., 0] * 255).clip(0, 255).astype(np.uint8)
        digit = Image.fromarray(255 - pixels).resize((TILE - 8, TILE - 8), Image.NEAREST)
        sheet.paste(digit, (x + 4, y + 4))
        draw.text((x + 4, y + TILE - 2), f"true {labels[index]} → {predicted[index]}",
                  fill="black", font=font)
        draw.text((x + 4, y + TILE + 12), f"{confidence[index]:.0%} sure", fill="#b00000",
                  font=font)
    save_png(sheet, path)


def draw_contact_sheet(readings: list, labels: dict[str, int], path: Path,
                       columns: int = 4) -> None:
    """Per picture: the original, the 28x28 the model saw, the prediction and confidence."""
    cell_w, cell_h = 300, 96
    rows = max(1, -(-len(readings) // columns))
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(11)
    for slot, reading in enumerate(readings):
        x, y = (slot % columns) * cell_w, (slot // columns) * cell_h
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], outline="#dddddd")
        name = reading.name if len(reading.name) <= 40 else "…" + reading.name[-39:]
        draw.text((x + 4, y + 2), name, fill="#444444", font=small)
        if reading.prepared is not None:
            sheet.paste(reading.prepared.thumbnail, (x + 4, y + 18))
            seen = (reading.prepared.digit * 255).astype(np.uint8)
            sheet.paste(Image.fromarray(seen).resize((56, 56), Image.NEAREST), (x + 74, y + 22))
        if reading.probabilities is None:
            draw.multiline_text((x + 138, y + 24), _wrap(reading.error, 24), fill="#b00000",
                                font=small)
            continue
        expected = labels.get(reading.name)
        colour = "#b00000" if expected is not None and expected != reading.prediction else "black"
        draw.text((x + 140, y + 24), f"reads {reading.prediction}", fill=colour, font=font)
        draw.text((x + 140, y + 44), f"{reading.confidence:.0%} sure", fill="#444444", font=small)
        if expected is not None:
            draw.text((x + 140, y + 62), f"label {expected}", fill="#444444", font=small)
    save_png(sheet, path)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:4])


def draw_steps(rows: list[tuple[Image.Image, list[tuple[str, np.ndarray]]]], path: Path,
               panel: int = 150) -> None:
    """One row per picture: the picture, then what each preprocessing step made of it."""
    columns = 1 + max(len(steps) for _, steps in rows)
    sheet = Image.new("RGB", (columns * (panel + 8) + 8, len(rows) * (panel + CAPTION) + 8),
                      "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for row, (picture, steps) in enumerate(rows):
        y = 8 + row * (panel + CAPTION)
        # (name, tile, background): a wide or tall step is framed in its own background
        # (its median grey), so the panel shows no bars that are not in the picture.
        tiles = [("1. the picture", picture.convert("RGB"), "white")]
        for name, array in steps:
            grey = (np.clip(array, 0, 1) * 255).astype(np.uint8)
            tiles.append((name, Image.fromarray(grey), (int(np.median(grey)),) * 3))
        for column, (name, tile, background) in enumerate(tiles):
            x = 8 + column * (panel + 8)
            scale = panel / max(tile.size)
            size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
            small = max(tile.size) < panel / 2  # show the pixels of a 28x28
            tile = tile.resize(size, Image.NEAREST if small else Image.LANCZOS)
            draw.rectangle([x, y, x + panel - 1, y + panel - 1], fill=background)
            sheet.paste(tile, (x + (panel - size[0]) // 2, y + (panel - size[1]) // 2))
            draw.rectangle([x, y, x + panel - 1, y + panel - 1], outline="#bbbbbb")
            draw.text((x, y + panel + 4), name, fill="black", font=font)
    save_png(sheet, path)
