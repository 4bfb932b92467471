"""File names as people and programs see them: printable UTF-8 that means one file.

Linux allows any bytes in a name; a CSV, a terminal and a picture cannot show them all, and
two different names must never look the same. `readable` escapes what cannot be shown, and
`name_bytes` reads a name written that way (in labels.csv) back into the file's own.
"""

from __future__ import annotations

import os
import re
import unicodedata

ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[tnr])?")
CONTROLS = {"t": b"\t", "n": b"\n", "r": b"\r", "\\": b"\\"}
BACKSLASH_RULE = r"a backslash in a name is written \\, as predictions.csv shows it"


def readable(name: str | bytes | os.PathLike) -> str:
    r"""A file name as printable UTF-8 that no other name shows as, so CSV, terminal and
    picture can show it and a row or a label means one file.

    A byte that is not UTF-8 (Linux allows any) becomes `\xe9`; an unprintable character
    `\n`, `\x1b` or, past U+007F, `\u00a0` (as `\xa0` it would read as a byte); and a
    backslash itself `\\`, or a file named `caf\xe9.png` with a real backslash would show as
    the one with the byte. `name_bytes` reads a name back.
    """
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    if text.isascii() or unicodedata.is_normalized("NFC", _valid(text)):
        return "".join(map(_escaped, text))
    # Not NFC (an "é" written as "e" and a combining accent, as macOS writes names): it would
    # look like its NFC twin, a different file; so its non-ASCII characters are escaped.
    return "".join(_escaped(c) if c.isascii() or 0xDC80 <= ord(c) <= 0xDCFF
                   else _code_point(ord(c)) for c in text)


def _valid(text: str) -> str:
    """`text` without the bytes that are not UTF-8 (for normalisation checks only)."""
    return "".join(c for c in text if not 0xDC80 <= ord(c) <= 0xDCFF)


def _code_point(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _escaped(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # how surrogateescape decodes a byte that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if code < 0x80:
        return ascii(char)[1:-1]  # \t, \n, \r, \x1b
    return _code_point(code)


def name_bytes(shown: str) -> bytes:
    """The file name that `readable` shows as `shown` (a name from labels.csv, written as
    predictions.csv shows it); ValueError for a backslash that starts none of its escapes."""
    name = bytearray()
    done = 0
    for match in ESCAPE.finditer(shown):
        escape = match.group(1)
        if escape is None:
            raise ValueError(f"a backslash at character {match.start() + 1} starts no escape")
        name += shown[done:match.start()].encode() + _unescaped(escape)
        done = match.end()
    return bytes(name + shown[done:].encode())


def _unescaped(escape: str) -> bytes:
    if escape in CONTROLS:
        return CONTROLS[escape]
    code = int(escape[1:], 16)
    if escape[0] == "x" and code >= 0x80:
        return bytes([code])
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise ValueError(f"\\{escape} is not a character")
    return chr(code).encode()

