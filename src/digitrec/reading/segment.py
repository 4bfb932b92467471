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

from dataclasses import dataclass, field

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
SMALL = 0.4           # marks shorter than this share of the median are no digit alone
STACKED = 0.5         # marks at least this share of the tallest, one above the other: lines


Box = tuple[int, int, int, int]   # left, top, right, bottom (exclusive), in the ink map


@dataclass
class Mark:
    """One mark on the page: a connected piece of ink, or several lying over one another
    (`pieces`: their labels in `Marks.labels`)."""

    pieces: tuple[int, ...]
    box: Box

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class Marks:
    """The marks of an ink map, left to right, and the labelled pieces they are made of."""

    labels: np.ndarray        # int32, the ink map's shape: 0 background, else a piece
    marks: list[Mark]

    def __len__(self) -> int:
        return len(self.marks)

    def mask(self, marks: list[Mark], box: Box) -> np.ndarray:
        """Where `marks` have ink, inside `box` (a bool array of the box's shape)."""
        left, top, right, bottom = box
        pieces = [p for mark in marks for p in mark.pieces]
        return np.isin(self.labels[top:bottom, left:right], pieces)


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
    boxes: list[Box]
    aspects: list[float]                     # each part's width / height
    heights: list[float] = field(default_factory=list)  # each part's height / the median mark's


def _box(mask: np.ndarray, left: int = 0, top: int = 0) -> Box:
    """The box of a mask's ink, shifted by (left, top)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (left + int(cols[0]), top + int(rows[0]), left + int(cols[-1]) + 1,
            top + int(rows[-1]) + 1)


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def find_marks(ink: np.ndarray) -> Marks:
    """The marks of an ink map, left to right; marks over one another are merged.

    Raises ImageProblem for more than MAX_MARKS marks: a page of text or a field of dots is
    not a number, and reading it would take unbounded time.
    """
    labels, count = ndimage.label(ink > 0.5, structure=EIGHT_CONNECTED)
    if count == 0:
        raise BlankPicture("no ink found: the picture looks blank")
    slices = ndimage.find_objects(labels)
    heights = np.array([s[0].stop - s[0].start for s in slices])
    keep = [i for i in range(count) if heights[i] >= SPECK * heights.max()]
    if len(keep) > 4 * MAX_MARKS:
        raise ImageProblem(f"{len(keep)} separate marks: more than a number of at most "
                           f"{MAX_MARKS} digits; crop the picture to the number")
    marks = [Mark((i + 1,), (slices[i][1].start, slices[i][0].start, slices[i][1].stop,
                             slices[i][0].stop)) for i in keep]
    marks = _merge_overlapping(sorted(marks, key=_centre))
    if len(marks) > MAX_MARKS:
        raise ImageProblem(f"{len(marks)} separate marks: more than a number of at most "
                           f"{MAX_MARKS} digits; crop the picture to the number")
    return Marks(labels, marks)


def _centre(mark: Mark) -> float:
    return (mark.box[0] + mark.box[2]) / 2


def _shared(a: Mark, b: Mark) -> float:
    """The share of the narrower mark's width that lies over the other."""
    overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    return overlap / max(1, min(a.width, b.width))


def _merge_overlapping(marks: list[Mark]) -> list[Mark]:
    """Marks over one another are one digit's, unless both are tall: two digits stacked
    (two lines of writing) stay apart, for the reader to find doubtful. Marks much shorter
    than the writing (a speck, a dot, a stray stroke) join their nearest neighbour instead
    of being read as digits of their own, when it is near: the pieces of one digit touch or
    nearly do, so a short mark farther from every other than the writing is tall (a dash
    high above the number, a speck on the page) belongs to none and is left out."""
    tallest = max(m.height for m in marks)
    writing = float(np.median([m.height for m in marks]))
    merged: list[Mark] = []
    for mark in marks:
        for i, other in enumerate(merged):
            stacked = min(mark.height, other.height) >= STACKED * tallest and _apart(mark, other)
            if (_shared(mark, other) >= OVER and not stacked
                    and not _stray(mark, other, writing)):
                merged[i] = Mark(other.pieces + mark.pieces, _union([other.box, mark.box]))
                break
        else:
            merged.append(mark)
    typical = float(np.median([m.height for m in merged]))
    small = [m for m in merged if m.height < SMALL * typical]
    if len(small) < len(merged):
        merged = [m for m in merged if m.height >= SMALL * typical]
        for mark in small:
            near = min(range(len(merged)), key=lambda i: _gap(mark, merged[i]))
            if _gap(mark, merged[near]) <= max(typical, writing):
                merged[near] = Mark(merged[near].pieces + mark.pieces,
                                    _union([merged[near].box, mark.box]))
    return sorted(merged, key=_centre)


def _stray(a: Mark, b: Mark, writing: float) -> bool:
    """Whether one of two marks is far shorter than the writing and farther from the other
    than the writing is tall: a stray, not a piece of the other's digit."""
    return min(a.height, b.height) < SMALL * writing and _gap(a, b) > writing


def _apart(a: Mark, b: Mark) -> bool:
    """Whether two marks lie one above the other without their heights overlapping."""
    return a.box[3] <= b.box[1] or b.box[3] <= a.box[1]


def _gap(a: Mark, b: Mark) -> float:
    """The distance between two marks' boxes (0 when they overlap)."""
    dx = max(0, max(a.box[0], b.box[0]) - min(a.box[2], b.box[2]))
    dy = max(0, max(a.box[1], b.box[1]) - min(a.box[3], b.box[3]))
    return float(np.hypot(dx, dy))


def stacked(marks: Marks) -> bool:
    """Whether some marks stand one above the other (more than one line of writing)."""
    every = marks.marks
    return any(_shared(a, b) >= OVER and _apart(a, b)
               for i, a in enumerate(every) for b in every[i + 1:])


def _as_digit(ink: np.ndarray, mask: np.ndarray, box: Box) -> np.ndarray:
    """The ink under `mask` (of `box`'s shape) drawn as an MNIST digit, other marks left out."""
    left, top, right, bottom = box
    crop = np.where(mask, ink[top:bottom, left:right], 0.0).astype(np.float32)
    if not (crop > 0.5).any():
        return np.zeros((28, 28), dtype=np.float32)
    return centre_by_mass(normalise_digit(crop)).astype(np.float32)


def _cuts(mask: np.ndarray, parts: int) -> list[int] | None:
    """Columns (of the mark's own mask) to cut it into `parts`: the least inked column
    within a third of a part's width of each even split; None if a part would be empty."""
    columns = mask.sum(axis=0).astype(np.float64)
    width = mask.shape[1]
    step = width / parts
    reach = max(1, int(step / 3))
    cuts = []
    for k in range(1, parts):
        centre = int(round(k * step))
        low, high = max(1, centre - reach), min(width - 1, centre + reach + 1)
        if low >= high:
            return None
        cuts.append(low + int(np.argmin(columns[low:high])))
    edges = [0, *cuts, width]
    if any(b - a < 2 for a, b in zip(edges, edges[1:], strict=False)):
        return None
    return cuts


def _parts_of(mask: np.ndarray, box: Box, parts: int) -> list[tuple[np.ndarray, Box]]:
    """A mark (its mask inside `box`) cut into `parts`, each part's mask and box."""
    cuts = _cuts(mask, parts)
    if cuts is None:
        return []
    edges = [0, *cuts, mask.shape[1]]
    found = []
    for a, b in zip(edges, edges[1:], strict=False):
        part = mask[:, a:b]
        if not part.any():
            return []
        part_box = _box(part, box[0] + a, box[1])
        rows = slice(part_box[1] - box[1], part_box[3] - box[1])
        found.append((part[rows, part_box[0] - box[0] - a: part_box[2] - box[0] - a],
                      part_box))
    return found


def candidates(ink: np.ndarray, marks: Marks, whole: np.ndarray | None = None
               ) -> list[Candidate]:
    """Every grouping worth weighing: each run of up to MAX_RUN marks read as one digit,
    and each wide mark cut into 2..MAX_CUT digits. `whole`, when given, is the 28x28 of all
    the marks as one digit, already drawn."""
    found: list[Candidate] = []
    every = marks.marks
    for first in range(len(every)):
        for last in range(first + 1, min(len(every), first + MAX_RUN) + 1):
            run = every[first:last]
            box = _union([m.box for m in run])
            if whole is not None and (first, last) == (0, len(every)):
                found.append(_candidate(ink, first, last, len(run) - 1, [(None, box)],
                                        drawn=whole[None]))
            else:
                found.append(_candidate(ink, first, last, len(run) - 1,
                                        [(marks.mask(run, box), box)]))
        mark = every[first]
        if mark.width > WIDE * mark.height:
            mask = marks.mask([mark], mark.box)
            most = min(MAX_CUT, max(2, round(mark.width / (DIGIT_ASPECT * mark.height)) + 1))
            for parts in range(2, most + 1):
                pieces = _parts_of(mask, mark.box, parts)
                if pieces:
                    found.append(_candidate(ink, first, first + 1, 0, pieces))
    typical = float(np.median([m.height for m in every]))
    for candidate in found:
        candidate.heights = [(b[3] - b[1]) / typical for b in candidate.boxes]
    return found


def _candidate(ink: np.ndarray, first: int, last: int, joined: int,
               pieces: list[tuple[np.ndarray | None, Box]],
               drawn: np.ndarray | None = None) -> Candidate:
    digits = drawn if drawn is not None else np.stack([_as_digit(ink, mask, box)
                                                         for mask, box in pieces])
    boxes = [box for _, box in pieces]
    aspects = [(b[2] - b[0]) / max(1, b[3] - b[1]) for b in boxes]
    return Candidate(first, last, len(pieces), joined, digits, boxes, aspects)
