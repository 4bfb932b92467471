"""PNG reports drawn with Pillow, for people who never open `dvc plots`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitrec import scoring
from digitrec.files import atomic_path

CELL = 44
MARGIN = 56
TILE = 84
CAPTION = 30
MAX_TILE = 200         # widest mistake tile, for long class names
FONT_NAME = "DejaVuSans.ttf"   # Debian's fonts-dejavu-core; found in the system font folders
PLAIN = {"→": "->", "↓": "v", "…": "..."}


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when installed (it has arrows); else Pillow's own font, which has none."""
    try:
        return ImageFont.truetype(FONT_NAME, size)
    except (OSError, ImportError):  # not installed, or Pillow built without FreeType
        return ImageFont.load_default(size=size)


def _has_symbols(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> bool:
    return Path(str(getattr(font, "path", ""))).name == FONT_NAME


def _text(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """`text` with arrows and ellipses spelled in ASCII when the font would draw boxes."""
    if _has_symbols(font):
        return text
    for symbol, plain in PLAIN.items():
        text = text.replace(symbol, plain)
    return text


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """`text` shortened at the front with an ellipsis until it is at most `width` wide."""
    text = _text(text, font)
    if _width(text, font) <= width:
        return text
    dots = _text("…", font)
    while text and _width(dots + text, font) > width:
        text = text[1:]
    return dots + text


def _width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> float:
    return font.getlength(text)


def _names(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(i) for i in range(count)]


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)


def draw_confusion(counts: np.ndarray, path: Path, class_names: Sequence[str] | None = None
                   ) -> None:
    """A confusion matrix: rows are true classes, columns predictions, shaded by row share.

    Class names too wide for a cell are written upwards above their column.
    """
    n = len(counts)
    names = _names(class_names, n)
    font, small = _font(14), _font(12)
    left = max(MARGIN, int(max(_width(name, font) for name in names)) + 16)
    upright = all(_width(name, font) <= CELL - 4 for name in names)
    top = MARGIN if upright else int(max(_width(name, font) for name in names)) + 36
    width, height = left + n * CELL + 8, top + n * CELL + 8
    image = Image.new("RGB", (width, height + 24), "white")
    draw = ImageDraw.Draw(image)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    draw.text((left, 4), _text("predicted →", small), fill="black", font=small)
    draw.text((4, top - 18), _text("true ↓", small), fill="black", font=small)
    for i, name in enumerate(names):
        column_x = left + i * CELL
        if upright:
            draw.text((column_x + (CELL - _width(name, font)) / 2, top - 34), name,
                      fill="black", font=font)
        else:
            _upwards(image, name, font, column_x + CELL // 2, top - 6)
        draw.text((left - 8 - _width(name, font), top + i * CELL + CELL // 2 - 8), name,
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
            draw.text((x + (CELL - _width(text, small)) / 2, y + CELL / 2 - 7), text,
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


def draw_mistakes(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                  path: Path, count: int = 36, columns: int = 9,
                  class_names: Sequence[str] | None = None) -> None:
    """The most confident mistakes: each picture with its true class, prediction, confidence."""
    names = _names(class_names, probabilities.shape[1])
    predicted = scoring.predictions(probabilities)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    font = _font(12)
    captions = [_text(f"true {names[labels[i]]} → {names[predicted[i]]}", font) for i in worst]
    tile_w = max([TILE] + [min(MAX_TILE, int(_width(c, font)) + 9) for c in captions])
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
        draw.text((x + 4, y + TILE - 2), _fit(caption, font, tile_w - 8), fill="black",
                  font=font)
        draw.text((x + 4, y + TILE + 12), f"{confidence[index]:.0%} sure", fill="#b00000",
                  font=font)
    save_png(sheet, path)


def draw_contact_sheet(readings: list, labels: dict[str, int], path: Path, columns: int = 4,
                       class_names: Sequence[str] | None = None, *, limit: int) -> None:
    """Per picture: the original, the 28x28 the model saw, the prediction and confidence.

    Only the first `limit` pictures are drawn (a sheet of thousands would be larger than
    Pillow agrees to open); a line at the bottom says how many more the CSV lists.
    """
    cell_w, cell_h = 300, 96
    names = _names(class_names, 10)
    shown, rest = readings[:limit], max(0, len(readings) - limit)
    rows = max(1, -(-len(shown) // columns))
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h + (24 if rest else 0)), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(11)
    for slot, reading in enumerate(shown):
        x, y = (slot % columns) * cell_w, (slot // columns) * cell_h
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], outline="#dddddd")
        draw.text((x + 4, y + 2), _fit(reading.name, small, cell_w - 8), fill="#444444",
                  font=small)
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
        draw.text((x + 140, y + 24), _fit(f"reads {names[reading.prediction]}", font,
                                          cell_w - 144), fill=colour, font=font)
        sure = f"{reading.confidence:.0%} sure" + (", unsure" if reading.unsure else "")
        draw.text((x + 140, y + 44), sure, fill="#b36b00" if reading.unsure else "#444444",
                  font=small)
        if expected is not None:
            draw.text((x + 140, y + 62), _fit(f"label {names[expected]}", small, cell_w - 144),
                      fill="#444444", font=small)
    if rest:
        draw.text((4, rows * cell_h + 4), f"{rest} more pictures are not drawn here; the CSV "
                  f"lists all {len(readings)}", fill="black", font=font)
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
