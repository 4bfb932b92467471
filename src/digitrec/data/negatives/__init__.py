"""Negatives: pictures that hold no digit, drawn as MNIST draws its digits (white ink on
black, 28x28, ink fitted into 20x20 and centred by mass), so the model can learn to refuse
what the reader may hand it (letters, symbols, doodles, noise) with the same look.

`draw_negatives(count, seed)` is deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from digitrec.data.negatives import glyphs, handwriting, scribbles
from digitrec.reading.digit import centre_by_mass, normalise_digit

# Font glyphs, letters and symbols written by hand, hand-drawn doodles, the geometric
# scribbles and shapes, filled blobs, and blank or noise.
KINDS = ("glyph", "hand", "doodle", "shape", "blob", "noise")
SHARES = (0.25, 0.3, 0.15, 0.15, 0.07, 0.08)
DRAW = {"glyph": glyphs.render_text, "hand": handwriting.letter,
        "doodle": handwriting.doodle, "blob": handwriting.blob,
        "shape": lambda rng: scribbles.SHAPES[rng.integers(len(scribbles.SHAPES))](rng)}


def _one(rng: np.random.Generator) -> np.ndarray:
    kind = KINDS[rng.choice(len(KINDS), p=SHARES)]
    if kind == "noise":
        return scribbles.noise(rng)
    ink = DRAW[kind](rng)
    if not (ink > 0.5).any():
        return scribbles.noise(rng)
    return centre_by_mass(normalise_digit(ink))


def draw_negatives(count: int, seed: int) -> np.ndarray:
    """`count` negatives, float32 in [0, 1], shape (count, 28, 28); the same for a seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros((count, 28, 28), dtype=np.float32)
    for i in range(count):
        out[i] = _one(rng)
    return out
