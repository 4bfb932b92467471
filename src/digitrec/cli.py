"""The `digitrec` command and the wrapper every DVC stage script runs in.

Expected failures (`DigitrecError`) print one `error:` message and exit 1; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
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


# Stage name -> (module, help). Modules are imported only when run: TensorFlow is slow to load.
STAGES = {
    "download": ("digitrec.download", "fetch and verify the four IDX files into data/raw/"),
    "prepare": ("digitrec.prepare", "split and normalise data/raw/ into data/prepared/"),
    "train": ("digitrec.train", "train the model named in params.yaml"),
    "evaluate": ("digitrec.evaluate", "score the model into metrics/eval.json and plots"),
}


def _stage(name: str) -> Callable[[dict[str, Any]], str]:
    return importlib.import_module(STAGES[name][0]).stage


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `digitrec` console script."""
    parser = argparse.ArgumentParser(
        prog="digitrec", description="Learn handwritten digits and read your own."
    )
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in STAGES.items():
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--params", default=str(config.PARAMS_FILE),
                         help="params file (default: %(default)s)")
    reader = commands.add_parser("predict", help="read pictures of digits: files or folders")
    reader.add_argument("paths", nargs="+", metavar="PATH", help="pictures or folders of them")
    reader.add_argument("--model", default=str(config.MODEL_FILE),
                        help="a trained model (default: %(default)s)")
    reader.add_argument("--csv", metavar="OUT.csv", help="also write the predictions as CSV")
    reader.add_argument("--unsure-below", type=float, default=0.5, metavar="P",
                        help="mark readings less confident than this unsure "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        sys.exit(_run(lambda: predict_command(args.paths, args.model, args.csv,
                                                  args.unsure_below)))
    run_stage(_stage(args.command), args.params)


def predict_command(paths: Sequence[str], model: str, csv_path: str | None,
                    unsure_below: float = 0.5, class_names: Sequence[str] | None = None) -> str:
    """`digitrec predict`: one line per picture, warnings, the misread labelled pictures,
    then a summary with the accuracy when a folder holds labels.csv."""
    from pathlib import Path

    from digitrec import predict

    names = tuple(class_names or predict.DIGITS)
    outputs = predict.Outputs(csv=Path(csv_path) if csv_path else None)
    if hasattr(sys.stdout, "reconfigure"):  # a name no terminal encoding can show: escaped
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        batch = predict.predict_batch(Path(model), paths, outputs, class_names=names,
                                      threshold=unsure_below, progress=True)
    except predict.NothingReadable as exc:
        _print_readings(exc.readings, names)
        raise
    _print_readings(batch.readings, names)
    for warning in batch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    misread = batch.misread()
    if misread:
        print(f"misread ({len(misread)}):")
        for reading in misread:
            got = (f"read {names[reading.prediction]}" if reading.probabilities is not None
                   else "not read")
            print(f"  {reading.name}: {got}, label {names[batch.labels[reading.name]]}")
    return predict.summary_line(batch)


def _print_readings(readings: list, names: Sequence[str]) -> None:
    for reading in readings:
        if reading.probabilities is None:
            print(f"{reading.name}: error: {reading.error}")
        else:
            unsure = ", unsure" if reading.unsure else ""
            print(f"{reading.name}: {names[reading.prediction]} "
                  f"({reading.confidence:.1%}{unsure})")


if __name__ == "__main__":
    main()
