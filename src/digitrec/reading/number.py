"""The model's readings of every candidate grouping -> what the picture says: a number, or
"not a digit", with a confidence.

The grouping read is the one the model finds most digit-like overall (a shortest path over
the marks, left to right): each digit costs -log of its calibrated confidence, plus a charge
for shapes no digit has (much wider than tall), for reading side-by-side marks as one digit
(JOIN_COST), for cutting a mark (CUT_COST) and for a digit far shorter than the others
(SHORT_COST: a speck beside a digit is not a 1). Then each digit is tested on its own: the
model was trained to spread its probability evenly over the ten classes for what is not a
digit (outlier exposure), so a character whose two likeliest classes together stay below
NOT_DIGIT_BELOW is not a digit. A reading that is mostly such characters is `not_digits`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from digitrec.reading.segment import Candidate

NOT_DIGIT_BELOW = 0.6     # top-2 probability mass under which a character is not a digit
LONE_NOT_DIGIT_BELOW = 0.8  # ...when it is the picture's only character (no digit beside it)
JOIN_COST = math.log(2)   # side-by-side marks are one digit half as often as two
CUT_COST = math.log(2)    # a cut must make the reading twice as likely
WIDE_OK = 1.1             # digits are rarely wider than this share of their height
WIDE_COST = 4.0           # per unit of width / height above WIDE_OK
SHORT = 0.6               # digits of a number are rarely shorter than this share of the median
SHORT_COST = 10.0         # per unit of height below SHORT (a speck is no digit of its own)
DOUBT = math.log(1.5)     # another count of digits this close makes the split unsure...
CLEAR = 0.95              # ...unless every digit read is at least this sure
FLOOR = 1e-6              # probabilities are floored before the log
MAX_STRAYS = 2            # this many characters that are no digit make a word, not a number


@dataclass
class Character:
    """One thing the reader found: its box (in the picture), its reading, whether a digit."""

    box: tuple[int, int, int, int]
    probabilities: np.ndarray
    digit_like: bool = True            # set by `judge`
    seen: np.ndarray | None = None     # the 28x28 the model read

    @property
    def likeness(self) -> float:
        """How much this looks like some digit: the mass of its two likeliest classes (a
        digit between two readings, a 4 or a 9, still has it; a letter spread thin has not)."""
        return float(np.sort(self.probabilities)[-2:].sum())

    @property
    def digit(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())


@dataclass
class Read:
    """What one picture says. `status`: ok, unsure, not_digits or failed."""

    status: str
    text: str = ""
    confidence: float | None = None
    characters: list[Character] = field(default_factory=list)
    split_doubtful: bool = False
    turned: bool = True               # upright by the EXIF tag (False: as the file stores it)


def _part_cost(probabilities: np.ndarray, aspect: float, height: float) -> float:
    return (-math.log(max(float(probabilities.max()), FLOOR))
            + WIDE_COST * max(0.0, aspect - WIDE_OK) + SHORT_COST * max(0.0, SHORT - height))


def candidate_cost(candidate: Candidate, probabilities: np.ndarray) -> float:
    """What reading `candidate` costs, given its parts' class probabilities (parts, classes)."""
    heights = candidate.heights or [1.0] * candidate.parts
    cost = sum(_part_cost(row, aspect, height) for row, aspect, height
               in zip(probabilities, candidate.aspects, heights, strict=True))
    return cost + candidate.joined * JOIN_COST + (candidate.parts - 1) * CUT_COST


def best_path(marks: int, candidates: Sequence[Candidate], costs: Sequence[float]
              ) -> tuple[list[int], dict[int, float]]:
    """The cheapest sequence of candidates covering marks 0..marks-1, and the cheapest cost
    for each number of digits (to tell how doubtful the count is)."""
    # states: (position, digits so far) -> (cost, previous state, candidate index)
    State = tuple[int, int]
    best: dict[State, tuple[float, State | None, int]] = {(0, 0): (0.0, None, -1)}
    starting: dict[int, list[int]] = {}
    for index, candidate in enumerate(candidates):
        starting.setdefault(candidate.first, []).append(index)
    for position in range(marks):
        states = [(key, value) for key, value in best.items() if key[0] == position]
        for (_, count), (cost, _, _) in states:
            for index in starting.get(position, []):
                candidate = candidates[index]
                key = (candidate.last, count + candidate.parts)
                total = cost + costs[index]
                if key not in best or total < best[key][0]:
                    best[key] = (total, (position, count), index)
    ends = {count: value[0] for (position, count), value in best.items() if position == marks}
    count = min(ends, key=ends.get)
    path, key = [], (marks, count)
    while best[key][1] is not None:
        path.append(best[key][2])
        key = best[key][1]
    return path[::-1], ends


def choose(candidates: Sequence[Candidate], probabilities: Sequence[np.ndarray], marks: int,
           unsure_below: float, scale: float = 1.0, offset: tuple[int, int] = (0, 0),
           doubtful: bool = False, size: tuple[int, int] | None = None) -> Read:
    """The reading of one picture from its candidates' probabilities (one array of
    (parts, classes) per candidate). Boxes are mapped back to the picture by `scale`
    (picture pixels per ink-map pixel) and `offset`, within `size`. `doubtful` makes the
    split unsure whatever the costs say (the marks stand on more than one line)."""
    costs = [candidate_cost(c, p) for c, p in zip(candidates, probabilities, strict=True)]
    path, by_count = best_path(marks, candidates, costs)
    characters = []
    for index in path:
        candidate = candidates[index]
        for row, box, seen in zip(probabilities[index], candidate.boxes, candidate.digits,
                                  strict=True):
            characters.append(Character(_to_picture(box, scale, offset, size), row, seen=seen))
    best_cost = min(by_count.values())
    clear = min(c.confidence for c in characters) >= CLEAR
    doubtful = doubtful or (not clear and any(count != len(characters) and
                                              cost - best_cost < DOUBT
                                              for count, cost in by_count.items()))
    return judge(characters, unsure_below, doubtful)


def judge(characters: list[Character], unsure_below: float, split_doubtful: bool = False,
          below: tuple[float, float] = (NOT_DIGIT_BELOW, LONE_NOT_DIGIT_BELOW)) -> Read:
    """Status, text and confidence of a reading from its characters.

    A character is a digit when its `likeness` reaches `below` (the second value for a lone
    character: a mark with digits beside it is more likely one itself). Mostly not-digit
    characters (by area), or MAX_STRAYS of them (a word whose letters half read as digits),
    make the picture `not_digits`; otherwise the digits are the text (one stray non-digit
    beside them is left out and makes the reading unsure). The confidence is
    the product of the digits' confidences, the chance all are right; below `unsure_below`
    the reading is unsure.
    """
    threshold = below[1] if len(characters) == 1 else below[0]
    for character in characters:
        character.digit_like = character.likeness >= threshold
    area = [max(1, (c.box[2] - c.box[0]) * (c.box[3] - c.box[1])) for c in characters]
    refused = sum(a for a, c in zip(area, characters, strict=True) if not c.digit_like)
    digits = [c for c in characters if c.digit_like]
    strays = len(characters) - len(digits)
    if not digits or refused >= sum(area) / 2 or strays >= MAX_STRAYS:
        return Read("not_digits", "", None, characters, split_doubtful)
    confidence = float(np.prod([c.confidence for c in digits]))
    unsure = split_doubtful or len(digits) < len(characters) or confidence < unsure_below
    return Read("unsure" if unsure else "ok", "".join(str(c.digit) for c in digits),
                confidence, characters, split_doubtful)


def _to_picture(box: tuple[int, int, int, int], scale: float, offset: tuple[int, int],
                size: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """An ink-map box in the picture's pixels, never outside the picture (`size`)."""
    left, top, right, bottom = box
    dx, dy = offset
    width, height = size or (math.inf, math.inf)
    return (int(min(left * scale + dx, width - 1)), int(min(top * scale + dy, height - 1)),
            int(min(math.ceil(right * scale) + dx, width)),
            int(min(math.ceil(bottom * scale) + dy, height)))
