"""The ink of a picture -> the pieces a number is written in, and every way of grouping
them into digits that the reader should weigh.

Handwritten digits in a number are mostly separate marks, so connected components are the
start (as in most number readers that do not train a sequence model). Two things break
"one mark = one digit", and each is undone here:

- a digit drawn in several strokes (a 5 with a lifted top bar, a 4 left open, a faint join
  lost to the threshold): marks that lie over one another (most of the narrower one's
  width shared) are one digit's; marks side by side may still be one, so runs of up to
  MAX_RUN neighbours are offered as one digit as well;
- digits that touch: a mark much wider than it is tall is offered whole and also cut into
  2..MAX_CUT parts, each cut at the column with the least ink near where an even split
  would put it.

This module only proposes (`Candidate`s, each drawn as a 28x28 MNIST digit); the model's
reading of each decides which grouping is read (`number.choose`). It runs in the worker
processes, so it needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitrec.reading.decode import BlankPicture, ImageProblem
from digitrec.reading.digit import centre_by_mass, normalise_digit

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
MAX_MARKS = 40        # marks read per picture; more is a page, not a number
MAX_RUN = 3           # neighbouring marks offered as one digit
MAX_CUT = 4           # parts a wide mark may be cut into
OVER = 0.5            # marks sharing this much of the narrower width are one digit's
WIDE = 1.15           # a mark wider than WIDE x its height may be several touching digits
DIGIT_ASPECT = 0.75   # a typical handwritten digit's width / height, to count touching ones
SPECK = 0.12          # marks smaller (in height) than this share of the tallest are specks


@dataclass
class Mark:
    """One mark on the page: a connected piece of ink (or several lying on one another)."""

    mask: np.ndarray                   # bool, the picture's shape
    box: tuple[int, int, int, int]     # left, top, right, bottom (exclusive) in the ink map

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class Candidate:
    """One way to read marks first..last-1 as digits: whole (`parts` 1) or cut in `parts`.

    `digits` holds one 28x28 per part; `boxes` the parts' boxes in the ink map. `joined`
    counts side-by-side marks read as one digit (an assumption the chooser charges for).
    """

    first: int
    last: int
    parts: int
    joined: int
    digits: np.ndarray                       # float32 (parts, 28, 28)
    boxes: list[tuple[int, int, int, int]]
    aspects: list[float]                     # each part's width / height


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def find_marks(ink: np.ndarray) -> list[Mark]:
    """The marks of an ink map, left to right; marks over one another are merged.

    Raises ImageProblem for more than MAX_MARKS marks: a page of text or a field of dots is
    not a number, and reading it would take unbounded time.
    """
    solid = ink > 0.5
    labels, count = ndimage.label(solid, structure=EIGHT_CONNECTED)
    if count == 0:
        raise BlankPicture("no ink found: the picture looks blank")
    slices = ndimage.find_objects(labels)
    heights = np.array([s[0].stop - s[0].start for s in slices])
    keep = [i for i in range(count) if heights[i] >= SPECK * heights.max()]
    if len(keep) > 4 * MAX_MARKS:
        raise ImageProblem(f"{len(keep)} separate marks: more than a number of at most "
                           f"{MAX_MARKS} digits; crop the picture to the number")
    marks = []
    for i in keep:
        sy, sx = slices[i]
        mask = np.zeros(solid.shape, dtype=bool)
        mask[sy, sx] = labels[sy, sx] == i + 1
        marks.append(Mark(mask, (sx.start, sy.start, sx.stop, sy.stop)))
    marks = _merge_overlapping(sorted(marks, key=lambda m: (m.box[0] + m.box[2]) / 2))
    if len(marks) > MAX_MARKS:
        raise ImageProblem(f"{len(marks)} separate marks: more than a number of at most "
                           f"{MAX_MARKS} digits; crop the picture to the number")
    return marks


def _shared(a: Mark, b: Mark) -> float:
    """The share of the narrower mark's width that lies over the other."""
    overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    return overlap / max(1, min(a.width, b.width))


def _merge_overlapping(marks: list[Mark]) -> list[Mark]:
    merged: list[Mark] = []
    for mark in marks:
        for i, other in enumerate(merged):
            if _shared(mark, other) >= OVER:
                mask = other.mask | mark.mask
                merged[i] = Mark(mask, _box(mask))
                break
        else:
            merged.append(mark)
    merged.sort(key=lambda m: (m.box[0] + m.box[2]) / 2)
    return merged


def _as_digit(ink: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]
              ) -> np.ndarray:
    """The ink under `mask` inside `box` drawn as an MNIST digit (other marks left out)."""
    left, top, right, bottom = box
    crop = np.where(mask[top:bottom, left:right], ink[top:bottom, left:right], 0.0)
    crop = crop.astype(np.float32)
    if not (crop > 0.5).any():
        return np.zeros((28, 28), dtype=np.float32)
    return centre_by_mass(normalise_digit(crop)).astype(np.float32)


def _cuts(mark: Mark, parts: int) -> list[int] | None:
    """Columns (in the ink map) to cut a mark into `parts`: the least inked column within
    a third of a part's width of each even split; None if a part would be empty."""
    left, top, right, bottom = mark.box
    columns = mark.mask[top:bottom, left:right].sum(axis=0).astype(np.float64)
    step = mark.width / parts
    reach = max(1, int(step / 3))
    cuts = []
    for k in range(1, parts):
        centre = int(round(k * step))
        low, high = max(1, centre - reach), min(mark.width - 1, centre + reach + 1)
        if low >= high:
            return None
        cuts.append(left + low + int(np.argmin(columns[low:high])))
    edges = [left, *cuts, right]
    if any(b - a < 2 for a, b in zip(edges, edges[1:], strict=False)):
        return None
    return cuts


def _parts_of(mark: Mark, parts: int) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    cuts = _cuts(mark, parts)
    if cuts is None:
        return []
    edges = [mark.box[0], *cuts, mark.box[2]]
    found = []
    for a, b in zip(edges, edges[1:], strict=False):
        mask = np.zeros_like(mark.mask)
        mask[:, a:b] = mark.mask[:, a:b]
        if not mask.any():
            return []
        found.append((mask, _box(mask)))
    return found


def candidates(ink: np.ndarray, marks: list[Mark]) -> list[Candidate]:
    """Every grouping worth weighing: each run of up to MAX_RUN marks read as one digit,
    and each wide mark cut into 2..MAX_CUT digits."""
    found: list[Candidate] = []
    for first in range(len(marks)):
        mask = np.zeros(ink.shape, dtype=bool)
        for last in range(first + 1, min(len(marks), first + MAX_RUN) + 1):
            mask = mask | marks[last - 1].mask
            box = _box(mask)
            found.append(_candidate(ink, first, last, last - first - 1, [(mask.copy(), box)]))
        mark = marks[first]
        if mark.width > WIDE * mark.height:
            most = min(MAX_CUT, max(2, round(mark.width / (DIGIT_ASPECT * mark.height)) + 1))
            for parts in range(2, most + 1):
                pieces = _parts_of(mark, parts)
                if pieces:
                    found.append(_candidate(ink, first, first + 1, 0, pieces))
    return found


def _candidate(ink: np.ndarray, first: int, last: int, joined: int,
               pieces: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> Candidate:
    digits = np.stack([_as_digit(ink, mask, box) for mask, box in pieces])
    boxes = [box for _, box in pieces]
    aspects = [(b[2] - b[0]) / max(1, b[3] - b[1]) for b in boxes]
    return Candidate(first, last, len(pieces), joined, digits, boxes, aspects)
