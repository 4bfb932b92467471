"""The one exception type for failures a user can fix (bad file, no network, bad params), and
how a command reports them.

Anything raised as `DigitrecError` is shown as a one-line message without a traceback;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

# The user part of a URL (`scheme://user:password@`): up to the last `@` before the path.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#\s:@]*)"
                       r"(?P<secret>(?::[^/?#\s]*)?)@(?=[^/?#\s@]*(?:[/?#\s]|$))")


class DigitrecError(Exception):
    """An expected failure, reported to the user as a plain message."""


def redact(text: str) -> str:
    """`text` with every password in a URL shown as `***` (`http://user:***@host/`), and a
    user part with no password (often a token itself) as `***@`: a secret given in a URL
    is used, never printed."""
    def hide(match: re.Match[str]) -> str:
        if match["secret"]:
            return f"{match['scheme']}{match['user']}:***@"
        return f"{match['scheme']}***@"
    return _USERINFO.sub(hide, text)


def exit_code(action: Callable[[], str | None]) -> int:
    """Run `action`; print its one-line summary, or its expected failure as `error: ...`
    (a secret in a URL redacted, whoever built the message)."""
    try:
        summary = action()
    except DigitrecError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if summary:
        print(redact(summary))
    return 0


def run_command(action: Callable[[], str | None], own_process: bool = False) -> NoReturn:
    """Run a command's `action` and exit the process the way a CLI does (0, 1 or 130).

    When the process is the command's own (`own_process`: a stage's script run as
    `python stages/NAME.py`, see `started_as`, or the installed `digitrec` command), it
    ends without the interpreter's teardown (`exit_now`). A bug's traceback exits as usual.
    """
    code = exit_code(action)
    if own_process:
        exit_now(code)
    sys.exit(code)


def started_as(script: str) -> bool:
    """Whether this process was started to run `script` (`python script.py ARGS`), rather
    than running it in-process (a test, `runpy`), where the process must go on."""
    started = sys.orig_argv[-len(sys.argv):] if sys.argv else []
    return (started[1:] == sys.argv[1:] and bool(started)
            and Path(started[0]).resolve() == Path(script).resolve())


def exit_now(code: int) -> NoReturn:
    """End the process once the work is done and saved, skipping the interpreter's
    teardown: with TensorFlow loaded, finalising its modules and threads took 1.7-1.9 s
    that every stage's user waited for. The exit handlers run (logging's flush among them)
    and the standard streams are flushed first; while an HDF5 file is still open (h5py
    closes it in the teardown), the usual exit."""
    h5py = sys.modules.get("h5py")
    if h5py is not None and len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
