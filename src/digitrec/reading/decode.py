"""A picture file decoded safely: the first frame, upright, never larger than it needs to be.

Everything here distrusts the file: Pillow's decompression-bomb limit is an error (not a
warning), a JPEG is decoded at reduced size, a huge picture is shrunk by a whole factor right
after decoding, and an EXIF orientation that the file's own history makes doubtful is
reported so the reader can try the picture both ways.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from digitrec.errors import DigitrecError

WORK_SIDE = 256           # longest side worked on: ample for a 20x20 digit, and fast
SOURCE_SIZE = "digitrec.source_size"  # image.info key: the file's own size, upright
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


class BlankPicture(ImageProblem):
    """A picture with no ink on it: read, and holding no digit (`not_digits`)."""


def load_image(source: str | Path | BinaryIO) -> Image.Image:
    """Open the first frame of a picture, upright, refusing decompression bombs.

    `source` is a path or a seekable binary file object (an upload held in memory).
    """
    return load_oriented(source)[0]


def load_oriented(source: str | Path | BinaryIO, side: int = WORK_SIDE
                  ) -> tuple[Image.Image, int | None]:
    """`load_image`, and the EXIF orientation it applied when that is in doubt (else None).

    An orientation tag is doubtful when the EXIF block records a picture size that is not
    this picture's: the file was edited after the camera wrote it, and editors that turn or
    crop the pixels often copy the old tag unchanged, so that applying it, as browsers do,
    turns an upright digit sideways. `side` is the longest side the picture is needed at:
    decoding and the first cheap shrink stop at no less.
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
        warnings.simplefilter("ignore")  # a damaged file's complaints: one row says it all
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
            if image.tell() != 0:  # SPIDER refuses even seek(0) unless it is a stack
                image.seek(0)
            stored = image.size
            exif = image.getexif()
            orientation = exif.get(EXIF_ORIENTATION, 1)
            doubtful = orientation in TRANSPOSE and not exif_size_matches(exif, image.size)
            if image.format == "JPEG":
                image.draft(image.mode, (side, side))  # decode at reduced size
            image.load()
            image = reduce_large(image, side)
            if orientation in TRANSPOSE:
                image = image.transpose(TRANSPOSE[orientation])
            # the size before any reduction, upright: what boxes of a reading refer to
            image.info[SOURCE_SIZE] = stored[::-1] if orientation in (5, 6, 7, 8) else stored
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageProblem(f"too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            raise ImageProblem("not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageProblem(f"corrupt or truncated image: {exc}") from None
        except Exception as exc:  # noqa: BLE001 (see below)
            # Pillow's decoders raise what they like on damaged content (fuzzing found
            # NotImplementedError for DDS, BLPFormatError, RuntimeError for AVIF,
            # TypeError for TIFF, AttributeError): all of it is this file's problem.
            raise ImageProblem(f"corrupt or unsupported image ({type(exc).__name__}: "
                               f"{str(exc)[:200]})") from None
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


def reduce_large(image: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """Shrink a picture far larger than the working size by a whole factor, cheaply."""
    factor = max(image.size) // (2 * side)
    return _resizable(image).reduce(factor) if factor >= 2 else image


def to_working_size(image: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """Area-average down, in Pillow, so the longest side is at most `side` pixels."""
    width, height = image.size
    factor = max(width, height) / side
    if factor <= 1:
        return image
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return _resizable(image).resize(size, Image.BOX)
