"""DVC stage `prepare`: split, normalise and describe data/raw/ into data/prepared/."""

from pathlib import Path

from digitrec.data.prepared import SPLITS
from digitrec.data.splits import prepare
from digitrec.errors import run_command
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import PREPARED, RAW


def main(params_file: Path) -> str:
    options = read_params("prepare", path=params_file).prepare
    manifest = prepare(RAW, PREPARED, options.val_size, options.seed)
    counts = ", ".join(f"{split} {manifest['splits'][split]['count']}" for split in SPLITS)
    return f"prepare: {counts} images in {PREPARED}/"


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
