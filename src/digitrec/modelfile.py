"""Model files: saved atomically, loaded with a clear error."""

from __future__ import annotations

from pathlib import Path

from digitrec.backend import keras
from digitrec.errors import DigitrecError
from digitrec.files import atomic_path


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, atomically (Keras wants the temporary name to end in .keras)."""
    with atomic_path(path) as tmp:
        staging = tmp.with_suffix(".keras")
        try:
            model.save(staging)
            staging.replace(tmp)
        finally:
            staging.unlink(missing_ok=True)


def load_model(path: Path) -> keras.Model:
    """Load a model file, or say plainly why it cannot be used."""
    if not Path(path).is_file():
        raise DigitrecError(f"{path}: no model; run `dvc repro train` first")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise DigitrecError(f"{path}: not a readable Keras model ({exc})") from None
