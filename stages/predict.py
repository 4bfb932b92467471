"""DVC stage `predict`: read every picture in predict.images with models/model.keras."""

import sys
from pathlib import Path

from digitrec import predict
from digitrec.datasets import get_dataset
from digitrec.errors import run_command
from digitrec.params import params_file_from_command_line, read_params

MODEL = Path("models/model.keras")
OUTPUTS = predict.Outputs(csv=Path("data/predictions/predictions.csv"),
                          contact_sheet=Path("data/predictions/contact_sheet.png"),
                          metrics=Path("metrics/predict.json"))


SHOWN_ERRORS = 20  # when nothing could be read, why, for this many pictures


def main(params_file: Path) -> str:
    params = read_params("dataset", "predict", path=params_file)
    try:
        batch = predict.predict_batch(MODEL, [Path(params.predict.images)], OUTPUTS,
                                      class_names=get_dataset(params.dataset).class_names,
                                      threshold=params.predict.unsure_below, progress=True)
    except predict.NothingReadable as exc:
        for reading in exc.readings[:SHOWN_ERRORS]:
            print(f"{reading.name}: {reading.error}", file=sys.stderr)
        raise
    for warning in batch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return f"predict: {predict.summary_line(batch)}; wrote {OUTPUTS.csv}"


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
