"""The one exception type for failures a user can fix (bad file, no network, bad params), and
how a command reports them.

Anything raised as `DigitrecError` is shown as a one-line message without a traceback;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
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


def run_command(action: Callable[[], str | None]) -> NoReturn:
    """Run a command's `action` and exit the process the way a CLI does (0, 1 or 130)."""
    sys.exit(exit_code(action))
