"""Pictures of what the reader did: the contact sheet of a batch, and the cleaning steps of
a few pictures (the docs' figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitrec.drawing import fit_text, load_font, save_png
from digitrec.reading.labels import answers

CAPTION = 30


def draw_contact_sheet(readings: list, labels: dict[str, str], path: Path, columns: int = 4,
                       *, limit: int) -> None:
    """Per picture: the original with a box round each character found (green a digit, red
    not a digit), the 28x28 the model saw (of a lone digit), what it says and how sure.

    Only the first `limit` pictures are drawn (a sheet of thousands would be larger than
    Pillow agrees to open); a line at the bottom says how many more the CSV lists.
    """
    cell_w, cell_h = 300, 96
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
            sheet.paste(_boxed(reading), (x + 4, y + 18))
            sheet.paste(_seen(reading), (x + 74, y + 22))
        if reading.read is None:
            draw.multiline_text((x + 138, y + 24), _wrap(reading.error, 24), fill="#b00000",
                                font=small)
            continue
        expected = labels.get(reading.name)
        wrong = expected is not None and not answers(reading, expected)
        said = "no digit" if reading.status == "not_digits" else f"reads {reading.text}"
        draw.text((x + 140, y + 24), fit_text(said, font, cell_w - 144),
                  fill="#b00000" if wrong else "black", font=font)
        sure = ("" if reading.confidence is None else f"{reading.confidence:.0%} sure") + (
            ", unsure" if reading.unsure else "")
        draw.text((x + 140, y + 44), sure.strip(", "),
                  fill="#b36b00" if reading.unsure else "#444444", font=small)
        if expected is not None:
            label = expected if expected else "none"
            draw.text((x + 140, y + 62), fit_text(f"label {label}", small, cell_w - 144),
                      fill="#444444", font=small)
    if rest:
        draw.text((4, rows * cell_h + 4), f"{rest} more pictures are not drawn here; the CSV "
                  f"lists all {len(readings)}", fill="black", font=font)
    save_png(sheet, path)


def _seen(reading) -> Image.Image:
    """What the model read, 56x56: a lone character's 28x28 enlarged, or the first four
    characters of a number side by side, two by two."""
    characters = [] if reading.read is None else reading.read.characters
    seen = [c.seen for c in characters if c.seen is not None] or [reading.cleaned.digit]
    if len(seen) == 1:
        return Image.fromarray((seen[0] * 255).astype(np.uint8)).resize((56, 56), Image.NEAREST)
    tile = Image.new("L", (56, 56), 0)
    for index, digit in enumerate(seen[:4]):
        tile.paste(Image.fromarray((digit * 255).astype(np.uint8)),
                   (28 * (index % 2), 28 * (index // 2)))
    return tile


def _boxed(reading) -> Image.Image:
    """The thumbnail with each character's box drawn (only upright readings: the boxes of
    a picture read as stored would not match the thumbnail)."""
    picture = reading.cleaned.thumbnail.copy()
    if reading.read is None or not reading.read.turned or len(reading.read.characters) < 2:
        return picture
    draw = ImageDraw.Draw(picture)
    scale = picture.width / max(1, reading.cleaned.size[0])
    for character in reading.read.characters:
        left, top, right, bottom = (round(v * scale) for v in character.box)
        draw.rectangle([left, top, max(left, right - 1), max(top, bottom - 1)],
                       outline="#00a000" if character.digit_like else "#d00000")
    return picture


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

