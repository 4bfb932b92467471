"""What every PNG the pipeline draws shares: the font, text that fits its place, and an
atomic save."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageFont

from digitrec.files import atomic_write_bytes

FONT_NAME = "DejaVuSans.ttf"   # Debian's fonts-dejavu-core; found in the system font folders
PLAIN = {"→": "->", "↓": "v", "…": "..."}
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def load_font(size: int) -> Font:
    """DejaVu Sans when installed (it has arrows); else Pillow's own font, which has none."""
    try:
        return ImageFont.truetype(FONT_NAME, size)
    except (OSError, ImportError):  # not installed, or Pillow built without FreeType
        return ImageFont.load_default(size=size)


def _has_symbols(font: Font) -> bool:
    return Path(str(getattr(font, "path", ""))).name == FONT_NAME


def plain_text(text: str, font: Font) -> str:
    """`text` with arrows and ellipses spelled in ASCII when the font would draw boxes."""
    if _has_symbols(font):
        return text
    for symbol, plain in PLAIN.items():
        text = text.replace(symbol, plain)
    return text


def fit_text(text: str, font: Font, width: float) -> str:
    """`text` shortened at the front with an ellipsis until it is at most `width` wide."""
    text = plain_text(text, font)
    if text_width(text, font) <= width:
        return text
    dots = plain_text("…", font)
    while text and text_width(dots + text, font) > width:
        text = text[1:]
    return dots + text


def text_width(text: str, font: Font) -> float:
    return font.getlength(text)


def class_labels(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(i) for i in range(count)]


def save_png(image: Image.Image, path: Path) -> None:
    """Encode in memory, then write atomically (a full disk is told the size needed)."""
    encoded = io.BytesIO()
    image.save(encoded, format="PNG", optimize=True)
    atomic_write_bytes(path, encoded.getvalue())

