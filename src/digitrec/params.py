"""`params.yaml`, read in one place: one typed, checked section per stage.

Each section is a frozen dataclass whose defaults are the values shipped in `params.yaml` (each
`auto` as it resolves for `mnist`), so the library can be used without a params file. Reading
a file checks every key of the sections asked for (`schema.py` does it, the same way for
every section), before anything is written; `auto` is resolved first, from the dataset the
file names (`catalog.resolve_auto`).
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from digitrec.catalog import DATASETS, IMAGE_SIDE, MNIST, MODEL_RECIPES, resolve_auto
from digitrec.schema import load_file, parse_document, setting

PARAMS_FILE = Path("params.yaml")
MAX_SEED = 2**32 - 1            # what NumPy and TensorFlow take
MIRROR_SCHEMES = ("http", "https", "file")
KERNEL_FOLDERS = ("/proc", "/sys", "/dev")
_DEFAULT_RECIPE = MODEL_RECIPES[MNIST.model]  # the code's defaults: `auto` for digits


def _at_least(low: float) -> Callable[[float], bool]:
    return lambda value: value >= low


def _fraction(value: float) -> bool:
    return 0 <= value <= 1


def _between(low: float, high: float) -> Callable[[float], bool]:
    return lambda value: low <= value <= high


def _pictures_folder(value: str) -> bool:
    """Any folder but the kernel's: DVC hashes a stage's dependencies, and /proc's files
    (or a device's) have no end, so `dvc repro` would hang reading them."""
    if value == "" or "\0" in value:
        return False
    real = os.path.realpath(value)
    return not any(real == top or real.startswith(top + "/") for top in KERNEL_FOLDERS)


def _mirror(value: str) -> bool:
    """`official`, an http(s):// or file:// URL, or a folder (no other scheme, no NUL)."""
    if value == "official":
        return True
    if not value or "\0" in value:
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a malformed host or port)
    except ValueError:
        return False
    if parts.scheme in MIRROR_SCHEMES and any(c.isspace() or not c.isprintable()
                                              for c in value):
        return False  # a URL writes a space as %20; a control character is a mistake
    if parts.scheme == "file":
        return parts.netloc in ("", "localhost")  # file:///path: this machine's files only
    if parts.scheme in MIRROR_SCHEMES:
        return bool(parts.hostname)
    return "://" not in value  # a plain folder


@dataclass(frozen=True)
class DownloadParams:
    """`download`: where the archives come from and how long a mirror may take."""

    mirrors: tuple[str, ...] = setting(
        ("official",), "a list of mirrors: official, http(s):// or file:///path URLs, or "
        "folders", lambda value: len(value) > 0 and all(map(_mirror, value)))
    verify: bool = setting(True, "true or false")
    deadline: float = setting(600.0, "seconds, above 0 and at most a day",
                              lambda value: 0 < value <= 86_400, shapes_outputs=False)
    min_speed: float = setting(4096.0, "bytes per second, 0 or more (0: no stall check)",
                               _at_least(0), shapes_outputs=False)
    stall_window: float = setting(30.0, "seconds, above 0 and at most an hour",
                                  lambda value: 0 < value <= 3_600, shapes_outputs=False)


@dataclass(frozen=True)
class PrepareParams:
    """`prepare`: the validation split carved from the training set, and how many negatives
    (pictures with no digit) to draw beside each split's digits."""

    val_size: float | int = setting(
        0.1, "a fraction between 0 and 1 (exclusive), or a whole number of images (1 or more)",
        lambda value: (0 < value < 1) if isinstance(value, float) else value >= 1)
    seed: int = setting(42, f"a whole number from 0 to {MAX_SEED}", _between(0, MAX_SEED))
    negatives: float = setting(0.3, "a share of each split's digits, from 0 to 1 (0: none)",
                               _fraction)


@dataclass(frozen=True)
class Augment:
    """Random affine distortion of training images (pixels, degrees, relative scale), and
    the share of them shown as the predict stage redraws a user's digit."""

    shift: float = setting(2.0, f"pixels, from 0 to {IMAGE_SIDE // 2}",
                           _between(0, IMAGE_SIDE // 2))
    rotation: float = setting(10.0, "degrees, from 0 to 180", lambda value: 0 <= value <= 180)
    zoom: float = setting(0.1, "a relative scale from 0 to below 1", lambda value: 0 <= value < 1)
    redrawn: float = setting(0.5, "a share of the training images, from 0 to 1", _fraction)
    flip: bool = setting(False, "true or false (mirror half of the images)")


@dataclass(frozen=True)
class TrainParams:
    """`train`: the model, the recipe, and how often to checkpoint."""

    model: str = setting(MNIST.model, f"auto, or one of {', '.join(MODEL_RECIPES)}",
                         lambda value: value in MODEL_RECIPES)
    epochs: int = setting(_DEFAULT_RECIPE.epochs, "auto, or a whole number from 1 to 10000",
                          _between(1, 10_000))
    batch_size: int = setting(128, "a whole number from 1 to 65536", _between(1, 65_536))
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "one of adam, adamw, sgd")
    learning_rate: float = setting(_DEFAULT_RECIPE.learning_rate,
                                   "auto, or a positive number, at most 10",
                                   lambda value: 0 < value <= 10)
    schedule: Literal["constant", "cosine", "one_cycle"] = setting(
        "one_cycle", "one of constant, cosine, one_cycle")
    warmup: float = setting(0.2, "a fraction of training, from 0 to below 1",
                            lambda value: 0 <= value < 1)
    ema: bool = setting(False, "true or false")
    label_smoothing: float = setting(0.1, "a share from 0 to below 1",
                                     lambda value: 0 <= value < 1)
    augment: Augment | None = setting(
        Augment(), "true, false, or a mapping of shift, rotation, zoom, redrawn, flip")
    negatives: float = setting(0.2, "a share of the training examples, from 0 to 0.9 "
                               "(0: outlier exposure off)", _between(0, 0.9))
    seed: int = setting(42, f"a whole number from 0 to {MAX_SEED}", _between(0, MAX_SEED))
    checkpoint_every: int = setting(5, "a whole number of epochs, 1 or more", _at_least(1),
                                    shapes_outputs=False)
    keep_checkpoints: int = setting(3, "a whole number from 1 to 1000", _between(1, 1000),
                                    shapes_outputs=False)
    strategy: Literal["auto", "mirrored", "multi_worker"] = setting(
        "auto", "one of auto, mirrored, multi_worker")


@dataclass(frozen=True)
class PredictParams:
    """`predict`: which pictures to read, and below which confidence a reading is unsure."""

    images: str = setting("data/user_images", "a folder of pictures (not under /proc, /sys or "
                          "/dev, whose files never end)", lambda value: _pictures_folder(value))
    unsure_below: float = setting(0.5, "a confidence from 0 to 1", _fraction)


@dataclass(frozen=True)
class Params:
    """The whole file: the sections a stage asked for, checked; the others are None."""

    dataset: str | None = setting(None, f"one of {', '.join(DATASETS)}",
                                  lambda value: value in DATASETS)
    download: DownloadParams | None = setting(None, "a mapping of settings")
    prepare: PrepareParams | None = setting(None, "a mapping of settings")
    train: TrainParams | None = setting(None, "a mapping of settings", needs=("dataset",))
    predict: PredictParams | None = setting(None, "a mapping of settings")


SECTIONS: dict[str, type] = {"download": DownloadParams, "prepare": PrepareParams,
                             "train": TrainParams, "predict": PredictParams}
NAMES = tuple(f.name for f in fields(Params))


def read_params(*sections: str, path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read `path` and check the named sections (`dataset`, `download`, `prepare`, `train`,
    `predict`), so each stage checks what it uses and nothing else."""
    path = Path(path)
    hint = "; run from the project root" if path == PARAMS_FILE else ""
    return parse_document(Params, resolve_auto(load_file(path, hint)), sections, path)


def parse_train(train: Any, dataset: str, path: str | os.PathLike = PARAMS_FILE) -> TrainParams:
    """A raw train section, checked, as it trains `dataset` (each `auto` resolved for it):
    for programs, such as the benchmarks, that train without a params file of their own."""
    raw = resolve_auto({"dataset": dataset, "train": train})
    return parse_document(Params, raw, ("train",), path).train


def params_file_from_command_line(description: str | None = None) -> Path:
    """The `--params FILE` a stage script was given (default `params.yaml`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE,
                        help="params file (default: %(default)s)")
    return parser.parse_args().params
