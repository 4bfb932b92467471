"""DVC stage `predict`: read every picture in predict.images with models/model.keras."""

from pathlib import Path

from digitrec import predict
from digitrec.errors import run_command
from digitrec.files import atomic_write_json
from digitrec.params import params_file_from_command_line, read_params
from digitrec.report import draw_contact_sheet

MODEL = Path("models/model.keras")
PREDICTIONS = Path("data/predictions")
METRICS = Path("metrics/predict.json")


def main(params_file: Path) -> str:
    options = read_params("predict", path=params_file).predict
    folder = Path(options.images)
    labels = predict.read_labels(folder)
    readings = predict.predict_paths(MODEL, [folder])
    predict.require_some(readings, str(folder))
    PREDICTIONS.mkdir(parents=True, exist_ok=True)
    predict.write_csv(PREDICTIONS / "predictions.csv", readings)
    draw_contact_sheet(readings, labels, PREDICTIONS / "contact_sheet.png")
    figures = predict.summary(readings, labels)
    atomic_write_json(METRICS, figures)
    line = (f"predict: {figures['predicted']} of {figures['images']} pictures read "
            f"({figures['failed']} failed)")
    if "accuracy" in figures:
        line += f", {figures['correct']}/{figures['labelled']} correct ({figures['accuracy']:.1%})"
    return line + f"; wrote {PREDICTIONS / 'predictions.csv'}"


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
