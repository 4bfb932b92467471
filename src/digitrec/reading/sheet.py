"""Pictures of what the reader did: the contact sheet of a batch, and the cleaning steps of
a few pictures (the docs' figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitrec.drawing import class_labels, fit_text, load_font, save_png

CAPTION = 30


def draw_contact_sheet(readings: list, labels: dict[str, int], path: Path, columns: int = 4,
                       class_names: Sequence[str] | None = None, *, limit: int) -> None:
    """Per picture: the original, the 28x28 the model saw, the prediction and confidence.

    Only the first `limit` pictures are drawn (a sheet of thousands would be larger than
    Pillow agrees to open); a line at the bottom says how many more the CSV lists.
    """
    cell_w, cell_h = 300, 96
    names = class_labels(class_names, 10)
    shown, rest = readings[:limit], max(0, len(readings) - limit)
    rows = max(1, -(-len(shown) // columns))
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h + (24 if rest else 0)), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = load_font(14), load_font(11)
    for slot, reading in enumerate(shown):
        x, y = (slot % columns) * cell_w, (slot // columns) * cell_h
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], outline="#dddddd")
        draw.text((x + 4, y + 2), fit_text(reading.name, small, cell_w - 8), fill="#444444",
                  font=small)
        if reading.cleaned is not None:
            sheet.paste(reading.cleaned.thumbnail, (x + 4, y + 18))
            seen = (reading.cleaned.digit * 255).astype(np.uint8)
            sheet.paste(Image.fromarray(seen).resize((56, 56), Image.NEAREST), (x + 74, y + 22))
        if reading.probabilities is None:
            draw.multiline_text((x + 138, y + 24), _wrap(reading.error, 24), fill="#b00000",
                                font=small)
            continue
        expected = labels.get(reading.name)
        colour = "#b00000" if expected is not None and expected != reading.prediction else "black"
        draw.text((x + 140, y + 24), fit_text(f"reads {names[reading.prediction]}", font,
                                          cell_w - 144), fill=colour, font=font)
        sure = f"{reading.confidence:.0%} sure" + (", unsure" if reading.unsure else "")
        draw.text((x + 140, y + 44), sure, fill="#b36b00" if reading.unsure else "#444444",
                  font=small)
        if expected is not None:
            draw.text((x + 140, y + 62), fit_text(f"label {names[expected]}", small, cell_w - 144),
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
    font = load_font(13)
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

