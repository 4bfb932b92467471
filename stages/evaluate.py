"""DVC stage `evaluate`: score models/model.keras on the test and val splits."""

from pathlib import Path

from digitrec.catalog import get_dataset
from digitrec.errors import run_command, started_as
from digitrec.evaluation.evaluate import evaluate
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import EVAL_METRICS, EVAL_PLOTS, MODEL, PREPARED


def main(params_file: Path) -> str:
    dataset = get_dataset(read_params("dataset", path=params_file).dataset)
    metrics = evaluate(MODEL, PREPARED, EVAL_METRICS, EVAL_PLOTS, dataset.class_names)
    refusal = (f", refusal AUROC {metrics['refusal_auroc']:.4f}" if "refusal_auroc" in metrics
               else "")
    return (f"evaluate: test accuracy {metrics['accuracy']:.4f} ({metrics['error_count']} "
            f"errors), macro-F1 {metrics['macro_f1']:.4f}, ECE {metrics['ece']:.4f}{refusal}, "
            f"val accuracy {metrics['val']['accuracy']:.4f}; wrote {EVAL_METRICS}")


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)),
                own_process=started_as(__file__))
