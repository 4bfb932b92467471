"""digitrec: a reproducible pipeline that learns handwritten digits and reads your own."""

__version__ = "0.1.0"
