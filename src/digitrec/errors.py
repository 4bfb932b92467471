"""The one exception type for failures a user can fix (bad file, no network, bad params).

Anything raised as `DigitrecError` is shown as a one-line message without a traceback;
every other exception is a bug and keeps its traceback.
"""


class DigitrecError(Exception):
    """An expected failure, reported to the user as a plain message."""
