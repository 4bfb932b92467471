"""DVC stage `train`: train the registry model named in params.yaml into models/model.keras."""

from digitrec import train
from digitrec.cli import run_stage

if __name__ == "__main__":
    run_stage(train.stage)
