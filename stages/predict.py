"""DVC stage `predict`: read every picture in predict.images with models/model.keras."""

import sys
from pathlib import Path

from digitrec.catalog import get_dataset
from digitrec.errors import run_command, started_as
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import MODEL, PREDICT_METRICS, PREDICTIONS
from digitrec.reading.batch import BatchOutputs, NothingReadable, predict_batch, summary_line

OUTPUTS = BatchOutputs(csv=PREDICTIONS / "predictions.csv",
                       contact_sheet=PREDICTIONS / "contact_sheet.png", metrics=PREDICT_METRICS,
                       readings=PREDICTIONS / "readings.json", forced_by="")
SHOWN_ERRORS = 20  # when nothing could be read, why, for this many pictures


def main(params_file: Path) -> str:
    params = read_params("dataset", "predict", path=params_file)
    try:
        batch = predict_batch(MODEL, [Path(params.predict.images)], OUTPUTS,
                              class_names=get_dataset(params.dataset).class_names,
                              threshold=params.predict.unsure_below, progress=True)
    except NothingReadable as exc:
        for reading in exc.readings[:SHOWN_ERRORS]:
            print(f"{reading.name}: {reading.error}", file=sys.stderr)
        raise
    for warning in batch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return f"predict: {summary_line(batch)}; wrote {OUTPUTS.csv}"


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)),
                own_process=started_as(__file__))
