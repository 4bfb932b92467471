"""The `digitrec` command: the pipeline's stages, and reading pictures without DVC.

`digitrec train` (and the other stages) runs `stages/train.py` of the project in the current
folder, exactly what `dvc repro` runs; `digitrec doctor` checks the project. Expected
failures (`DigitrecError`) print one `error:` message and exit 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from digitrec import __version__
from digitrec.errors import DigitrecError, run_command
from digitrec.params import PARAMS_FILE, PredictParams, read_params
from digitrec.paths import MODEL
from digitrec.serving.export import FORMATS, default_output

DEFAULT_MODEL = MODEL
STAGES = {
    "download": "fetch and verify the four IDX files into data/raw/",
    "prepare": "split and normalise data/raw/ into data/prepared/",
    "train": "train the model named in params.yaml",
    "evaluate": "score the model into metrics/eval.json and plots",
}


def command() -> None:
    """The installed `digitrec` command: its process is its own, so it ends without the
    interpreter's teardown (1.7 s once TensorFlow is loaded)."""
    main(own_process=True)


def main(argv: Sequence[str] | None = None, own_process: bool = False) -> None:
    """Parse `argv` (default: the command line) and run the command; exits the process.
    `own_process` only from `command`: a caller that goes on after a SystemExit (a test,
    a notebook) must not have its process ended under it."""
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
    reader.add_argument("--force", action="store_true",
                        help="overwrite an existing file at --csv that is not an earlier "
                             "predictions CSV")
    reader.add_argument("--unsure-below", type=float, default=PredictParams().unsure_below,
                        metavar="P",
                        help="mark readings less confident than this unsure "
                             "(default: %(default)s)")
    server = commands.add_parser("serve", help="a drawing page and HTTP API for the model")
    server.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="a trained model (default: %(default)s)")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    server.add_argument("--port", type=int, default=8000,
                        help="port (default: %(default)s; 0 picks a free one)")
    exporter = commands.add_parser("export", help="write the model for other runtimes")
    exporter.add_argument("--model", default=str(DEFAULT_MODEL),
                          help="a trained model (default: %(default)s)")
    exporter.add_argument("--format", required=True, choices=list(FORMATS),
                          help="; ".join(f"{name}: {spec.use}" for name, spec in FORMATS.items()))
    exporter.add_argument("--output", metavar="PATH",
                          help="where to write it (a folder for savedmodel, else a file; "
                               "default: " + ", ".join(f"{str(default_output(name))} for {name}"
                                                        for name in FORMATS) + ")")
    exporter.add_argument("--force", action="store_true",
                          help="overwrite an existing file or folder at --output that is "
                               "not an earlier export of this format")
    commands.add_parser("doctor", help="check this project: params, DVC remote, model")
    args = parser.parse_args(argv)
    run_command(chosen_action(args), own_process=own_process)


def chosen_action(args: argparse.Namespace) -> Callable[[], str | None]:
    """What the parsed command line asks for, as an action for `run_command`."""
    if args.command == "doctor":
        from digitrec.doctor import doctor

        return doctor
    if args.command == "predict":
        return lambda: predict_command(args.paths, project_model(args.model), args.csv,
                                       args.unsure_below, force=args.force)
    if args.command == "serve":
        return lambda: serve_command(project_model(args.model), args.host, args.port)
    if args.command == "export":
        output = str(default_output(args.format)) if args.output is None else args.output
        return lambda: export_command(project_model(args.model), args.format, output,
                                      force=args.force)
    return lambda: run_stage_script(args.command, args.params)


def project_model(model: str) -> str:
    """The model to read; when it is the default one and the current folder is not a
    project's root, say that this is the problem (rather than that no model was trained)."""
    if model == str(DEFAULT_MODEL) and not Path(model).exists() and not Path("dvc.yaml").exists():
        raise DigitrecError(f"{model}: not found here, and {Path.cwd()} is not the project "
                            f"root (no dvc.yaml); run from the project root, or give --model")
    return model


def run_stage_script(name: str, params_file: str) -> None:
    """Become `python stages/NAME.py --params FILE`, run from the project root."""
    script = Path("stages") / f"{name}.py"
    if not script.is_file():
        raise DigitrecError(f"{script}: not found; run `digitrec {name}` from the project root")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, str(script), "--params", params_file])


def predict_command(paths: Sequence[str], model: str, csv_path: str | None,
                    unsure_below: float = PredictParams().unsure_below,
                    class_names: Sequence[str] | None = None, force: bool = False) -> str:
    """`digitrec predict`: one line per picture, warnings, the misread labelled pictures,
    then a summary with the accuracy when a folder holds labels.csv."""
    from digitrec.reading.batch import BatchOutputs, NothingReadable, predict_batch, summary_line

    names = tuple(class_names or project_class_names())
    if csv_path == "":
        raise DigitrecError("--csv: an empty file name; give the CSV file to write")
    outputs = BatchOutputs(csv=Path(csv_path) if csv_path else None, force=force)
    if hasattr(sys.stdout, "reconfigure"):  # a name no terminal encoding can show: escaped
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        batch = predict_batch(Path(model), paths, outputs, class_names=names,
                                      threshold=unsure_below, progress=True)
    except NothingReadable as exc:
        _print_readings(exc.readings)
        raise
    _print_readings(batch.readings)
    for warning in batch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    misread = batch.misread()
    if misread:
        print(f"misread ({len(misread)}):")
        for reading in misread:
            print(f"  {reading.name}: {said(reading)}, label "
                  f"{batch.labels[reading.name] or 'none'}")
    return summary_line(batch)


def project_class_names() -> tuple[str, ...]:
    """The class names of the dataset that params.yaml names, when run in a project (so a
    Fashion-MNIST model reads "Trouser", not 1); digits elsewhere."""
    from digitrec.catalog import MNIST, get_dataset

    if not PARAMS_FILE.is_file():
        return MNIST.class_names
    return get_dataset(read_params("dataset").dataset).class_names


def said(reading: Any) -> str:
    """What a reading says, in words: `read 0869`, `no digit`, `not read`."""
    if reading.read is None:
        return "not read"
    return "no digit" if reading.status == "not_digits" else f"read {reading.text}"


def _print_readings(readings: list) -> None:
    for reading in readings:
        if reading.read is None:
            print(f"{reading.name}: error: {reading.error}")
        elif reading.status == "not_digits":
            print(f"{reading.name}: not a digit")
        else:
            unsure = ", unsure" if reading.unsure else ""
            print(f"{reading.name}: {reading.text} ({reading.confidence:.1%}{unsure})")


def serve_command(model: str, host: str, port: int) -> str:
    """`digitrec serve`: runs until Ctrl-C."""
    from digitrec.serving.app import serve

    return serve(Path(model), host, port, announce=lambda line: print(line, flush=True))


def export_command(model: str, format: str, output: str, force: bool = False) -> str:
    """`digitrec export`: write the model in another format, checked against Keras."""
    from digitrec.serving.export import export

    if not output:
        raise DigitrecError("--output: an empty name; give the file or folder to write")
    check = export(Path(model), format, Path(output), force=force)
    return (f"wrote {output} ({format}); checked on {check.count} digits: same answers as "
            f"Keras, largest difference {check.max_difference:.1e}")


if __name__ == "__main__":
    command()
