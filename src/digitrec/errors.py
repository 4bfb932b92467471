"""The one exception type for failures a user can fix (bad file, no network, bad params), and
how a command reports them.

Anything raised as `DigitrecError` is shown as a one-line message without a traceback;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


class DigitrecError(Exception):
    """An expected failure, reported to the user as a plain message."""


def exit_code(action: Callable[[], str | None]) -> int:
    """Run `action`; print its one-line summary, or its expected failure as `error: ...`."""
    try:
        summary = action()
    except DigitrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if summary:
        print(summary)
    return 0


def run_command(action: Callable[[], str | None]) -> NoReturn:
    """Run a command's `action` and exit the process the way a CLI does (0, 1 or 130)."""
    sys.exit(exit_code(action))
