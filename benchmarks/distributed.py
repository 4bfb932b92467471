"""Epoch time and accuracy of multi-worker training with 1 and 2 local worker processes.

    python benchmarks/distributed.py DATA_DIR [--workers 1 2] [--epochs N] [--verify]

DATA_DIR holds the four MNIST .gz archives (for example ../shared/datasets/mnist-10k). The
data goes through the real download and prepare code; then, for each worker count N, N
processes on 127.0.0.1 ports train the default params with `train.strategy: multi_worker`
and the same global batch, through the real train code, and the chief's model is scored
on the test split. Prints: workers, global batch, epochs, seconds per epoch, test accuracy.

All workers share this one machine, so N = 2 measures the cost of splitting the work and
talking gRPC, not the speed-up of two machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from train_speed import as_params, test_accuracy

from digitrec.catalog import get_dataset
from digitrec.data.download import download
from digitrec.data.splits import prepare
from digitrec.data.transfer import Retries
from digitrec.params import DownloadParams, TrainParams, read_params
from digitrec.paths import TrainOutputs
from digitrec.schema import parse_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import local_tf_configs  # noqa: E402 (the tests' helper, to start a cluster)


def worker(config_json: str, work: Path, output: Path) -> None:
    """Child process: one worker of the job (TF_CONFIG says which); the chief prints JSON."""
    from digitrec.training.run import train

    config = parse_section(TrainParams, json.loads(config_json), "train")
    outputs = TrainOutputs(output / "model.keras", output / "checkpoints", output / "metrics")
    result = train(config, work / "prepared", outputs, verbose=0)
    if result.wrote_outputs:
        # The saved model, outside the strategy: its predict would wait for the other workers.
        from digitrec.backend import keras

        model = keras.models.load_model(output / "model.keras")
        print(json.dumps({"seconds": result.seconds,
                          "accuracy": test_accuracy(model, work / "prepared")}))


def run_job(workers: int, config: TrainParams, work: Path) -> dict:
    processes = []
    for tf_config in local_tf_configs(workers):
        output = Path(tempfile.mkdtemp(dir=work))
        env = {**os.environ, "TF_CONFIG": tf_config}
        command = [sys.executable, __file__, "unused", "--worker", json.dumps(as_params(config)),
                   "--work", str(work), "--output", str(output)]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        sys.exit(f"a worker failed: {[p.returncode for p in processes]}")
    return json.loads(outputs[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="folder with the four .gz archives")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--epochs", type=int, help="default: params.yaml's")
    parser.add_argument("--verify", action="store_true", help="check official checksums")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.work, args.output)

    params = read_params("train", "prepare", path=ROOT / "params.yaml")
    config = replace(params.train, strategy="multi_worker")
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        download(get_dataset(args.dataset),
                 DownloadParams(mirrors=(str(args.data_dir),), verify=args.verify),
                 work / "raw", work / "partial", Retries(progress=False))
        prepare(work / "raw", work / "prepared", params.prepare.val_size, params.prepare.seed,
                get_dataset(args.dataset).negative_share(params.prepare.negatives))
        rows = []
        for workers in args.workers:
            print(f"--- {workers} worker(s)", file=sys.stderr, flush=True)
            rows.append((workers, run_job(workers, config, work)))

    print(f"{'workers':>8}{'global batch':>14}{'epochs':>8}{'s/epoch':>9}{'test acc':>11}")
    for workers, result in rows:
        print(f"{workers:>8}{config.batch_size:>14}{config.epochs:>8}"
              f"{result['seconds'] / config.epochs:>9.2f}{result['accuracy']:>11.3%}")


if __name__ == "__main__":
    main()
