"""Any picture of one handwritten digit -> a 28x28 digit as MNIST made them.

MNIST digits are white on black, cropped to the ink, scaled to fit a 20x20 box with the
aspect ratio kept, anti-aliased, and placed in a 28x28 field so that their centre of mass is
at the centre. User pictures (photos of paper, scans, paint-program drawings) are none of
that, so each step below undoes one difference:

1. `decode.load_image`: decode safely (decompression-bomb limit, first frame, EXIF orientation).
2. `to_gray`: any mode to grey in [0, 1]; transparency composited onto a background of the
   opposite brightness to the ink, so a drawing on a transparent canvas keeps its strokes.
3. `ink_bright`: decide from the picture which side is ink (the majority is background)
   and invert so ink is bright.
4. `flatten_background`: subtract a smooth estimate of the background (grey opening at low
   resolution), which removes shadows, uneven lighting and paper texture.
5. `find_ink`: Otsu threshold; keep the connected pieces that matter, drop specks and the
   dark margins of a photographed page.
6. `digit.normalise_digit`: crop to the ink, scale into a 20x20 box, bring the stroke width to
   MNIST's (about 2.7 px) however thick or thin the pen was, anti-alias.
7. `digit.centre_by_mass`: place in 28x28 with the centre of mass at the centre.

`digit.redraw` runs steps 6 and 7 on MNIST's own digits, so the model can also train on digits in
the style it will be shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.reading.decode import (
    SOURCE_SIZE,
    UNDO_TRANSPOSE,
    WORK_SIDE,
    BlankPicture,
    ImageProblem,
    load_oriented,
    to_working_size,
)
from digitrec.reading.digit import centre_by_mass, normalise_digit, stroke_width
from digitrec.reading.segment import EIGHT_CONNECTED, Candidate, candidates, find_marks, stacked

MIN_CONTRAST = 0.06       # ink must differ from the background by this much (of full range)
FLAT_BACKGROUND = 0.04    # a background this even (99th percentile) needs no flattening
SPECK_FRACTION = 0.06     # pieces smaller than this share of the largest piece are specks
DETAIL_HEIGHT = 24        # marks shorter than this (px of the ink map) get a closer look
DETAIL_SIDE = 1024        # ...decoded at up to this longest side
SIDEWAYS = 3              # ...with this many mark heights either side of them
RULED_SPAN = 0.6          # a horizontal stroke this share of the width long may be a line
MARGIN_HEIGHT = 1.8       # a piece cut by the edge this much taller than the writing: margin
THIN_INK_PIXELS = 20      # a thin pen on a large canvas leaves at least this many ink pixels
FLOOR_DIV = 8             # the background's window is at least this share of the picture
MOST_INK = 0.35           # more of a picture above the ink threshold is background
NOISE_MARGIN = 4.0        # ...at least this many times brighter than the background's noise


@dataclass
class Layout:
    """A picture's ink as marks, and the candidate digits to weigh (`segment`)."""

    candidates: list[Candidate]
    marks: list[tuple[int, int, int, int]]   # each mark's box in the ink map
    scale: float              # pixels of the picture file per pixel of the ink map
    turned: bool = True       # upright as the EXIF tag says (False: as stored)
    offset: tuple[int, int] = (0, 0)  # where the ink map's corner is in the picture file
    lines: bool = False       # marks stand one above the other: more than one line


@dataclass
class Cleaned:
    """A picture turned into MNIST digits, and what was learned on the way."""

    digit: np.ndarray         # float32 (28, 28) in [0, 1]: all the ink as one digit
    inverted: bool            # the picture had dark ink on a light background
    thumbnail: Image.Image    # the original, small, for contact sheets
    as_stored: np.ndarray | None = None  # the digit unturned, when the EXIF turn is doubtful
    layouts: list[Layout] = field(default_factory=list)  # a second one: the unturned ink
    size: tuple[int, int] = (0, 0)  # the picture file's size, upright
    ink: np.ndarray | None = None   # the ink map (dropped before it leaves the worker)


def to_gray(image: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] for any mode; transparency composited to keep the ink visible."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return np.clip(values / top, 0, 1) if image.mode != "F" else _stretch(values)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    has_alpha = image.mode in ("LA", "RGBA")
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    if not has_alpha:
        return gray
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
    if alpha.min() > 0.98:
        return gray
    opaque = alpha > 0.5
    ink_is_dark = bool(opaque.any()) and float(np.median(gray[opaque])) < 0.5
    background = 1.0 if ink_is_dark else 0.0
    return gray * alpha + background * (1 - alpha)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def ink_bright(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Make ink bright on dark; the background is what most of the picture is."""
    inverted = float(np.median(gray)) > 0.5
    return (1.0 - gray if inverted else gray), inverted


def otsu_threshold(values: np.ndarray) -> float:
    """The grey level that best separates two classes (Otsu, 1979)."""
    bins = np.clip((values * 256).astype(np.int32), 0, 255)  # as np.histogram, but faster
    histogram = np.bincount(bins.ravel(), minlength=256).astype(np.float64)
    weight = histogram.cumsum()
    total = weight[-1]
    centres = (np.arange(256) + 0.5) / 256
    mass = (histogram * centres).cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[-1] * weight / total - mass) ** 2 / (weight * (total - weight))
    between = np.nan_to_num(between)
    return float(centres[int(np.argmax(between))])


def flatten_background(gray: np.ndarray) -> np.ndarray:
    """Subtract the background (shadows, gradients, texture) from a bright-ink picture.

    The background is estimated by a grey opening, which removes every bright structure
    narrower than its window, so the window must be wider than the strokes: it is set from
    a rough stroke-width estimate and never below an eighth of the picture.
    """
    scale = max(1, max(gray.shape) // 128)
    small = gray[::scale, ::scale]
    threshold = otsu_threshold(small)
    background = small[small <= threshold]
    if background.size and np.percentile(background, 99) < FLAT_BACKGROUND:
        return gray  # a clean drawing or scan: nothing to flatten
    floor = max(3, max(small.shape) // FLOOR_DIV)
    above = small > threshold
    stroke = stroke_width(above)  # in pixels of `small`
    if above.mean() > MOST_INK and 3 * stroke + 1 > floor:
        # Ink never covers that much: a background brighter than the ink in places (a
        # webcam's vignette) fooled the threshold, and with it the stroke width. Measure
        # it again on a first flattening.
        rough = small - _background(small, floor)
        stroke = min(stroke, stroke_width(rough > otsu_threshold(rough)))
    window = max(floor, int(3 * stroke) + 1)
    background = _background(small, window)
    if scale > 1:
        size = (gray.shape[1], gray.shape[0])
        background = np.asarray(Image.fromarray(background, "F").resize(size, Image.BILINEAR))
    flat = np.clip(gray - background, 0, None)
    sigma = max(0.0, max(gray.shape) / 384)  # soften sensor noise and JPEG blocks
    return ndimage.gaussian_filter(flat, sigma, truncate=2.0) if sigma >= 0.5 else flat


def _background(small: np.ndarray, window: int) -> np.ndarray:
    """The paper's brightness: ink (narrower than `window`) opened away, then smoothed."""
    opened = ndimage.grey_opening(small, size=(window, window))
    return ndimage.uniform_filter(opened, size=max(3, window // 2))


def find_ink(flat: np.ndarray) -> np.ndarray:
    """The digit's ink in [0, 1]: bright enough, in pieces that matter, not a page margin.

    Returns the grey ink (not a hard mask) so a small digit scales up smoothly.
    """
    contrast = ink_level(flat)
    if contrast < MIN_CONTRAST:
        raise BlankPicture("no ink found: the picture looks blank")
    normalised = np.clip(flat / contrast, 0, 1)
    # Hysteresis, as in edge detection: faint ink counts when it touches clear ink, so a
    # lightly drawn stroke stays attached to its digit while faint smudges do not.
    threshold = otsu_threshold(normalised)
    strong = normalised > max(threshold, 0.25)
    weak = normalised > max(threshold / 2, 0.12)
    lines = ruled_lines(weak)
    if lines.any():
        normalised = np.where(lines, 0.0, normalised)
        strong, weak = strong & ~lines, weak & ~lines
    labels, count = ndimage.label(weak, structure=EIGHT_CONNECTED)
    if count == 0 or not strong.any():
        raise BlankPicture("no ink found: the picture looks blank")
    has_strong = np.bincount(labels[strong], minlength=count + 1) > 0
    has_strong[0] = False
    labels = np.where(has_strong[labels], labels, 0)
    keep = _pieces_to_keep(labels, count)
    kept = np.concatenate([[False], keep])[labels]
    near = ndimage.maximum_filter(kept.view(np.uint8), size=5) > 0  # kept, grown by 2 px
    return np.where(near, np.maximum(normalised, kept * 0.51), 0.0).astype(np.float32)


def ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The ruled lines of a page or a form's cell borders: horizontal strokes across most of
    the picture (RULED_SPAN of its width) and at least twice as long as the writing is tall,
    so a 7's bar or a 5's roof is never one. Writing that crosses a line loses only the
    line's own pixels."""
    length = max(8, int(RULED_SPAN * mask.shape[1]))
    lines = np.zeros_like(mask)
    for row in np.flatnonzero(mask.sum(axis=1) >= length):  # runs of `length` or more
        edges = np.diff(np.concatenate([[0], mask[row].astype(np.int8), [0]]))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                              strict=True):
            if end - start >= length:
                lines[row, start:end] = True
    if not lines.any():
        return lines
    rows = np.flatnonzero((mask & ~lines).sum(axis=1) > 0)
    if len(rows) and length < 2 * (rows[-1] - rows[0] + 1):
        return np.zeros_like(lines)
    return lines


def ink_level(flat: np.ndarray) -> float:
    """How bright the ink is: the 99.8th percentile of a bright-ink picture.

    A 1-2 px pen on a large canvas (a paint program's default brush on a 1150x650 page)
    covers less than 0.2% of the picture, and shrinking to the working size fades its
    strokes to a fifth of their contrast, so the percentile sees only background. Then the
    level of the brightest few dozen pixels counts instead, when it stands well clear of
    the background's own noise (so grain on a blank photo still reads as blank).
    """
    level = float(np.percentile(flat, 99.8))
    if level >= MIN_CONTRAST or flat.size <= 10 * THIN_INK_PIXELS:
        return level
    values = flat.ravel()
    brightest = float(np.partition(values, values.size - THIN_INK_PIXELS)[-THIN_INK_PIXELS])
    noise = float(np.percentile(flat, 99))
    return brightest if brightest >= NOISE_MARGIN * noise else level


def _pieces_to_keep(labels: np.ndarray, count: int) -> np.ndarray:
    """Which labelled pieces are writing: not a page's margin, edge or shadow, not a speck.

    A piece cut by the picture's edge is a margin when it is far taller than the writing
    inside the picture (a table around the paper, a shadow, the page's dark border). Of
    the rest, specks are pieces both small (SPECK_FRACTION of the largest's area) and short
    (under half the tallest), so a thin 1 beside a bold 8 stays. With a single piece inside,
    as in a photo of one digit, anything cut by the edge that is not much smaller than it is
    the page's margin.
    """
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    heights = np.zeros(count, dtype=np.int64)
    for i, found in enumerate(ndimage.find_objects(labels, max_label=count)):
        if found is not None:
            heights[i] = found[0].stop - found[0].start
    present = areas > 0
    touching = _touching_border(labels, count)
    tall_enough = heights >= max(4, 0.05 * min(labels.shape))
    inner = present & ~touching & tall_enough
    if inner.sum() >= 2:
        present &= ~(touching & (heights >= MARGIN_HEIGHT * heights[inner].max()))
    keep = present & ((areas >= SPECK_FRACTION * areas[present].max())
                      | (heights >= 0.5 * heights[present].max()))
    inner = keep & ~touching
    if inner.sum() == 1 and areas[inner].max() >= 0.3 * areas[keep].max():
        keep = inner  # one digit inside; pieces cut by the picture's edge are the page's margin
    return keep


def _touching_border(labels: np.ndarray, count: int) -> np.ndarray:
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return (np.bincount(edge, minlength=count + 1) > 0)[1:]


def clean_image(image: Image.Image, steps: list[tuple[str, np.ndarray]] | None = None,
                side: int = WORK_SIDE) -> Cleaned:
    """The whole chain, from a decoded picture to a 28x28 MNIST digit.

    Pass a list as `steps` to get each step's result appended to it, named (as drawn in the
    README's figure by `docs/preprocessing.py`).
    """
    small = to_working_size(image, side)
    gray = to_gray(small)
    bright, inverted = ink_bright(gray)
    flat = flatten_background(bright)
    ink = find_ink(flat)
    fitted = normalise_digit(ink)
    digit = centre_by_mass(fitted).astype(np.float32)
    if steps is not None:
        steps += [("2. grey", gray), ("3. ink made bright", bright),
                  ("4. background removed", flat), ("5. ink found", ink),
                  ("6. 20x20, MNIST strokes", fitted), ("7. centred in 28x28", digit)]
    size = image.info.get(SOURCE_SIZE, image.size)
    return Cleaned(digit, inverted, thumbnail(small), size=size, ink=ink,
                   layouts=[layout(ink, size[0] / small.width, whole=digit)])


def layout(ink: np.ndarray, scale: float, turned: bool = True,
           offset: tuple[int, int] = (0, 0), whole: np.ndarray | None = None) -> Layout:
    """The ink map split into marks and the candidate digits they may be read as. `whole`
    is all the ink drawn as one digit, used as is when the ink is one mark (the reading of
    a lone digit is then exactly that of the whole picture)."""
    marks = find_marks(ink)
    found = candidates(ink, marks, whole if len(marks) == 1 else None)
    return Layout(found, [m.box for m in marks.marks], scale, turned, offset,
                  lines=stacked(marks))


def closer_look(source: str | Path | BinaryIO, cleaned: Cleaned) -> Layout | None:
    """The marks again from a larger decode, when a picture holds marks too small at
    the working size to be read well (a phone number across a photographed page): the part
    of the picture they are in is decoded at up to DETAIL_SIDE and cleaned on its own.
    None when there is nothing to gain (marks large enough, no more pixels)."""
    first = cleaned.layouts[0]
    heights = [bottom - top for _, top, _, bottom in first.marks]
    if not heights or float(np.median(heights)) >= DETAIL_HEIGHT or first.scale <= 1.25:
        return None
    # Wider than high: a number may go on to the left and right in digits too faint to be
    # found at the working size.
    margin = float(np.median(heights))
    left = max(0.0, min(b[0] for b in first.marks) - SIDEWAYS * margin) * first.scale
    right = (max(b[2] for b in first.marks) + SIDEWAYS * margin) * first.scale
    top = max(0.0, min(b[1] for b in first.marks) - margin) * first.scale
    bottom = (max(b[3] for b in first.marks) + margin) * first.scale
    if hasattr(source, "seek"):
        source.seek(0)
    try:
        image, _ = load_oriented(source, side=DETAIL_SIDE)
        to_file = cleaned.size[0] / image.width          # file pixels per decoded pixel
        box = [round(v / to_file) for v in (left, top, right, bottom)]
        part = image.crop((box[0], box[1], min(image.width, box[2]), min(image.height, box[3])))
        small = to_working_size(part)
        ink = find_ink(flatten_background(ink_bright(to_gray(small))[0]))
        return layout(ink, part.width / small.width * to_file,
                      offset=(round(box[0] * to_file), round(box[1] * to_file)))
    except ImageProblem:
        return None


def thumbnail(image: Image.Image, side: int = 64) -> Image.Image:
    """A small RGB copy of the original, transparency shown on a checkerboard."""
    if image.mode.startswith(("I", "F")):  # 16-bit or float: grey levels scaled to 8 bits
        small = Image.fromarray((to_gray(image) * 255).astype(np.uint8))
    elif image.mode not in ("RGB", "RGBA", "L", "LA"):
        small = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    else:
        small = image.copy()
    small.thumbnail((side, side), Image.BILINEAR)
    if small.mode in ("RGBA", "LA"):
        board = Image.new("RGB", small.size, "#cccccc")
        for y in range(0, small.size[1], 8):
            for x in range((y // 8 % 2) * 8, small.size[0], 16):
                board.paste("#ffffff", (x, y, x + 8, y + 8))
        board.paste(small.convert("RGBA"), mask=small.convert("RGBA").getchannel("A"))
        return board
    return small.convert("RGB")


def clean_file(source: str | Path | BinaryIO) -> Cleaned:
    """`clean_image` for a file (a path, or an upload held in memory); when its EXIF
    orientation is doubtful, the digit as stored (unturned) comes along, for the reader to
    try both."""
    image, doubtful = load_oriented(source)
    try:
        cleaned = clean_image(image)
    except BlankPicture:
        # Writing too thin or small to survive the working size (a number written small
        # on a photographed page) may still be there at a larger one.
        if max(image.info.get(SOURCE_SIZE, image.size)) < 2 * WORK_SIDE:
            raise
        if hasattr(source, "seek"):
            source.seek(0)
        image, doubtful = load_oriented(source, side=DETAIL_SIDE)
        cleaned = clean_image(image, side=DETAIL_SIDE)
    first_scale = cleaned.layouts[0].scale  # of the ink map, which the unturned one shares
    closer = closer_look(source, cleaned)
    if closer is not None:
        cleaned.layouts[0] = closer
    if doubtful is not None:
        undo = UNDO_TRANSPOSE[doubtful]
        unturned = Image.fromarray(cleaned.digit, "F").transpose(undo)
        cleaned.as_stored = np.asarray(unturned, dtype=np.float32)
        ink = np.asarray(Image.fromarray(cleaned.ink, "F").transpose(undo), dtype=np.float32)
        cleaned.layouts.append(layout(ink, first_scale, turned=False))
    cleaned.ink = None
    return cleaned
