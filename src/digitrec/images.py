"""Any picture of one handwritten digit -> a 28x28 digit as MNIST made them.

MNIST digits are white on black, cropped to the ink, scaled to fit a 20x20 box with the
aspect ratio kept, anti-aliased, and placed in a 28x28 field so that their centre of mass is
at the centre. User pictures (photos of paper, scans, paint-program drawings) are none of
that, so each step below undoes one difference:

1. `load_image`: decode safely (decompression-bomb limit, first frame, EXIF orientation).
2. `to_gray`: any mode to grey in [0, 1]; transparency composited onto a background of the
   opposite brightness to the ink, so a drawing on a transparent canvas keeps its strokes.
3. `ink_bright`: decide from the picture which side is ink (the majority is background)
   and invert so ink is bright.
4. `flatten_background`: subtract a smooth estimate of the background (grey opening at low
   resolution), which removes shadows, uneven lighting and paper texture.
5. `find_ink`: Otsu threshold; keep the connected pieces that matter, drop specks and the
   dark margins of a photographed page.
6. `normalise_digit`: crop to the ink, scale into a 20x20 box, bring the stroke width to
   MNIST's (about 2.7 px) however thick or thin the pen was, anti-alias.
7. `centre_by_mass`: place in 28x28 with the centre of mass at the centre.

`redraw` runs steps 6 and 7 on MNIST's own digits, so the model can also train on digits in
the style it will be shown.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from digitrec.datasets import IMAGE_SIDE
from digitrec.errors import DigitrecError

BOX = 20                  # MNIST fitted each digit into 20x20 of its 28x28 field
WORK_SIDE = 256           # longest side worked on: ample for a 20x20 digit, and fast
SUPERSAMPLE = 4           # stroke width is adjusted at 4x the final resolution
MNIST_STROKE = 2.7        # median stroke width of MNIST digits, px at 28x28 (2*area/boundary)
MIN_CONTRAST = 0.06       # ink must differ from the background by this much (of full range)
FLAT_BACKGROUND = 0.04    # a background this even (99th percentile) needs no flattening
SPECK_FRACTION = 0.06     # pieces smaller than this share of the largest piece are specks
THIN_INK_PIXELS = 20      # a thin pen on a large canvas leaves at least this many ink pixels
NOISE_MARGIN = 4.0        # ...at least this many times brighter than the background's noise
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


EXIF_ORIENTATION = 0x0112
EXIF_SIZE_TAGS = ((0x0100, 0x0101), (0xA002, 0xA003))  # image width/height, in IFD0 and Exif
EXIF_IFD = 0x8769
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
             6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}
UNDO_TRANSPOSE = {**TRANSPOSE, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


class ImageProblem(DigitrecError):
    """A picture that cannot be read as a digit; the message says why."""


@dataclass
class Prepared:
    """A picture turned into an MNIST digit, and what was learned on the way."""

    digit: np.ndarray         # float32 (28, 28) in [0, 1], white ink on black
    inverted: bool            # the picture had dark ink on a light background
    thumbnail: Image.Image    # the original, small, for contact sheets
    as_stored: np.ndarray | None = None  # the digit unturned, when the EXIF turn is doubtful


def load_image(source: str | Path | BinaryIO) -> Image.Image:
    """Open the first frame of a picture, upright, refusing decompression bombs.

    `source` is a path or a seekable binary file object (an upload held in memory).
    """
    return load_oriented(source)[0]


def load_oriented(source: str | Path | BinaryIO) -> tuple[Image.Image, int | None]:
    """`load_image`, and the EXIF orientation it applied when that is in doubt (else None).

    An orientation tag is doubtful when the EXIF block records a picture size that is not
    this picture's: the file was edited after the camera wrote it, and editors that turn or
    crop the pixels often copy the old tag unchanged, so that applying it, as browsers do,
    turns an upright digit sideways.
    """
    if isinstance(source, (str, Path)):
        source = Path(source)
        empty = source.stat().st_size == 0
    else:
        empty = not source.read(1)
        source.seek(0)
    if empty:
        raise ImageProblem("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
            image.seek(0)
            exif = image.getexif()
            orientation = exif.get(EXIF_ORIENTATION, 1)
            doubtful = orientation in TRANSPOSE and not exif_size_matches(exif, image.size)
            if image.format == "JPEG":
                image.draft(image.mode, (WORK_SIDE, WORK_SIDE))  # decode at reduced size
            image.load()
            image = reduce_large(image)
            if orientation in TRANSPOSE:
                image = image.transpose(TRANSPOSE[orientation])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageProblem(f"too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            raise ImageProblem("not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageProblem(f"corrupt or truncated image: {exc}") from None
    return image, orientation if doubtful else None


def exif_size_matches(exif: Image.Exif, size: tuple[int, int]) -> bool:
    """Whether the picture size the EXIF block records (if any) is this picture's."""
    try:
        recorded = [(exif.get(w), exif.get(h)) for w, h in EXIF_SIZE_TAGS[:1]]
        extra = exif.get_ifd(EXIF_IFD)
        recorded += [(extra.get(w), extra.get(h)) for w, h in EXIF_SIZE_TAGS[1:]]
    except (KeyError, TypeError, ValueError, OSError):
        return False
    sizes = [(int(w), int(h)) for w, h in recorded if isinstance(w, int) and isinstance(h, int)]
    return all(recorded_size in (size, size[::-1]) for recorded_size in sizes)


def _resizable(image: Image.Image) -> Image.Image:
    """The picture in a mode Pillow can resize without losing what matters."""
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        keep_alpha = "transparency" in image.info or "A" in image.getbands()
        return image.convert("RGBA" if keep_alpha else "RGB")
    return image


def reduce_large(image: Image.Image) -> Image.Image:
    """Shrink a picture far larger than the working size by a whole factor, cheaply."""
    factor = max(image.size) // (2 * WORK_SIDE)
    return _resizable(image).reduce(factor) if factor >= 2 else image


def to_working_size(image: Image.Image) -> Image.Image:
    """Area-average down, in Pillow, so the longest side is at most WORK_SIDE pixels."""
    width, height = image.size
    factor = max(width, height) / WORK_SIDE
    if factor <= 1:
        return image
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return _resizable(image).resize(size, Image.BOX)


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
    stroke = stroke_width(small > threshold)  # in pixels of `small`
    window = max(3, int(3 * stroke) + 1, max(small.shape) // 8)
    background = ndimage.grey_opening(small, size=(window, window))
    background = ndimage.uniform_filter(background, size=max(3, window // 2))
    if scale > 1:
        size = (gray.shape[1], gray.shape[0])
        background = np.asarray(Image.fromarray(background, "F").resize(size, Image.BILINEAR))
    flat = np.clip(gray - background, 0, None)
    sigma = max(0.0, max(gray.shape) / 384)  # soften sensor noise and JPEG blocks
    return ndimage.gaussian_filter(flat, sigma, truncate=2.0) if sigma >= 0.5 else flat


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary drawing: 2 * area / boundary length."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    boundary = int((mask & ~ndimage.binary_erosion(mask)).sum())
    return 2.0 * area / max(boundary, 1)


def find_ink(flat: np.ndarray) -> np.ndarray:
    """The digit's ink in [0, 1]: bright enough, in pieces that matter, not a page margin.

    Returns the grey ink (not a hard mask) so a small digit scales up smoothly.
    """
    contrast = ink_level(flat)
    if contrast < MIN_CONTRAST:
        raise ImageProblem("no ink found: the picture looks blank")
    normalised = np.clip(flat / contrast, 0, 1)
    # Hysteresis, as in edge detection: faint ink counts when it touches clear ink, so a
    # lightly drawn stroke stays attached to its digit while faint smudges do not.
    threshold = otsu_threshold(normalised)
    strong = normalised > max(threshold, 0.25)
    weak = normalised > max(threshold / 2, 0.12)
    labels, count = ndimage.label(weak, structure=EIGHT_CONNECTED)
    if count == 0 or not strong.any():
        raise ImageProblem("no ink found: the picture looks blank")
    has_strong = np.bincount(labels[strong], minlength=count + 1) > 0
    has_strong[0] = False
    labels = np.where(has_strong[labels], labels, 0)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = areas >= SPECK_FRACTION * areas.max()
    touching = _touching_border(labels, count)
    inner = keep & ~touching
    if inner.any() and areas[inner].max() >= 0.3 * areas[keep].max():
        keep = inner  # pieces cut by the picture's edge are the page's margin, not the digit
    kept = np.concatenate([[False], keep])[labels]
    near = ndimage.maximum_filter(kept.view(np.uint8), size=5) > 0  # kept, grown by 2 px
    return np.where(near, np.maximum(normalised, kept * 0.51), 0.0).astype(np.float32)


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


def _touching_border(labels: np.ndarray, count: int) -> np.ndarray:
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return (np.bincount(edge, minlength=count + 1) > 0)[1:]


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


def prepare_image(image: Image.Image, steps: list[tuple[str, np.ndarray]] | None = None
                  ) -> Prepared:
    """The whole chain, from a decoded picture to a 28x28 MNIST digit.

    Pass a list as `steps` to get each step's result appended to it, named (as drawn in the
    README's figure by `docs/preprocessing.py`).
    """
    small = to_working_size(image)
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
    return Prepared(digit, inverted, thumbnail(small))


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


def prepare_file(source: str | Path | BinaryIO) -> Prepared:
    """`prepare_image` for a file (a path, or an upload held in memory); when its EXIF
    orientation is doubtful, the digit as stored (unturned) comes along, for the reader to
    try both."""
    image, doubtful = load_oriented(source)
    prepared = prepare_image(image)
    if doubtful is not None:
        unturned = Image.fromarray(prepared.digit, "F").transpose(UNDO_TRANSPOSE[doubtful])
        prepared.as_stored = np.asarray(unturned, dtype=np.float32)
    return prepared
