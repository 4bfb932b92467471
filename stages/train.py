"""DVC stage `train`: train the registry model named in params.yaml into models/model.keras."""

import sys
from pathlib import Path

from digitrec.errors import run_command, started_as
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import PREPARED, TRAIN_OUTPUTS
from digitrec.training.run import train


def main(params_file: Path) -> str:
    config = read_params("train", path=params_file).train
    result = train(config, PREPARED, TRAIN_OUTPUTS, verbose=1 if sys.stdout.isatty() else 2)
    if not result.wrote_outputs:
        return (f"train: this worker's part is done ({config.epochs} epochs in "
                f"{result.seconds:.1f} s); the chief saved the model")
    val_accuracy = result.history["val_accuracy"][-1]
    return (f"train: {config.model} ({result.model.count_params():,} parameters), "
            f"{config.epochs} epochs in {result.seconds:.1f} s, val accuracy "
            f"{val_accuracy:.4f}, temperature {result.temperature:.3f}; saved "
            f"{TRAIN_OUTPUTS.model}")


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)),
                own_process=started_as(__file__))
