"""`params.yaml`, read in one place: one typed, checked section per stage.

Each section is a frozen dataclass whose defaults are the values shipped in `params.yaml`, so
the library can be used without a params file. Reading a file checks every key of the
sections asked for: a wrong type, a value out of range, an unknown or a missing key is one
`DigitrecError` naming the key and what it may be, before anything is written. The file is
parsed exactly as DVC parses it (ruamel.yaml, YAML 1.2, duplicate keys refused), so a stage
never trains on a value that `dvc params diff` shows differently.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
import types
import typing
import urllib.parse
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from digitrec.datasets import DATASETS, IMAGE_SIDE, MNIST, Dataset
from digitrec.errors import DigitrecError

PARAMS_FILE = Path("params.yaml")
# What `train.epochs: auto` and `train.learning_rate: auto` stand for, by registry model
# (models.py; a test checks both list the same models): ours as measured in the README's
# benchmarks, the tutorial models as their tutorials train them.
MODEL_RECIPES: dict[str, dict[str, int | float]] = {
    "digitnet": {"epochs": 7, "learning_rate": 0.03},
    "digitnet_wide": {"epochs": 20, "learning_rate": 0.03},
    "fashionnet": {"epochs": 12, "learning_rate": 0.01},
    "mlp": {"epochs": 10, "learning_rate": 1e-3},
    "cnn3": {"epochs": 5, "learning_rate": 1e-3},
    "cnn2_dense800": {"epochs": 10, "learning_rate": 1e-3},
    "lenet5": {"epochs": 10, "learning_rate": 1e-3},
    "cnn5x5_dropout": {"epochs": 10, "learning_rate": 1e-4},
}
_DEFAULT_RECIPE = MODEL_RECIPES[MNIST.model]  # the code's defaults: `auto` for digits
MAX_FILE_BYTES = 1 << 20        # a params file is a few hundred bytes; refuse anything huge
MAX_SEED = 2**32 - 1            # what NumPy and TensorFlow take
MIRROR_SCHEMES = ("http", "https", "file")
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 60


def setting(default: Any, allowed: str, check: Callable[[Any], bool] = lambda _: True, *,
            shapes_outputs: bool = True) -> Any:
    """A field of a params section: its default, what it may be (said in errors), a check.

    `shapes_outputs=False` marks a setting that changes how a stage runs but never what it
    writes (a time bound, how often to checkpoint). dvc.yaml does not track those, so that
    changing one reruns nothing (tests/test_stage_deps.py holds dvc.yaml to this).
    """
    return field(default=default, metadata={"allowed": allowed, "check": check,
                                            "shapes_outputs": shapes_outputs})


def _at_least(low: float) -> Callable[[float], bool]:
    return lambda value: value >= low


def _fraction(value: float) -> bool:
    return 0 <= value <= 1


def _between(low: float, high: float) -> Callable[[float], bool]:
    return lambda value: low <= value <= high


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
    if parts.scheme == "file":
        return parts.netloc in ("", "localhost")  # file:///path: this machine's files only
    if parts.scheme in MIRROR_SCHEMES:
        return bool(parts.netloc)
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
    """`prepare`: the validation split carved from the training set."""

    val_size: float | int = setting(
        0.1, "a fraction between 0 and 1 (exclusive), or a whole number of images (1 or more)",
        lambda value: (0 < value < 1) if isinstance(value, float) else value >= 1)
    seed: int = setting(42, f"a whole number from 0 to {MAX_SEED}", _between(0, MAX_SEED))


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

    model: str = setting(MNIST.model, "auto, or a model name from the registry (see README)")
    epochs: int = setting(_DEFAULT_RECIPE["epochs"], "auto, or a whole number from 1 to 10000",
                          _between(1, 10_000))
    batch_size: int = setting(128, "a whole number from 1 to 65536", _between(1, 65_536))
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "one of adam, adamw, sgd")
    learning_rate: float = setting(_DEFAULT_RECIPE["learning_rate"],
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

    images: str = setting("data/user_images", "a folder of pictures", lambda value: value != "")
    unsure_below: float = setting(0.5, "a confidence from 0 to 1", _fraction)


SECTIONS: dict[str, type] = {"download": DownloadParams, "prepare": PrepareParams,
                             "train": TrainParams, "predict": PredictParams}


@dataclass(frozen=True)
class Params:
    """The sections a stage asked for, checked; the others are None."""

    dataset: str | None = None
    download: DownloadParams | None = None
    prepare: PrepareParams | None = None
    train: TrainParams | None = None
    predict: PredictParams | None = None


def read_params(*sections: str, path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read `path` and check the named sections (`dataset`, `download`, `prepare`, `train`,
    `predict`), so each stage checks what it uses and nothing else."""
    raw = load_file(Path(path))
    unknown = sorted(set(map(str, raw)) - {"dataset", *SECTIONS})
    if unknown:
        raise DigitrecError(f"{path}: unknown section {unknown[0]!r}; params.yaml has "
                            f"dataset, {', '.join(SECTIONS)}")
    checked: dict[str, Any] = {}
    for name in sections:
        if name not in raw:
            raise DigitrecError(f"{path}: missing section {name!r}")
        if name == "dataset":
            checked[name] = _choice(raw[name], tuple(DATASETS), "dataset", path)
        elif name == "train":
            dataset = _choice(raw.get("dataset"), tuple(DATASETS), "dataset", path)
            checked[name] = parse_train(raw[name], DATASETS[dataset], path)
        else:
            checked[name] = parse_section(SECTIONS[name], raw[name], name, path)
    return Params(**checked)


def parse_train(train: Any, dataset: Dataset, path: str | os.PathLike = PARAMS_FILE
                ) -> TrainParams:
    """A raw train section, checked, as it trains `dataset` (`in_dataset_style`)."""
    return parse_section(TrainParams, in_dataset_style(train, dataset), "train", path)


def in_dataset_style(train: Any, dataset: Dataset) -> Any:
    """The train section with `model: auto` as the dataset's own model, `epochs: auto` and
    `learning_rate: auto` as that model's own (`MODEL_RECIPES`), and `augment: true`, and
    what an augment mapping leaves out, in the dataset's own style (`datasets.Dataset`), so
    that `dataset: NAME` alone trains well."""
    if not isinstance(train, dict):
        return train
    if train.get("model") == "auto":
        train = {**train, "model": dataset.model}
    autos = [key for key in ("epochs", "learning_rate") if train.get(key) == "auto"]
    if autos:
        recipe = MODEL_RECIPES.get(str(train.get("model")))
        if recipe is None:
            raise DigitrecError(f"train.model {train.get('model')!r} is not one of auto, "
                                f"{', '.join(MODEL_RECIPES)}")
        train = {**train, **{key: recipe[key] for key in autos}}
    augment = train.get("augment")
    if augment is True:
        return {**train, "augment": dict(dataset.augment)}
    if isinstance(augment, dict):
        return {**train, "augment": {**dataset.augment, **augment}}
    return train


def load_file(path: Path) -> dict[str, Any]:
    """The params file as a mapping, with a clear error when it is missing or malformed.

    Only a regular file of at most MAX_FILE_BYTES is read (a FIFO would hang the stage).
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise DigitrecError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise DigitrecError(f"{path}: {info.st_size} bytes, more than a params file "
                                f"may hold ({MAX_FILE_BYTES})")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        hint = "; run from the project root" if path == PARAMS_FILE else ""
        raise DigitrecError(f"{path}: not found{hint}") from None
    except OSError as exc:
        raise DigitrecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DigitrecError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    try:
        params = YAML(typ="safe").load(text)  # as DVC reads it
    except YAMLError as exc:
        raise DigitrecError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:300]}"
                            ) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 10000 deep
        raise DigitrecError(f"{path}: not a params file this project can read: "
                            f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(params, dict):
        raise DigitrecError(f"{path}: expected a mapping of sections at the top level")
    return params


def parse_section(cls: type, raw: Any, key: str, path: str | os.PathLike = PARAMS_FILE) -> Any:
    """Build the dataclass `cls` from the mapping `raw`: every key known, none missing, each
    of the right type and in range."""
    if not isinstance(raw, dict):
        raise DigitrecError(f"{path}: {key}: expected a mapping of settings, "
                            f"got {_QUOTE.repr(raw)}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(map(str, raw)) - set(known))
    if unknown:
        raise DigitrecError(f"{path}: unknown setting {key}.{unknown[0]}; "
                            f"{key} takes {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in known.items():
        if name not in raw:
            if spec.default is MISSING or cls is not Augment:
                raise DigitrecError(f"{path}: missing setting {key}.{name} "
                                    f"({spec.metadata['allowed']})")
            continue  # an augment mapping may name only what it changes
        values[name] = _value(raw[name], hints[name], spec, f"{key}.{name}", path)
    return cls(**values)


def _value(value: Any, hint: Any, spec: Any, key: str, path: str | os.PathLike) -> Any:
    allowed = spec.metadata["allowed"]
    converted = _convert(value, hint, key, path)
    if converted is _WRONG or (converted is not None and not _passes(spec, converted)):
        raise DigitrecError(f"{path}: {key}: expected {allowed}, got {_QUOTE.repr(value)}")
    return converted


def _passes(spec: Any, value: Any) -> bool:
    return is_dataclass(value) or bool(spec.metadata["check"](value))


_WRONG = object()


def _convert(value: Any, hint: Any, key: str, path: str | os.PathLike) -> Any:
    """`value` as the type `hint` says, or _WRONG. Booleans are never numbers, numbers are
    finite, and whole numbers are not written as 3.0."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
    if hint is float:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if is_number and math.isfinite(value) else _WRONG
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    if origin is Literal:
        return value if isinstance(value, str) and value in typing.get_args(hint) else _WRONG
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return _WRONG
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if options == [Augment]:
            return _augment(value, key, path)
        for option in sorted(options, key=lambda option: option is not int):
            converted = _convert(value, option, key, path)
            if converted is not _WRONG:
                return converted
        return _WRONG
    raise TypeError(f"params.py cannot read settings of type {hint}")  # a bug, not input


def _augment(value: Any, key: str, path: str | os.PathLike) -> Augment | None | object:
    if value is True:
        return Augment()
    if value is False:
        return None
    if isinstance(value, dict):
        return parse_section(Augment, value, key, path)
    return _WRONG


def _choice(value: Any, choices: tuple[str, ...], key: str, path: str | os.PathLike) -> str:
    if not isinstance(value, str) or value not in choices:
        raise DigitrecError(f"{path}: {key}: expected one of {', '.join(choices)}, "
                            f"got {_QUOTE.repr(value)}")
    return value


def params_file_from_command_line(description: str | None = None) -> Path:
    """The `--params FILE` a stage script was given (default `params.yaml`)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE,
                        help="params file (default: %(default)s)")
    return parser.parse_args().params
