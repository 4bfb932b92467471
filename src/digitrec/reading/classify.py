"""The model's reading of cleaned pictures: class probabilities, steadied by reading each
digit at small shifts, and the more likely turn of a picture whose EXIF turn is doubtful."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from digitrec.reading.images import Cleaned
from digitrec.reading.number import Character, Read, choose, judge

SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
CLEARLY = 0.95            # a stored-way reading beats an upright "not a digit" only this sure
BATCH = 512               # digits given to the model at once (x5 shifts)


def shifted(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The batch of 28x28 digits moved by (dy, dx) pixels, the uncovered edge left black."""
    moved = np.roll(batch, (dy, dx), axis=(1, 2))
    if dy:
        moved[:, 0 if dy > 0 else -1] = 0
    if dx:
        moved[:, :, 0 if dx > 0 else -1] = 0
    return moved


def predict_digits(model: Any, digits: np.ndarray) -> np.ndarray:
    """Class probabilities for (N, 28, 28) digits, averaged over one-pixel shifts.

    Placing a digit by its centre of mass is exact only to half a pixel, and a user's
    picture is further from MNIST than MNIST's own test set; averaging the reading of the
    digit and its four one-pixel shifts makes the answer steadier (on the MNIST test set it
    also gains a little).
    """
    if len(digits) > BATCH:  # bounded memory, however many candidates a chunk holds
        return np.concatenate([predict_digits(model, digits[start:start + BATCH])
                               for start in range(0, len(digits), BATCH)])
    views = np.concatenate([shifted(digits, dy, dx) for dy, dx in SHIFTS])[..., None]
    probabilities = np.asarray(model.predict_on_batch(views), dtype=np.float64)
    return probabilities.reshape(len(SHIFTS), len(digits), -1).mean(axis=0)


def read_cleaned(model: Any, cleaned: Sequence[Cleaned]) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities for cleaned pictures, and the 28x28 digit each reading is of.

    A picture whose EXIF orientation is doubtful (`Cleaned.as_stored`) is read both ways,
    and the more confident reading is kept: on the real user pictures, the upright reading
    of a digit was the more confident one against a quarter turn either way about 92% of
    the time, while following a stale tag is wrong every time.
    """
    digits = np.stack([c.digit for c in cleaned])
    probabilities = predict_digits(model, digits)
    doubtful = [i for i, c in enumerate(cleaned) if c.as_stored is not None]
    if doubtful:
        unturned = np.stack([cleaned[i].as_stored for i in doubtful])
        for i, row, digit in zip(doubtful, predict_digits(model, unturned), unturned,
                                 strict=True):
            if row.max() > probabilities[i].max():
                probabilities[i], digits[i] = row, digit
    return probabilities, digits


def read_numbers(model: Any, cleaned: Sequence[Cleaned], unsure_below: float) -> list[Read]:
    """What each cleaned picture says (`number.choose`), the candidates of all the pictures
    read together (`predict_digits`, BATCH at a time).

    A picture whose EXIF turn is doubtful has a second layout (as stored); the reading with
    more digits-worth of confidence is kept, a reading with digits over `not_digits`.
    """
    layouts = [(i, layout) for i, c in enumerate(cleaned) for layout in c.layouts]
    stacks = [cand.digits for _, layout in layouts for cand in layout.candidates]
    if not stacks:
        return [Read("failed") for _ in cleaned]
    probabilities = predict_digits(model, np.concatenate(stacks))
    reads: list[Read | None] = [None] * len(cleaned)
    at = 0
    for i, layout in layouts:
        rows = []
        for cand in layout.candidates:
            rows.append(probabilities[at:at + cand.parts])
            at += cand.parts
        size = cleaned[i].size if layout.turned else (max(cleaned[i].size),) * 2
        read = choose(layout.candidates, rows, len(layout.marks), unsure_below, layout.scale,
                      layout.offset, doubtful=layout.lines, size=size)
        read.turned = layout.turned
        if reads[i] is None or _better(read, reads[i]):
            reads[i] = read
    return reads


def _better(read: Read, than: Read) -> bool:
    """Whether the picture as stored (`read`) reads better than upright by its EXIF tag
    (`than`): more confidently, and when upright holds no digit, clearly a number as stored
    (a word turned sideways reads as a 1 or an 11 all too easily)."""
    if read.status == "not_digits":
        return False
    if than.status == "not_digits":
        return (read.confidence or 0.0) >= CLEARLY
    return (read.confidence or 0.0) > (than.confidence or 0.0)


def read_whole(model: Any, cleaned: Sequence[Cleaned], unsure_below: float,
               class_names: Sequence[str]) -> list[Read]:
    """Each picture read as one thing of a non-digit class set (a Fashion-MNIST garment):
    the whole ink is one character, never split, never refused (every picture is some class)."""
    probabilities, _ = read_cleaned(model, cleaned)
    reads = []
    for picture, row in zip(cleaned, probabilities, strict=True):
        box = (0, 0, *picture.size)
        read = judge([Character(box, row, seen=picture.digit)], unsure_below, below=(0, 0))
        read.text = class_names[int(row.argmax())]
        reads.append(read)
    return reads
