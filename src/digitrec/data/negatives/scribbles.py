"""Synthetic negatives: scribbles, doodles (stars, arrows, hatching, faces), blank and noise."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIDE = 112  # drawn at 4x and normalised down


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (SIDE, SIDE), 0)
    return image, ImageDraw.Draw(image)


def _width(rng: np.random.Generator) -> int:
    return int(rng.integers(6, 12))


def scribble(rng: np.random.Generator) -> np.ndarray:
    """A random zig-zag of many strokes (too tangled to read as a digit)."""
    image, draw = _canvas()
    points = [tuple(map(float, rng.uniform(10, SIDE - 10, 2))) for _ in range(rng.integers(8, 16))]
    draw.line(points, fill=255, width=_width(rng), joint="curve")
    return np.asarray(image, dtype=np.float32) / 255.0


def star(rng: np.random.Generator) -> np.ndarray:
    """A star with 5-8 points, outlined."""
    image, draw = _canvas()
    tips = int(rng.integers(5, 9))
    angles = np.linspace(0, 2 * np.pi, 2 * tips, endpoint=False) + rng.uniform(0, np.pi)
    radii = np.where(np.arange(2 * tips) % 2 == 0, 45, 20)
    pts = [(56 + r * np.cos(a), 56 + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
    draw.polygon(pts, outline=255, width=_width(rng))
    return np.asarray(image, dtype=np.float32) / 255.0


def face(rng: np.random.Generator) -> np.ndarray:
    """A circle with features inside (eyes, mouth), so it is no zero."""
    image, draw = _canvas()
    w = _width(rng)
    draw.ellipse((10, 10, 102, 102), outline=255, width=w)
    draw.ellipse((35, 35, 45, 45), fill=255)
    draw.ellipse((67, 35, 77, 45), fill=255)
    draw.arc((32, 45, 80, 85), 20, 160, fill=255, width=w)
    return np.asarray(image, dtype=np.float32) / 255.0


def arrow(rng: np.random.Generator) -> np.ndarray:
    """An arrow with a head, in a random direction."""
    image, draw = _canvas()
    w = _width(rng)
    draw.line([(15, 56), (95, 56)], fill=255, width=w)
    draw.line([(70, 30), (97, 56), (70, 82)], fill=255, width=w)
    image = image.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def hatching(rng: np.random.Generator) -> np.ndarray:
    """Parallel (sometimes crossed) lines filling a square."""
    image, draw = _canvas()
    w = _width(rng)
    for offset in range(15, 100, 18):
        draw.line([(offset, 12), (offset, 100)], fill=255, width=w)
        if rng.random() < 0.5:
            draw.line([(12, offset), (100, offset)], fill=255, width=w)
    image = image.rotate(float(rng.uniform(0, 180)), resample=Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def noise(rng: np.random.Generator) -> np.ndarray:
    """Blank or speckled noise, already 28x28 (not normalised: there is no shape to fit)."""
    if rng.random() < 0.3:
        return np.zeros((28, 28), dtype=np.float32)
    speckle = rng.random((28, 28)) < rng.uniform(0.02, 0.3)
    return (speckle * rng.uniform(0.3, 1.0, (28, 28))).astype(np.float32)


SHAPES = (scribble, star, face, arrow, hatching)
