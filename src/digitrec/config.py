"""Where the pipeline keeps things, and `params.yaml`, read in one place.

Paths are relative to the project root, which is the working directory DVC runs stages in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from digitrec.errors import DigitrecError

PARAMS_FILE = Path("params.yaml")
RAW_DIR = Path("data/raw")
PARTIAL_DIR = Path("data/downloads")
PREPARED_DIR = Path("data/prepared")
MODELS_DIR = Path("models")
MODEL_FILE = MODELS_DIR / "model.keras"
CHECKPOINT_DIR = MODELS_DIR / "checkpoints"
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("data/predictions")
USER_IMAGES_DIR = Path("data/user_images")


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """Read `params.yaml` into a dict, with a clear error when it is missing or malformed."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise DigitrecError(f"{path}: not found; run from the project root") from None
    except yaml.YAMLError as exc:
        raise DigitrecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise DigitrecError(f"{path}: expected a mapping of sections at the top level")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One stage's section of the params, which must exist."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise DigitrecError(f"{PARAMS_FILE}: missing section {name!r}")
    return value
