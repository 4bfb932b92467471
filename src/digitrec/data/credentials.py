"""The credentials a mirror needs, given the way HTTP clients take them, and never shown.

A mirror URL may carry HTTP Basic credentials, `https://user:password@host/path/`, where
`${NAME}` stands for the environment variable NAME: params.yaml is recorded by DVC in
dvc.lock (so in git), and a secret belongs in the environment or in `.netrc` (`$NETRC`,
else `~/.netrc`), which is read for a mirror URL without a user part. They are sent as an
`Authorization` header to that host only; every message shows the URL through
`errors.redact` (`user:***@`).
"""

from __future__ import annotations

import base64
import netrc
import os
import re
import urllib.parse
from pathlib import Path

from digitrec.errors import DigitrecError


class CredentialsError(Exception):
    """A mirror's credentials are missing (an unset variable): that mirror cannot be used."""


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def credentials(url: str) -> tuple[str, str | None]:
    """The URL to ask (without its user part) and the HTTP Basic `Authorization` value.

    From the URL's `user:password@`, where `${NAME}` stands for the environment variable
    NAME (so params.yaml, which DVC records in dvc.lock, need not hold the secret); else
    from the `.netrc` entry for the host (`$NETRC`, or `~/.netrc`), the standard place for
    an HTTP client's passwords. None when there is neither.
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        user, password = (urllib.parse.unquote(_expand(text)) for text in (user, password))
        return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), _basic(user, password)
    entry = _netrc_entry(parts.hostname or "")
    return url, None if entry is None else _basic(*entry)


def _expand(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in os.environ:
            raise CredentialsError(f"${{{name}}} is not set in the environment (it holds this "
                              f"mirror's password)")
        return os.environ[name]
    return ENV_REFERENCE.sub(value, text)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _netrc_entry(host: str) -> tuple[str, str] | None:
    """(login, password) for `host` from `$NETRC` or `~/.netrc`; a file that cannot be read
    or parsed is an error naming it, never showing its content."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not host or not path.is_file():
        return None
    try:
        found = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as exc:
        # Not exc.msg: it quotes the token it stumbled on, which may be part of a password.
        raise DigitrecError(f"{path}: not a valid .netrc file (line {exc.lineno}); each "
                            f"entry is `machine HOST login USER password SECRET`") from None
    except OSError as exc:
        raise DigitrecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if found is None:
        return None
    login, _, password = found
    return login or "", password or ""
