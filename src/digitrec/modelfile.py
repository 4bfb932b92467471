"""Load a trained model file, turning every way it can fail into one clear message.

(A minimal version for `serve` and `export`; the full one also checks the model's input and
output shapes.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_model(path: Path) -> Any:
    """The Keras model saved at `path`; a missing or unreadable file is a `DigitrecError`."""
    from digitrec.errors import DigitrecError

    path = Path(path)
    if not path.is_file():
        raise DigitrecError(f"{path}: no model; run `dvc repro train` first")
    from digitrec.backend import keras

    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DigitrecError(f"{path}: not a Keras model file we can load ({first_line})") from None
