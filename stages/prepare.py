"""DVC stage `prepare`: split, normalise and describe the raw data into data/prepared/."""

from digitrec import prepare
from digitrec.cli import run_stage

if __name__ == "__main__":
    run_stage(prepare.stage)
