"""The engine that reads a params file into checked dataclasses, the same way for every section.

A section is a frozen dataclass whose fields are `setting`s: a default, what the value may be
(said in errors), and a check. Reading refuses a wrong type, a value out of range, an unknown
or a missing key with one `DigitrecError` naming the key and what it may be. A field whose
type is itself a section (optionally None) is a nested section: `true` is its defaults,
`false` is None (off), and a mapping names only what it changes. The file is parsed exactly
as DVC parses it (ruamel.yaml, YAML 1.2, duplicate keys refused), so a stage never runs on a
value that `dvc params diff` shows differently.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from digitrec.errors import DigitrecError, redact

MAX_FILE_BYTES = 1 << 20        # a params file is a few hundred bytes; refuse anything huge
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 60
_WRONG = object()


def setting(default: Any, allowed: str, check: Callable[[Any], bool] = lambda _: True, *,
            shapes_outputs: bool = True, needs: tuple[str, ...] = ()) -> Any:
    """A field of a params section: its default, what it may be (said in errors), a check.

    `shapes_outputs=False` marks a setting that changes how a stage runs but never what it
    writes (a time bound, how often to checkpoint). dvc.yaml does not track those, so that
    changing one reruns nothing (tests/test_stage_deps.py holds dvc.yaml to this). `needs`
    names other top-level settings that this one's `auto` values resolve from: they are
    checked whenever it is.
    """
    return field(default=default, metadata={"allowed": allowed, "check": check,
                                            "shapes_outputs": shapes_outputs, "needs": needs})


def quote(value: Any) -> str:
    """A value as an error message shows it: its repr, cut short, a password in a URL
    redacted first (so no cut can leave part of it)."""
    return _QUOTE.repr(_redacted(value))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return (tuple if isinstance(value, tuple) else list)(map(_redacted, value))
    if isinstance(value, dict):
        return {_redacted(key): _redacted(item) for key, item in value.items()}
    return value


def load_file(path: Path, hint: str = "") -> dict[str, Any]:
    """The params file as a mapping, with a clear error when it is missing or malformed.

    Only a regular file of at most MAX_FILE_BYTES is read (a FIFO would hang the stage).
    `hint` is added to the message when the file does not exist.
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


def parse_document(cls: type, raw: Mapping[str, Any], names: tuple[str, ...],
                   path: str | os.PathLike) -> Any:
    """The top-level dataclass `cls` with the fields `names` (and those they need) read from
    `raw` and checked; the others are left at their defaults.

    Every key of `raw` must be one of `cls`'s fields; each asked for must be present.
    """
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(map(str, raw)) - set(known))
    if unknown:
        raise DigitrecError(f"{path}: unknown section {unknown[0]!r}; params.yaml has "
                            f"{', '.join(known)}")
    wanted = [need for name in names for need in known[name].metadata["needs"]] + list(names)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name in dict.fromkeys(wanted):
        if name not in raw:
            raise DigitrecError(f"{path}: missing section {name!r}")
        section = _section_class(hints[name])
        if section is None:
            values[name] = _value(raw[name], hints[name], known[name], name, path)
        else:
            values[name] = parse_section(section, raw[name], name, path)
    return cls(**values)


def _section_class(hint: Any) -> type | None:
    """The dataclass a field of type `Section | None` holds, else None."""
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    return options[0] if len(options) == 1 and is_dataclass(options[0]) else None


def parse_section(cls: type, raw: Any, key: str, path: str | os.PathLike = "params.yaml",
                  partial: bool = False) -> Any:
    """Build the dataclass `cls` from the mapping `raw`: every key known, each of the right
    type and in range, and none missing unless `partial` (a nested section, which names only
    what it changes)."""
    if not isinstance(raw, dict):
        raise DigitrecError(f"{path}: {key}: expected a mapping of settings, got {quote(raw)}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(map(str, raw)) - set(known))
    if unknown:
        raise DigitrecError(f"{path}: unknown setting {key}.{unknown[0]}; "
                            f"{key} takes {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in known.items():
        if name in raw:
            values[name] = _value(raw[name], hints[name], spec, f"{key}.{name}", path)
        elif not partial or spec.default is MISSING:
            raise DigitrecError(f"{path}: missing setting {key}.{name} "
                                f"({spec.metadata['allowed']})")
    return cls(**values)


def _value(value: Any, hint: Any, spec: Any, key: str, path: str | os.PathLike) -> Any:
    converted = _convert(value, hint, key, path)
    if converted is _WRONG or (converted is not None and not is_dataclass(converted)
                               and not spec.metadata["check"](converted)):
        raise DigitrecError(f"{path}: {key}: expected {spec.metadata['allowed']}, "
                            f"got {quote(value)}")
    return converted


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
    if is_dataclass(hint):
        return _nested(value, hint, key, path)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if value is False and len(options) < len(typing.get_args(hint)):
            return None  # an optional nested section switched off
        for option in sorted(options, key=lambda option: option is not int):
            converted = _convert(value, option, key, path)
            if converted is not _WRONG:
                return converted
        return _WRONG
    raise TypeError(f"schema.py cannot read settings of type {hint}")  # a bug, not input


def _nested(value: Any, cls: type, key: str, path: str | os.PathLike) -> Any:
    """A nested section: `true` is its defaults; a mapping names only what it changes."""
    if value is True:
        return cls()
    if isinstance(value, dict):
        return parse_section(cls, value, key, path, partial=True)
    return _WRONG
