"""A digit drawn as MNIST drew its digits: cropped to the ink, fitted into a 20x20 box with
the aspect ratio kept, strokes of MNIST's width, anti-aliased, and placed in a 28x28 field with
its centre of mass at the centre.

Both sides of the pipeline draw digits this way: the reader for every user picture, and
`prepare` for MNIST's own training digits (`redraw`), so the model also learns digits in the
style it will be shown.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.catalog import IMAGE_SIDE

BOX = 20                  # MNIST fitted each digit into 20x20 of its 28x28 field
SUPERSAMPLE = 4           # stroke width is adjusted at 4x the final resolution
MNIST_STROKE = 2.7        # median stroke width of MNIST digits, px at 28x28 (2*area/boundary)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: 2 * area / boundary length."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    boundary = int((mask & ~ndimage.binary_erosion(mask)).sum())
    return 2.0 * area / max(boundary, 1)


def normalise_digit(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20x20 keeping the aspect, set MNIST's stroke width."""
    solid = ink > 0.5
    rows = np.flatnonzero(solid.any(axis=1))
    cols = np.flatnonzero(solid.any(axis=0))
    crop = ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    big = (max(1, round(width * scale * SUPERSAMPLE)), max(1, round(height * scale * SUPERSAMPLE)))
    # Area-average when shrinking; interpolate when enlarging, so small digits stay smooth.
    method = Image.BOX if big[0] <= width else Image.BILINEAR
    resized = np.asarray(Image.fromarray(crop, "F").resize(big, method))
    fine = resized > 0.5
    if not fine.any():
        fine = resized >= resized.max() * 0.5
    wanted = MNIST_STROKE * SUPERSAMPLE
    change = (wanted - stroke_width(fine)) / 2  # pixels to add on each side of a stroke
    radius = int(round(abs(change)))
    if change > 0 and radius:
        fine = ndimage.binary_dilation(fine, _disk(radius))
    elif change < 0 and radius:
        thinner = ndimage.binary_erosion(fine, _disk(radius))
        if thinner.sum() > 0.3 * fine.sum():  # never erode a digit away
            fine = thinner
    pad = SUPERSAMPLE * 2
    fine = np.pad(fine, pad)
    small = (max(1, round(fine.shape[1] / SUPERSAMPLE)), max(1, round(fine.shape[0] / SUPERSAMPLE)))
    return np.asarray(Image.fromarray(fine.astype(np.float32), "F").resize(small, Image.BOX))


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius: radius + 1, -radius: radius + 1]
    return x * x + y * y <= radius * radius


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place `digit` in a 28x28 field with its centre of mass at the centre, as MNIST did."""
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    digit = digit[np.ix_(digit.any(axis=1), digit.any(axis=0))] if digit.any() else digit
    height, width = digit.shape
    if height > IMAGE_SIDE or width > IMAGE_SIDE:
        digit = np.asarray(Image.fromarray(digit, "F").resize(
            (min(width, IMAGE_SIDE), min(height, IMAGE_SIDE)), Image.BOX))
        height, width = digit.shape
    cy, cx = ndimage.center_of_mass(digit) if digit.sum() > 0 else (height / 2, width / 2)
    top = int(np.clip(round(IMAGE_SIDE / 2 - cy - 0.5), 0, IMAGE_SIDE - height))
    left = int(np.clip(round(IMAGE_SIDE / 2 - cx - 0.5), 0, IMAGE_SIDE - width))
    field[top: top + height, left: left + width] = digit
    return np.clip(field, 0, 1)


def redraw(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit (28x28, bright ink in [0, 1]) drawn again as `prepare_image` draws a
    user's: cropped, refit into the 20x20 box, strokes set to MNIST's median width, centred.

    Every user picture reaches the model in this style (even strokes, crisp edges), which is
    not quite MNIST's own; training on both lets the model read both (`train.augment.redrawn`).
    A digit with no solid ink is returned as it is.
    """
    if not (digit > 0.5).any():
        return digit.astype(np.float32)
    return centre_by_mass(normalise_digit(digit.astype(np.float32)))
