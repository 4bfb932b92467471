"""DVC stage `evaluate`: score models/model.keras on the test and val splits."""

from digitrec import evaluate
from digitrec.cli import run_stage

if __name__ == "__main__":
    run_stage(evaluate.stage)
