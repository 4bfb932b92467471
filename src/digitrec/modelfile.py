"""The one place that saves and loads model files, so every reader checks them the same way.

A model file comes from outside as much as a picture does: a text file under the right name,
a download cut short, a flipped bit, a model for another input, or one whose last layer gives
raw scores instead of probabilities. Keras answers those with tracebacks (and says "File not
found" for a file that exists) or, worse, with numbers that look fine. `load_model` checks
the file before anything else is done with it and says in one line what is wrong.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.catalog import IMAGE_SHAPE, NUM_CLASSES
from digitrec.errors import DigitrecError
from digitrec.files import atomic_path
from digitrec.outputs import Kind, starts_with

KERAS_MODEL = Kind("a Keras model", starts_with(b"PK\x03\x04"))  # a .keras file is a zip
MAX_UNPACKED_BYTES = 2 << 30    # a .keras archive that unpacks larger is refused (zip bomb)
MAX_MEMBERS = 10_000
PROBE_BATCH = 4
SUM_TOLERANCE = 1e-3            # probabilities in float32 sum to 1 within this


def save_model(model: Any, path: Path) -> None:
    """`model.save`, atomically (Keras wants the temporary name to end in .keras)."""
    with atomic_path(path, 4 * model.count_params(), at_least=True) as tmp:
        staging = tmp.with_suffix(".keras")
        try:
            model.save(staging)
            staging.replace(tmp)
        finally:
            staging.unlink(missing_ok=True)


def load_model(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> Any:
    """A Keras model from a `.keras` file, checked to read (None, 28, 28, 1) digits into
    `num_classes` probabilities; any other file raises one `DigitrecError` naming it."""
    path = Path(path)
    check_file(path)
    check_archive(path)
    model = _keras_load(path)
    check_shapes(model, path, num_classes)
    check_probabilities(model, path, num_classes)
    return model


def check_file(path: Path) -> None:
    """The path names a regular file (never opened otherwise: a FIFO would hang)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise DigitrecError(f"{path}: broken symbolic link, no model there") from None
        raise DigitrecError(f"{path}: no model file; train one first (`dvc repro train`)"
                            ) from None
    except OSError as exc:
        raise DigitrecError(f"{path}: cannot read the model file: {exc.strerror or exc}"
                            ) from None
    if not stat.S_ISREG(mode):
        raise DigitrecError(f"{path}: not a regular file, so not a Keras model")
    if path.suffix != ".keras":
        raise DigitrecError(f"{path}: not a Keras model file (the name must end in .keras)")


def check_archive(path: Path) -> None:
    """A `.keras` file is a zip archive; test every member's checksum before Keras (and the
    HDF5 library under it) reads any of it, and refuse archives that unpack too large."""
    problem = f"{path}: not a readable Keras model"
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise DigitrecError(f"{problem} (a zip archive of {len(members)} files)")
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise DigitrecError(f"{problem} (it would unpack to more than "
                                    f"{MAX_UNPACKED_BYTES >> 30} GB)")
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        raise DigitrecError(f"{problem} (not a zip archive, or truncated)") from None
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.LargeZipFile) as exc:
        raise DigitrecError(f"{problem} (damaged archive: {exc})") from None
    if damaged is not None:
        raise DigitrecError(f"{problem} (damaged: {damaged} fails its checksum)")


def _keras_load(path: Path) -> Any:
    """Keras' own loader in safe mode (no code from the file runs); its refusals are
    reworded, because they name the wrong cause ("File not found") or none at all."""
    from digitrec.backend import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises anything from a bad archive
        reason = _first_line(exc)
        detail = "" if "file not found" in reason.lower() or not reason else f": {reason}"
        raise DigitrecError(f"{path}: not a readable Keras model "
                            f"({type(exc).__name__}{detail})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else ""


def check_shapes(model: Any, path: Path, num_classes: int) -> None:
    """One input of (None, 28, 28, 1) grey digits, one output of `num_classes` values."""
    expected_in = (None, *IMAGE_SHAPE)
    inputs, outputs = _shapes(model, "inputs"), _shapes(model, "outputs")
    if inputs is None or outputs is None:
        raise DigitrecError(f"{path}: the model does not declare its input and output shapes")
    if len(inputs) != 1 or inputs[0] != expected_in:
        raise DigitrecError(f"{path}: the model takes input {_listed(inputs)}, not "
                            f"{expected_in} (28x28 grey digits)")
    if len(outputs) != 1 or outputs[0] != (None, num_classes):
        raise DigitrecError(f"{path}: the model gives output {_listed(outputs)}, not "
                            f"{(None, num_classes)} (one probability per class)")


def _shapes(model: Any, which: str) -> list[tuple] | None:
    try:
        tensors = getattr(model, which)
    except (AttributeError, ValueError):
        return None
    if not tensors:
        return None
    return [tuple(None if d is None else int(d) for d in t.shape) for t in tensors]


def _listed(shapes: list[tuple]) -> str:
    return str(shapes[0]) if len(shapes) == 1 else " and ".join(map(str, shapes))


def check_probabilities(model: Any, path: Path, num_classes: int) -> None:
    """Probe a small batch: every row must be finite, within [0, 1] and sum to 1. A model
    whose last layer gives raw scores (no softmax) fails here instead of printing "79.8%"."""
    rng = np.random.default_rng(0)
    shape = IMAGE_SHAPE
    probe = np.concatenate([np.zeros((1, *shape)), np.ones((1, *shape)),
                            rng.random((PROBE_BATCH - 2, *shape))]).astype(np.float32)
    try:
        output = np.asarray(model.predict_on_batch(probe), dtype=np.float64)
    except Exception as exc:  # a broken model may fail in any layer
        raise DigitrecError(f"{path}: the model fails on a test batch ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    if output.shape != (PROBE_BATCH, num_classes):
        raise DigitrecError(f"{path}: the model gives output of shape {output.shape[1:]} "
                            f"for a batch, not ({num_classes},)")
    if not np.isfinite(output).all():
        raise DigitrecError(f"{path}: the model's outputs are not finite (NaN or infinite "
                            "weights: a diverged or damaged model)")
    in_range = output.min() >= -1e-6 and output.max() <= 1 + 1e-6
    if not in_range or np.abs(output.sum(axis=1) - 1).max() > SUM_TOLERANCE:
        raise DigitrecError(f"{path}: the model's outputs are not probabilities (finite, "
                            f"0 to 1, summing to 1); its last layer needs a softmax")
