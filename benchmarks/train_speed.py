"""Train every registry model in its usual setting, and the default params, on the same data.

    python benchmarks/train_speed.py DATA_DIR [--verify] [--accurate] [--only NAME ...]

DATA_DIR holds the four MNIST .gz archives (for example ../shared/datasets/mnist-10k, a
subset, hence no checksum verification unless --verify). The data goes through the real
download and prepare code with the params.yaml prepare settings, and every model trains
through the real train stage code (checkpoints and logs included) on the same machine in
one run. Each training runs in a fresh process, so no run inherits another's state. Prints
a table: model, parameters, epochs, train seconds, test accuracy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from digitrec import scoring
from digitrec.catalog import get_dataset
from digitrec.data.download import download
from digitrec.data.prepared import load_split
from digitrec.data.splits import prepare
from digitrec.data.transfer import Retries
from digitrec.params import DownloadParams, TrainParams, parse_train, read_params
from digitrec.paths import TrainOutputs
from digitrec.schema import load_file, parse_section
from digitrec.training.run import train

ROOT = Path(__file__).resolve().parents[1]

# The tutorial models as their tutorials train them: Adam at a constant rate, no
# augmentation, Keras' default batch of 32 unless the tutorial says otherwise.
TUTORIAL = dict(schedule="constant", learning_rate=1e-3, augment=None, ema=False,
                label_smoothing=0.0, batch_size=32)
SETTINGS = {
    "mlp": dict(TUTORIAL, model="mlp", epochs=10),
    "cnn3": dict(TUTORIAL, model="cnn3", epochs=5),
    "cnn2_dense800": dict(TUTORIAL, model="cnn2_dense800", epochs=10),
    "cnn5x5_dropout": dict(TUTORIAL, model="cnn5x5_dropout", epochs=10, batch_size=64,
                           learning_rate=1e-4),
    "lenet5": dict(TUTORIAL, model="lenet5", epochs=10),
}
# The `accurate` setting (docs/training.md): the wider digitnet, for 20 epochs.
ACCURATE = dict(model="digitnet_wide", epochs=20)


def test_accuracy(model, prepared: Path) -> float:
    images, labels = load_split(prepared, "test")
    return scoring.accuracy(model.predict(np.asarray(images), batch_size=1000, verbose=0),
                            labels)


def as_params(config: TrainParams) -> dict:
    """A train section as params.yaml writes it (no augmentation is `false`)."""
    section = asdict(config)
    section["augment"] = section["augment"] or False
    return section


def train_one(config_json: str, work: Path) -> None:
    """Child process: train one setting on the prepared data in `work`, print JSON."""
    config = parse_section(TrainParams, json.loads(config_json), "train")
    folder = Path(tempfile.mkdtemp(dir=work))
    outputs = TrainOutputs(folder / "model.keras", folder / "checkpoints", folder / "metrics")
    result = train(config, work / "prepared", outputs, verbose=0)
    print(json.dumps({"seconds": result.seconds, "parameters": result.model.count_params(),
                      "accuracy": test_accuracy(result.model, work / "prepared")}))


def run_in_child(config: TrainParams, work: Path) -> dict:
    command = [sys.executable, __file__, "--train-one", json.dumps(as_params(config)),
               "--work", str(work), "unused"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="folder with the four .gz archives")
    parser.add_argument("--verify", action="store_true", help="check official checksums")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--accurate", action="store_true",
                        help="also train the accurate setting (docs/training.md)")
    parser.add_argument("--only", nargs="*", help="only these rows (default: all)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="train each setting N times, interleaved, and report the median "
                             "time (this machine's speed drifts by tens of percent)")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        return train_one(args.train_one, args.work)

    params = read_params("prepare", path=ROOT / "params.yaml")
    default = parse_train(load_file(ROOT / "params.yaml")["train"], args.dataset)
    runs = {name: replace(TrainParams(), **setting) for name, setting in SETTINGS.items()}
    runs["default"] = default
    if args.accurate:
        runs["accurate"] = replace(default, **ACCURATE)
    if args.only:
        runs = {name: config for name, config in runs.items() if name in args.only}

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        download(get_dataset(args.dataset),
                 DownloadParams(mirrors=(str(args.data_dir),), verify=args.verify),
                 work / "raw", work / "partial", Retries(progress=False))
        manifest = prepare(work / "raw", work / "prepared", params.prepare.val_size,
                           params.prepare.seed,
                           get_dataset(args.dataset).negative_share(params.prepare.negatives))
        counts = {split: info["count"] for split, info in manifest["splits"].items()}
        print(f"data: {args.data_dir}: {counts}", file=sys.stderr)
        times: dict[str, list[float]] = {name: [] for name in runs}
        results = {}
        for attempt in range(args.repeat):
            for name, config in runs.items():
                print(f"--- {name} ({attempt + 1}/{args.repeat}): {config}", file=sys.stderr,
                      flush=True)
                results[name] = run_in_child(config, work)
                times[name].append(results[name]["seconds"])
        rows = [(name, config, results[name]["parameters"], float(np.median(times[name])),
                 results[name]["accuracy"]) for name, config in runs.items()]

    print(f"{'run':<16}{'model':<16}{'parameters':>12}{'epochs':>8}{'batch':>7}"
          f"{'train s':>9}{'test acc':>10}")
    for name, config, parameters, seconds, accuracy in rows:
        print(f"{name:<16}{config.model:<16}{parameters:>12,}{config.epochs:>8}"
              f"{config.batch_size:>7}{seconds:>9.1f}{accuracy:>10.2%}")
    timed = {name: seconds for name, _, _, seconds, _ in rows}
    if "default" in timed and len(timed) > 1:
        faster = [n for n, s in timed.items() if n not in ("default", "accurate")
                  and s <= timed["default"]]
        print("default trains faster than every tutorial model" if not faster
              else f"trains faster than the default: {', '.join(faster)}")


if __name__ == "__main__":
    main()
