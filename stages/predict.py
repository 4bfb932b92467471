"""DVC stage `predict`: read every picture in predict.images with models/model.keras."""

from digitrec import predict
from digitrec.cli import run_stage

if __name__ == "__main__":
    run_stage(predict.stage)
