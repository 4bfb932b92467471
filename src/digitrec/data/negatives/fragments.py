"""Fragments of real digits: a small window of one digit's stroke, left at its own size
(not enlarged to the 20x20 box, where a stroke piece would read as a 1) and centred by mass.
A window keeps at most MAX_SHARE of the digit's ink, so no fragment still reads as a digit.
"""

from __future__ import annotations

import numpy as np

from digitrec.reading.digit import centre_by_mass

WINDOW = (5, 9)     # side of the square window kept, px at 28x28
MAX_SHARE = 0.25    # at most this share of the digit's ink survives


def digit_fragments(digits: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` fragments of `digits` (N, 28, 28, ink in [0, 1] or 0-255), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    digits = np.asarray(digits, dtype=np.float32)
    if digits.max(initial=0.0) > 1.0:
        digits = digits / 255.0
    out = np.zeros((count, 28, 28), dtype=np.float32)
    for i in range(count if len(digits) else 0):
        digit = digits[rng.integers(len(digits))]
        rows, cols = np.nonzero(digit > 0.5)
        if not len(rows):
            continue
        for _ in range(10):
            k = rng.integers(len(rows))
            side = int(rng.integers(*WINDOW))
            top, left = max(rows[k] - side // 2, 0), max(cols[k] - side // 2, 0)
            piece = np.zeros_like(digit)
            piece[top: top + side, left: left + side] = digit[top: top + side, left: left + side]
            if piece.sum() <= MAX_SHARE * digit.sum():
                out[i] = centre_by_mass(piece)
                break
    return out
