"""Negatives drawn from fonts: letters, other scripts, words, math symbols, punctuation.

Fonts come from the machine (`fc-list`); a fresh machine without fonts still works with
Pillow's built-in font, so the generator never depends on what is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OTHER_SCRIPTS = "αβγδεζηθλμπσφψωΩΣΔЖЯБДФЦШЩЭЮאבגדהש"
SYMBOLS = "+-×÷=≠≈<>±∑∫√∞%&@#$*?!()[]{}/\\|~^"
WORDS = ("ok", "no", "the", "cat", "yes", "hi", "xy", "abc", "kw", "mm")
# Glyphs that read as digits; never drawn as negatives.
DIGIT_LIKE = set("0123456789OoIlZzSsBbgqGDT|!?/()[]{}\\%ΣЭЗбδ")


@lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """TrueType fonts on the machine (empty when fc-list is missing)."""
    if shutil.which("fc-list") is None:
        return ()
    out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, check=False)
    paths = sorted({line.split(":")[0].strip() for line in out.stdout.splitlines()})
    return tuple(p for p in paths if p.endswith((".ttf", ".otf")))


@lru_cache(maxsize=64)
def _font(path: str | None, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size)
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def _bitmap(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> bytes:
    return bytes(font.getmask(text))


def _missing(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> bool:
    """True when `font` has no glyph for `text` (it draws the same as an unassigned code)."""
    return any(_bitmap(font, c) == _bitmap(font, "\U0010fffd") for c in text)


def texts() -> list[str]:
    """Every text a glyph negative may show (none of them digit-like)."""
    singles = [c for c in LETTERS + OTHER_SCRIPTS + SYMBOLS if c not in DIGIT_LIKE]
    return singles + list(WORDS)


def render_text(rng: np.random.Generator) -> np.ndarray:
    """One random text in a random font, rotated and sheared a little; ink in [0, 1]."""
    choices = texts()
    text = choices[rng.integers(len(choices))]
    paths = font_paths()
    path = paths[rng.integers(len(paths))] if paths else None
    font = _font(path, 48)
    if not text.isascii() and _missing(font, text):
        # A font without the glyph draws a box, which reads as a 0: use a letter instead.
        text = LETTERS[rng.integers(len(LETTERS))]
        text = "x" if text in DIGIT_LIKE else text
    canvas = Image.new("L", (160, 96), 0)
    ImageDraw.Draw(canvas).text((20, 10), text, fill=255, font=font)
    angle = float(rng.uniform(-20, 20))
    shear = float(rng.uniform(-0.3, 0.3))
    canvas = canvas.rotate(angle, resample=Image.BILINEAR)
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, 0, 0, 1, 0), Image.BILINEAR)
    return np.asarray(canvas, dtype=np.float32) / 255.0
