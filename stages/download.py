"""DVC stage `download`: fetch, verify and decompress the four IDX archives into data/raw/."""

from digitrec import download
from digitrec.cli import run_stage

if __name__ == "__main__":
    run_stage(download.stage)
