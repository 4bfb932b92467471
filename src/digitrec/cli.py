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
    server = commands.add_parser("serve", help="a drawing page and HTTP API for the model")
    server.add_argument("--model", default=str(config.MODEL_FILE),
                        help="a trained model (default: %(default)s)")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    server.add_argument("--port", type=int, default=8000,
                        help="port (default: %(default)s; 0 picks a free one)")
    exporter = commands.add_parser("export", help="write the model for other runtimes")
    exporter.add_argument("--model", default=str(config.MODEL_FILE),
                          help="a trained model (default: %(default)s)")
    exporter.add_argument("--format", required=True, choices=["savedmodel", "onnx", "tflite"],
                          help="savedmodel: TensorFlow Serving; onnx: ONNX Runtime; "
                               "tflite: TensorFlow Lite / LiteRT")
    exporter.add_argument("--output", required=True, metavar="PATH",
                          help="where to write it (a folder for savedmodel, else a file)")
    args = parser.parse_args(argv)
    if args.command == "predict":
        sys.exit(_run(lambda: predict_command(args.paths, args.model, args.csv)))
    if args.command == "serve":
        sys.exit(_run(lambda: serve_command(args.model, args.host, args.port)))
    if args.command == "export":
        sys.exit(_run(lambda: export_command(args.model, args.format, args.output)))
    run_stage(_stage(args.command), args.params)


def predict_command(paths: Sequence[str], model: str, csv_path: str | None) -> str:
    """`digitrec predict`: one line per picture, then a summary."""
    from pathlib import Path

    from digitrec import predict

    readings = predict.predict_paths(Path(model), paths)
    for reading in readings:
        if reading.probabilities is None:
            print(f"{reading.name}: error: {reading.error}")
        else:
            print(f"{reading.name}: {reading.prediction} ({reading.confidence:.1%})")
    if csv_path:
        predict.write_csv(Path(csv_path), readings)
    predict.require_some(readings, ", ".join(paths))
    failed = sum(r.probabilities is None for r in readings)
    return f"{len(readings) - failed} of {len(readings)} pictures read ({failed} failed)"


def serve_command(model: str, host: str, port: int) -> str:
    """`digitrec serve`: runs until Ctrl-C."""
    from pathlib import Path

    from digitrec.serve import serve

    return serve(Path(model), host, port, announce=lambda line: print(line, flush=True))


def export_command(model: str, format: str, output: str) -> str:
    """`digitrec export`: write the model in another format, checked against Keras."""
    from pathlib import Path

    from digitrec.export import export

    check = export(Path(model), format, Path(output))
    return (f"wrote {output} ({format}); checked on {check.count} digits: same answers as "
            f"Keras, largest difference {check.max_difference:.1e}")


if __name__ == "__main__":
    main()
