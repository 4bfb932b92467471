"""DVC stage `evaluate`: score models/model.keras on the test and val splits."""

from pathlib import Path

from digitrec.datasets import get_dataset
from digitrec.errors import run_command
from digitrec.evaluate import evaluate
from digitrec.params import params_file_from_command_line, read_params

MODEL = Path("models/model.keras")
PREPARED = Path("data/prepared")
METRICS = Path("metrics/eval.json")
PLOTS = Path("metrics/eval")


def main(params_file: Path) -> str:
    dataset = get_dataset(read_params("dataset", path=params_file).dataset)
    metrics = evaluate(MODEL, PREPARED, METRICS, PLOTS, dataset.class_names)
    return (f"evaluate: test accuracy {metrics['accuracy']:.4f} ({metrics['error_count']} "
            f"errors), macro-F1 {metrics['macro_f1']:.4f}, val accuracy "
            f"{metrics['val']['accuracy']:.4f}; wrote {METRICS}")


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
