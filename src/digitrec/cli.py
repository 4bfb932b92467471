"""The `digitrec` command: the pipeline's stages, and reading pictures without DVC.

`digitrec train` (and the other stages) runs `stages/train.py` of the project in the current
folder, exactly what `dvc repro` runs. Expected failures (`DigitrecError`) print one
`error:` message and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from digitrec import __version__
from digitrec.errors import DigitrecError, run_command
from digitrec.params import PredictParams

DEFAULT_MODEL = Path("models/model.keras")
STAGES = {
    "download": "fetch and verify the four IDX files into data/raw/",
    "prepare": "split and normalise data/raw/ into data/prepared/",
    "train": "train the model named in params.yaml",
    "evaluate": "score the model into metrics/eval.json and plots",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `digitrec` console script."""
    parser = argparse.ArgumentParser(
        prog="digitrec", description="Learn handwritten digits and read your own."
    )
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in STAGES.items():
        sub = commands.add_parser(name, help=f"{help_text} (runs stages/{name}.py)")
        sub.add_argument("--params", default="params.yaml",
                         help="params file (default: %(default)s)")
    reader = commands.add_parser("predict", help="read pictures of digits: files or folders")
    reader.add_argument("paths", nargs="+", metavar="PATH", help="pictures or folders of them")
    reader.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="a trained model (default: %(default)s)")
    reader.add_argument("--csv", metavar="OUT.csv", help="also write the predictions as CSV")
    reader.add_argument("--unsure-below", type=float, default=PredictParams().unsure_below,
                        metavar="P",
                        help="mark readings less confident than this unsure "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        run_command(lambda: predict_command(args.paths, args.model, args.csv,
                                            args.unsure_below))
    run_command(lambda: run_stage_script(args.command, args.params))


def run_stage_script(name: str, params_file: str) -> None:
    """Become `python stages/NAME.py --params FILE`, run from the project root."""
    script = Path("stages") / f"{name}.py"
    if not script.is_file():
        raise DigitrecError(f"{script}: not found; run `digitrec {name}` from the project root")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, str(script), "--params", params_file])


def predict_command(paths: Sequence[str], model: str, csv_path: str | None,
                    unsure_below: float = PredictParams().unsure_below,
                    class_names: Sequence[str] | None = None) -> str:
    """`digitrec predict`: one line per picture, warnings, the misread labelled pictures,
    then a summary with the accuracy when a folder holds labels.csv."""
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
