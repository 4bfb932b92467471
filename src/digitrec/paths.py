"""Where the pipeline keeps things in a project, said once: the stages, `dvc.yaml` and the
`digitrec` command all name these paths, relative to the project root."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainOutputs:
    """Where a training run writes: the model, its periodic checkpoints, its DVCLive logs."""

    model: Path
    checkpoints: Path
    metrics: Path


RAW = Path("data/raw")                      # download: the four IDX files
DOWNLOADS = Path("data/downloads")          # download's scratch (transfers, staging)
PREPARED = Path("data/prepared")            # prepare: the splits and their manifest
MODEL = Path("models/model.keras")          # train: the model every reader uses
CHECKPOINTS = Path("models/checkpoints")    # train: every N-th epoch, not an output
TRAIN_METRICS = Path("metrics/train")       # train: DVCLive's curves and summary
EVAL_METRICS = Path("metrics/eval.json")    # evaluate: the headline numbers
EVAL_PLOTS = Path("metrics/eval")           # evaluate: plot data and PNG figures
PREDICTIONS = Path("data/predictions")      # predict: the CSV and the contact sheet
PREDICT_METRICS = Path("metrics/predict.json")
TRAIN_OUTPUTS = TrainOutputs(MODEL, CHECKPOINTS, TRAIN_METRICS)
