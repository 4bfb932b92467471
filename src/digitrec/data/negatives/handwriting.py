"""Negatives that look written by hand: letters, symbols and doodles drawn as pen strokes.

Font glyphs (`glyphs.py`) are typography; people's letters are strokes of one pen, wobbly,
slanted and out of proportion. Here each shape is a few strokes in a unit box (polylines
and arcs), and every drawing varies them the way hands do: each stroke's points are
jittered, the box is stretched and slanted, and the whole drawing is bent by a smooth
random warp. The warp moves the points before they are drawn, so it costs next to nothing
(an elastic warp of the pixels would cost more than the rest of prepare).

Only shapes no digit has are drawn: no O, B, I, l, g, q, b, G, D (they are digits in other
hands, and teaching the model to doubt them would teach it to doubt digits; drawn with the
stroke that tells them apart, D, B and G cost accuracy and refused no more). S and Z are
drawn by what tells them from a 5 and a 2 (one smooth curve; straight bars in sharp
corners): over seeds, they are refused more often, letters of their own shape included,
for at most one real digit more misread.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]
SIDE = 112          # drawn at 4x and normalised down, as scribbles.py
JITTER = 0.05       # of the box, per point
WARP = 0.05         # amplitude of the smooth warp, of the box
CORNERS = 6         # a stroke of at most this many points is a polyline (else an arc)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float,
        steps: int = 14) -> Stroke:
    """Points on an ellipse from `start` to `end` degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, steps))
    return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in angles]


# Each shape: strokes in a unit box, y down. Letters in the order of the alphabet.
LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "C": [arc(0.55, 0.5, 0.45, 0.5, -50, -310)],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.75, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.48), (0.7, 0.48)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(0.95, 0), (0.05, 0.55), (1, 1)]],
    "L": [[(0, 0), (0, 1), (0.8, 1)]],
    "M": [[(0, 1), (0.05, 0), (0.5, 0.65), (0.95, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "P": [[(0, 1), (0, 0)] + arc(0.3, 0.27, 0.55, 0.27, -90, 90) + [(0, 0.54)]],
    "R": [[(0, 1), (0, 0)] + arc(0.3, 0.27, 0.55, 0.27, -90, 90) + [(0, 0.54)],
          [(0.3, 0.54), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0, 0)] + arc(0.5, 0.55, 0.5, 0.45, 180, 0) + [(1, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.3), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    # Z and S are drawn by what tells them from a 2 and a 5: a Z's straight bars meeting
    # its diagonal in sharp corners, an S's one smooth curve, with no corner and no bar.
    "Z": [[(0, 0), (1, 0), (0, 1), (1, 1)]],
    "S": [arc(0.5, 0.25, 0.45, 0.25, -20, -270) + arc(0.5, 0.75, 0.45, 0.25, -90, 160)],
    "a": [arc(0.45, 0.62, 0.42, 0.36, -20, 340), [(0.88, 0.28), (0.9, 1)]],
    "c": [arc(0.55, 0.65, 0.45, 0.35, -40, -320)],
    "d": [arc(0.4, 0.68, 0.4, 0.32, 0, 360), [(0.82, 0), (0.82, 1)]],
    "e": [[(0.05, 0.62), (0.95, 0.62)] + arc(0.5, 0.65, 0.45, 0.35, 0, -320)],
    "f": [arc(0.75, 0.2, 0.3, 0.2, -20, -180) + [(0.45, 1)], [(0.15, 0.45), (0.8, 0.45)]],
    "h": [[(0, 0), (0, 1)], [(0, 0.6)] + arc(0.45, 0.65, 0.45, 0.3, 200, 360) + [(0.9, 1)]],
    "k": [[(0, 0), (0, 1)], [(0.8, 0.35), (0.05, 0.7), (0.9, 1)]],
    "m": [[(0, 0.35), (0, 1)], arc(0.25, 0.55, 0.25, 0.2, 180, 360) + [(0.5, 1)],
          arc(0.75, 0.55, 0.25, 0.2, 180, 360) + [(1, 1)]],
    "n": [[(0, 0.3), (0, 1)], arc(0.45, 0.55, 0.45, 0.25, 180, 360) + [(0.9, 1)]],
    "p": [[(0, 0.3), (0, 1.2)], arc(0.35, 0.5, 0.4, 0.22, 180, 540)],
    "r": [[(0, 0.35), (0, 1)], arc(0.5, 0.55, 0.5, 0.2, 180, 300)],
    "t": [[(0.45, 0), (0.45, 0.9), (0.7, 1)], [(0.05, 0.35), (0.9, 0.35)]],
    "u": [[(0, 0.3)] + arc(0.45, 0.7, 0.45, 0.3, 180, 0), [(0.9, 0.3), (0.95, 1)]],
    "v": [[(0, 0.3), (0.5, 1), (1, 0.3)]],
    "w": [[(0, 0.35), (0.25, 1), (0.5, 0.5), (0.75, 1), (1, 0.35)]],
    "x": [[(0, 0.35), (1, 1)], [(1, 0.35), (0, 1)]],
    "y": [[(0, 0.3), (0.5, 0.8)], [(1, 0.3), (0.25, 1.25)]],
}

SYMBOLS: dict[str, list[Stroke]] = {
    "+": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "x": [[(0.15, 0.15), (0.85, 0.85)], [(0.85, 0.15), (0.15, 0.85)]],
    "=": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)]],
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.33), (1, 0.33)],
          [(0, 0.67), (1, 0.67)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "<": [[(0.9, 0.1), (0.1, 0.5), (0.9, 0.9)]],
    ">": [[(0.1, 0.1), (0.9, 0.5), (0.1, 0.9)]],
    "~": [arc(0.25, 0.5, 0.25, 0.2, 180, 360) + arc(0.75, 0.5, 0.25, 0.2, 180, 0)],
    "≠": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)], [(0.7, 0.05), (0.3, 0.95)]],
    "√": [[(0, 0.6), (0.2, 0.5), (0.4, 1), (0.65, 0), (1, 0)]],
    "÷": [[(0, 0.5), (1, 0.5)], arc(0.5, 0.18, 0.06, 0.06, 0, 360, 6),
          arc(0.5, 0.82, 0.06, 0.06, 0, 360, 6)],
    "&": [[(1, 1), (0.2, 0.35)] + arc(0.4, 0.2, 0.2, 0.2, 150, -150) + [(0.1, 0.7)]
          + arc(0.35, 0.75, 0.25, 0.25, 180, 60) + [(0.9, 0.55)]],
    "@": [arc(0.5, 0.5, 0.2, 0.2, 0, 360) + [(0.72, 0.7)] + arc(0.5, 0.5, 0.5, 0.5, 30, 340)],
    "?": [arc(0.5, 0.25, 0.35, 0.25, 180, 430) + [(0.5, 0.72)],
          arc(0.5, 0.93, 0.06, 0.06, 0, 360, 6)],
}


def _cloud(rng: np.random.Generator) -> list[Stroke]:
    """A closed outline of bumps (a cloud, a bush, a flower's petals)."""
    bumps = int(rng.integers(5, 10))
    theta = np.linspace(0, 2 * np.pi, 12 * bumps)
    r = 0.3 + 0.2 * np.abs(np.sin(bumps * theta / 2))
    return [[(0.5 + float(a) * np.cos(t), 0.5 + 0.75 * float(a) * np.sin(t))
             for a, t in zip(r, theta, strict=True)]]


def _spiral(rng: np.random.Generator) -> list[Stroke]:
    turns = float(rng.uniform(2.0, 3.5))
    theta = np.linspace(0, 2 * np.pi * turns, int(30 * turns))
    r = 0.5 * theta / theta[-1]
    return [[(0.5 + float(a) * np.cos(t), 0.5 + float(a) * np.sin(t)) for a, t in
             zip(r, theta, strict=True)]]


def _snake(rng: np.random.Generator) -> list[Stroke]:
    """A long wave across the box (a snake, a squiggle under a word)."""
    waves = float(rng.uniform(1.5, 3.5))
    x = np.linspace(0, 1, 40)
    return [[(float(a), 0.5 + 0.2 * float(np.sin(2 * np.pi * waves * a))) for a in x]]


def _house(rng: np.random.Generator) -> list[Stroke]:
    return [[(0.1, 0.45), (0.1, 1), (0.9, 1), (0.9, 0.45), (0.1, 0.45)],
            [(0, 0.5), (0.5, 0), (1, 0.5)], [(0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1)]]


def _sun(rng: np.random.Generator) -> list[Stroke]:
    rays = int(rng.integers(5, 10))
    strokes = [arc(0.5, 0.5, 0.22, 0.22, 0, 360, 20)]
    for a in np.linspace(0, 2 * np.pi, rays, endpoint=False) + rng.uniform(0, 1):
        strokes.append([(0.5 + 0.32 * float(np.cos(a)), 0.5 + 0.32 * float(np.sin(a))),
                        (0.5 + 0.5 * float(np.cos(a)), 0.5 + 0.5 * float(np.sin(a)))])
    return strokes


def _heart(rng: np.random.Generator) -> list[Stroke]:
    return [[(0.5, 1)] + arc(0.27, 0.3, 0.25, 0.25, 145, 360) + arc(0.73, 0.3, 0.25, 0.25, 180, 395)
            + [(0.5, 1)]]


def _polygon(rng: np.random.Generator) -> list[Stroke]:
    """A triangle or a square, outlined, maybe with a cross inside."""
    sides = int(rng.integers(3, 5))   # a pentagon, bent, is a 0
    angles = np.linspace(0, 2 * np.pi, sides + 1) + rng.uniform(0, np.pi)
    outline = [(0.5 + 0.5 * float(np.cos(a)), 0.5 + 0.5 * float(np.sin(a))) for a in angles]
    if rng.random() < 0.4:
        return [outline, [outline[0], outline[sides // 2 + 1]]]
    return [outline]


def _figure(rng: np.random.Generator) -> list[Stroke]:
    """A stick figure: head, body, arms, legs."""
    return [arc(0.5, 0.15, 0.14, 0.14, 0, 360, 14), [(0.5, 0.29), (0.5, 0.7)],
            [(0.15, 0.45), (0.85, 0.45)], [(0.2, 1), (0.5, 0.7), (0.8, 1)]]


def _target(rng: np.random.Generator) -> list[Stroke]:
    """Circles inside one another, or a circle with a cross: never one plain ring."""
    if rng.random() < 0.5:
        return [arc(0.5, 0.5, 0.5, 0.5, 0, 360, 24), arc(0.5, 0.5, 0.25, 0.25, 0, 360, 16)]
    return [arc(0.5, 0.5, 0.5, 0.5, 0, 360, 24), [(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]]


DOODLES: tuple[Callable[[np.random.Generator], list[Stroke]], ...] = (
    _cloud, _spiral, _snake, _house, _sun, _heart, _polygon, _figure, _target)


def _warp(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth random bend of the plane: two low-frequency waves per axis."""
    out = points.copy()
    for axis in (0, 1):
        for _ in range(2):
            freq = rng.uniform(0.5, 1.5, 2)
            phase = rng.uniform(0, 2 * np.pi)
            out[:, axis] += WARP * rng.uniform(0.3, 1.0) * np.sin(
                2 * np.pi * (points @ freq) + phase)
    return out


def _densify(points: np.ndarray) -> np.ndarray:
    """The stroke with points every 0.05 of the box, so the warp bends straight lines too."""
    dense = [points[:1]]
    for a, b in zip(points[:-1], points[1:], strict=True):
        steps = max(1, int(np.hypot(*(b - a)) / 0.05))
        dense.append(a + (b - a) * np.linspace(0, 1, steps + 1)[1:, None])
    return np.concatenate(dense)


def draw_strokes(strokes: list[Stroke], rng: np.random.Generator) -> np.ndarray:
    """`strokes` (unit box) drawn as a hand would: jittered, stretched, slanted, bent."""
    width = rng.uniform(0.55, 1.15)
    slant = rng.uniform(-0.35, 0.25)
    angle = np.radians(rng.uniform(-12, 12))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    image = Image.new("L", (SIDE, SIDE), 0)
    draw = ImageDraw.Draw(image)
    pen = int(rng.integers(5, 12))
    for stroke in strokes:
        points = np.asarray(stroke, dtype=np.float64)
        # Corners of a polyline move on their own; an arc's many points move together
        # (jittered one by one, a curve would shake).
        shape = points.shape if len(points) <= CORNERS else (1, 2)
        points = points + rng.normal(0, JITTER, shape)
        points = _warp(_densify(points), rng)
        points[:, 0] = (points[:, 0] - 0.5) * width + slant * (0.5 - points[:, 1])
        points[:, 1] -= 0.5
        points = points @ rotation.T * (SIDE * 0.6) + SIDE / 2
        xy = [tuple(map(float, p)) for p in points]
        draw.line(xy, fill=255, width=pen, joint="curve")
        r = pen / 2
        for x, y in (xy[0], xy[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image, dtype=np.float32) / 255.0


def letter(rng: np.random.Generator) -> np.ndarray:
    """A letter or symbol written by hand; ink in [0, 1]."""
    shapes = LETTERS if rng.random() < 0.75 else SYMBOLS
    keys = list(shapes)
    return draw_strokes(shapes[keys[rng.integers(len(keys))]], rng)


def doodle(rng: np.random.Generator) -> np.ndarray:
    """A doodle drawn by hand (cloud, spiral, snake, house, sun, heart, polygon, figure)."""
    return draw_strokes(DOODLES[rng.integers(len(DOODLES))](rng), rng)


def blob(rng: np.random.Generator) -> np.ndarray:
    """A filled, irregular blob (a stain, an object photographed dark on light)."""
    image = Image.new("L", (SIDE, SIDE), 0)
    corners = int(rng.integers(6, 14))
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radii = rng.uniform(20, 50, corners)
    stretch = rng.uniform(0.5, 1.0)
    points = [(SIDE / 2 + r * np.cos(a), SIDE / 2 + stretch * r * np.sin(a))
              for r, a in zip(radii, angles, strict=True)]
    ImageDraw.Draw(image).polygon([tuple(map(float, p)) for p in points], fill=255)
    return np.asarray(image, dtype=np.float32) / 255.0
