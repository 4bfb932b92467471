"""DVC stage `download`: fetch, verify and decompress the four IDX archives into data/raw/."""

import sys
from pathlib import Path

from digitrec.catalog import get_dataset
from digitrec.data.download import download
from digitrec.errors import run_command
from digitrec.params import params_file_from_command_line, read_params
from digitrec.paths import DOWNLOADS, RAW


def main(params_file: Path) -> str:
    params = read_params("dataset", "download", path=params_file)
    dataset, options = get_dataset(params.dataset), params.download
    if not options.verify:
        print("warning: download.verify is false: checksums are not checked, "
              "only the IDX structure", file=sys.stderr)
    outcome = download(dataset, options, RAW, DOWNLOADS)
    fetched = sum(how.startswith("fetched") for how in outcome.values())
    checked = "verified against official checksums" if options.verify else "IDX structure checked"
    return (f"download: {dataset.name}: {len(outcome)} files in {RAW}/ "
            f"({fetched} fetched, {len(outcome) - fetched} already present; {checked})")


if __name__ == "__main__":
    run_command(lambda: main(params_file_from_command_line(__doc__)))
