"""The `digitrec` command and the wrapper every DVC stage script runs in.

Expected failures (`DigitrecError`) print one `error:` message and exit 1; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from digitrec import __version__, config
from digitrec.errors import DigitrecError


def run_stage(stage: Callable[[dict[str, Any]], str], params_file: str | None = None) -> None:
    """Run one stage with `params.yaml`, print its one-line summary, and exit like a CLI."""
    sys.exit(_run(lambda: stage(config.load_params(params_file or config.PARAMS_FILE))))


def _run(action: Callable[[], str | None]) -> int:
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


def _stages() -> dict[str, Callable[[dict[str, Any]], str]]:
    from digitrec import download, prepare

    return {"download": download.stage, "prepare": prepare.stage}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `digitrec` console script."""
    stages = _stages()
    parser = argparse.ArgumentParser(
        prog="digitrec", description="Learn handwritten digits and read your own."
    )
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, stage in stages.items():
        sub = commands.add_parser(name, help=(stage.__doc__ or "").split("\n")[0])
        sub.add_argument("--params", default=str(config.PARAMS_FILE),
                         help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    stage = stages[args.command]
    sys.exit(_run(lambda: stage(config.load_params(args.params))))


if __name__ == "__main__":
    main()
