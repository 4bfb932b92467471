"""DVC stage `prepare`: split, normalise and describe data/raw/ into data/prepared/, with
each split's negatives when the dataset has them."""

from pathlib import Path

from digitrec.catalog import get_dataset
from digitrec.data.prepared import SPLITS
from digitrec.data.splits import prepare
from digitrec.errors import run_command
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import PREPARED, RAW


def main(params_file: Path) -> str:
    params = read_params("dataset", "prepare", path=params_file)
    options = params.prepare
    manifest = prepare(RAW, PREPARED, options.val_size, options.seed,
                       get_dataset(params.dataset).negative_share(options.negatives))
    splits = manifest["splits"]
    counts = ", ".join(f"{split} {splits[split]['count']}" for split in SPLITS)
    drawn = sum(splits[split].get("negatives", 0) for split in SPLITS)
    extra = f" and {drawn} negatives" if drawn else ""
    return f"prepare: {counts} images{extra} in {PREPARED}/"


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
