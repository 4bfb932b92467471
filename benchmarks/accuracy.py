"""Test accuracy over training seeds (median), train time against cnn3, and user-picture reads.

    python benchmarks/accuracy.py DATA_DIR [--dataset mnist] [--verify] [--seeds 42 1 2]
        [--set KEY=VALUE ...] [--accurate] [--cnn3] [--user-digits DIR] [--train-size N]

DATA_DIR holds the four .gz archives (../shared/datasets/mnist-10k, a subset, hence no
checksum verification unless --verify; /usr/share/datasets/fashion-mnist with --dataset
fashion_mnist --verify). The data goes through the real download and prepare code with the
params.yaml prepare settings; the recipe is the params.yaml train section, changed by
`--set` (YAML values, dotted keys for the augmentation: `--set augment.rotation=5
epochs=12`) or `--accurate` (the accurate setting of docs/training.md). With `--dataset` other than
mnist, `dataset` is passed to the train config as the pipeline does.

Every training runs through the real train code in a fresh process. With --cnn3 the
tutorial CNN (5 epochs, batch 32, as benchmarks/train_speed.py trains it) trains before each
seed's recipe, so the two times come from the same minutes of this machine. Times are the
wall seconds of `fit` and the CPU seconds (all threads) of the whole train call, building
the model and saving it included: on a shared machine whose speed drifts, the CPU time is
the steadier of the two. The test set is
scored as the evaluate stage does (`test acc`) and as `digitrec predict` reads a picture,
averaged over one-pixel shifts (`shifts`). With --user-digits DIR (a folder with labels.csv)
each model also reads those pictures as `digitrec predict` does (and, in the last column,
with every EXIF orientation tag applied as it stands), and the pooled readings of
all seeds are scored for calibration (expected calibration error, and how many wrong
readings each confidence threshold leaves unflagged). --train-size N trains on a random
N-image subset of the train split (a quick estimate for a large dataset).
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from digitrec import scoring
from digitrec.catalog import get_dataset
from digitrec.data.download import download
from digitrec.data.prepared import REDRAWN, images_file, labels_file
from digitrec.data.splits import prepare
from digitrec.data.transfer import Retries
from digitrec.params import DownloadParams
from digitrec.schema import load_file

ROOT = Path(__file__).resolve().parents[1]
CNN3 = dict(model="cnn3", epochs=5, batch_size=32, schedule="constant", learning_rate=1e-3,
            augment=False, ema=False, label_smoothing=0.0, optimizer="adam", warmup=0.2,
            checkpoint_every=5, keep_checkpoints=3, strategy="auto")
ACCURATE_FILE = ROOT / "benchmarks" / "train_speed.py"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def parse_sets(pairs: list[str]) -> dict:
    """`key=value` pairs (YAML values; `augment.x=...` sets one augmentation field)."""
    changes: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            sys.exit(f"error: --set {pair!r}: expected KEY=VALUE")
        value = yaml.safe_load(text)
        head, _, field = key.partition(".")
        if field:
            changes.setdefault(head, {})[field] = value
        else:
            changes[head] = value
    return changes


def recipe(params: dict, changes: dict) -> dict:
    """The train section with `changes` applied (augmentation fields merged)."""
    train = dict(params["train"])
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(train.get(key), dict):
            train[key] = {**train[key], **value}
        else:
            train[key] = value
    return train


def subset_train(prepared: Path, size: int, seed: int) -> None:
    """Keep a random `size` of the train split (and its redrawn copy)."""
    labels = np.load(prepared / labels_file("train"))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(labels))[:size])
    for name in (images_file("train"), labels_file("train"), REDRAWN):
        array = np.load(prepared / name, mmap_mode="r")
        np.save(prepared / name, np.array(array[keep]))


def prepare_user_digits(folder: Path, work: Path) -> list[str]:
    """Prepare every labelled picture once, as `digitrec predict` does (before TensorFlow
    is loaded); save the digits and labels for the training processes."""
    from digitrec.parallel import parallel_map
    from digitrec.reading.batch import find_pictures, read_one
    from digitrec.reading.labels import folder_labels

    # Labels are text ("7", "0869", "none"); this benchmark scores single digits.
    labels = {name: int(text) for name, text in folder_labels([folder]).values.items()
              if len(text) == 1 and text.isdigit()}
    readings = [r for r in parallel_map(read_one, find_pictures([folder])) if r.name in labels]
    ready = [r for r in readings if r.cleaned is not None]
    for reading in ready:
        reading.cleaned.thumbnail = None  # not needed, and pickles slowly
    with open(work / "user_readings.pkl", "wb") as f:
        pickle.dump(ready, f)
    np.save(work / "user_labels.npy", np.array([labels[r.name] for r in ready]))
    failed = [f"{r.name}: {r.error}" for r in readings if r.cleaned is None]
    for line in failed:
        print(f"user picture not read: {line}", file=sys.stderr)
    return [r.name for r in ready]


def train_one(config_json: str, work: Path) -> None:
    """Child process: train one config on the prepared data in `work`, print JSON."""
    from digitrec.data.prepared import load_split
    from digitrec.params import parse_train
    from digitrec.paths import TrainOutputs
    from digitrec.reading.batch import predict_readings
    from digitrec.reading.classify import predict_digits
    from digitrec.training.run import train

    settings = json.loads(config_json)
    dataset = settings.pop("dataset", "mnist")
    config = parse_train(settings, dataset)
    folder = Path(tempfile.mkdtemp(dir=work))
    outputs = TrainOutputs(folder / "model.keras", folder / "checkpoints", folder / "metrics")
    cpu_start = time.process_time()
    result = train(config, work / "prepared", outputs, verbose=0)
    cpu_seconds = time.process_time() - cpu_start
    images, labels = load_split(work / "prepared", "test")
    probabilities = result.model.predict(np.asarray(images), batch_size=1000, verbose=0)
    shifted = predict_digits(result.model, np.asarray(images)[..., 0])
    answer = {"model": str(folder / "model.keras"), "seconds": result.seconds,
              "cpu_seconds": cpu_seconds,
              "parameters": result.model.count_params(),
              "accuracy": scoring.accuracy(probabilities, labels),
              "shifts": scoring.accuracy(shifted, labels)}
    if (work / "user_readings.pkl").exists():
        with open(work / "user_readings.pkl", "rb") as f:
            readings = pickle.load(f)
        predict_readings(result.model, readings)
        # None where a picture is not read as one digit (refused, or read as a number).
        answer["user"] = [None if r.probabilities is None else r.probabilities.tolist()
                          for r in readings]
        as_tagged = predict_digits(result.model, np.stack([r.cleaned.digit for r in readings]))
        answer["user_as_tagged"] = as_tagged.tolist()
    print(json.dumps(answer))


def run_in_child(config: dict, work: Path) -> dict:
    command = [sys.executable, __file__, "--train-one", json.dumps(config), "--work",
               str(work), "unused"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error, and for each threshold the readings it would mark unsure."""
    confidence = probabilities.max(axis=1)
    correct = scoring.predictions(probabilities) == labels
    ece = scoring.expected_calibration_error(probabilities, labels, bins)
    table = {t: (int((~correct & (confidence >= t)).sum()), int((confidence < t).sum()),
                 int((correct & (confidence < t)).sum())) for t in THRESHOLDS}
    return {"ece": float(ece), "mean_confidence": float(confidence.mean()),
            "accuracy": float(correct.mean()), "thresholds": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="folder with the four .gz archives")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--verify", action="store_true", help="check official checksums")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="change the params.yaml train section")
    parser.add_argument("--accurate", action="store_true",
                        help="the accurate setting of docs/training.md (then --set on top)")
    parser.add_argument("--cnn3", action="store_true", help="time cnn3 before every seed")
    parser.add_argument("--user-digits", type=Path, help="a folder with labels.csv")
    parser.add_argument("--train-size", type=int, help="train on a subset of this size")
    parser.add_argument("--keep-models", type=Path,
                        help="copy each trained model here as seed-N.keras")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        return train_one(args.train_one, args.work)

    params = load_file(ROOT / "params.yaml")
    changes = parse_sets(args.set)
    if args.accurate:
        changes = {**accurate_setting(), **changes}
    config = recipe(params, changes)
    config["dataset"] = args.dataset  # its model and augmentation style, as in the stage
    print(f"recipe: {json.dumps(config)}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        download(get_dataset(args.dataset),
                 DownloadParams(mirrors=(str(args.data_dir),), verify=args.verify),
                 work / "raw", work / "partial", Retries(progress=False))
        options = params["prepare"]
        manifest = prepare(work / "raw", work / "prepared", options["val_size"],
                           options["seed"],
                           get_dataset(args.dataset).negative_share(options["negatives"]))
        if args.train_size:
            subset_train(work / "prepared", args.train_size, options["seed"])
        counts = {split: info["count"] for split, info in manifest["splits"].items()}
        print(f"data: {args.data_dir}: {counts}"
              + (f", train cut to {args.train_size}" if args.train_size else ""),
              file=sys.stderr)
        names = prepare_user_digits(args.user_digits, work) if args.user_digits else []
        rows = []
        for seed in args.seeds:
            cnn3 = (run_in_child({**CNN3, "seed": seed, "dataset": args.dataset}, work)
                    if args.cnn3 else None)
            result = run_in_child({**config, "seed": seed}, work)
            if args.keep_models:
                args.keep_models.mkdir(parents=True, exist_ok=True)
                shutil.copy(result["model"], args.keep_models / f"seed-{seed}.keras")
            rows.append((seed, result, cnn3))
            print(f"seed {seed}: {result['accuracy']:.2%} in {result['seconds']:.1f} s, "
                  f"{result['cpu_seconds']:.1f} s CPU"
                  + (f" (cnn3 {cnn3['seconds']:.1f} s, {cnn3['cpu_seconds']:.1f} s CPU)"
                     if cnn3 else ""), file=sys.stderr, flush=True)
        report(rows, names, np.load(work / "user_labels.npy") if names else None)


def accurate_setting() -> dict:
    """The accurate setting (docs/training.md), as benchmarks/train_speed.py trains it."""
    sys.path.insert(0, str(ACCURATE_FILE.parent))
    from train_speed import ACCURATE

    return dict(ACCURATE)


def user_predictions(result: dict) -> np.ndarray:
    """The digit read in each user picture; -1 where it was not read as one digit."""
    return np.asarray([-1 if p is None else int(np.argmax(p)) for p in result["user"]])


def _as(probabilities: list[float] | None) -> str:
    if probabilities is None:
        return "not read as one digit"
    return f"as {int(np.argmax(probabilities))}, {max(probabilities):.0%}"


def report(rows: list, names: list[str], user_labels: np.ndarray | None) -> None:
    print(f"{'seed':>6}{'test acc':>10}{'shifts':>8}{'train s':>9}{'cnn3 s':>8}{'CPU s':>7}"
          f"{'cnn3 CPU':>9}{'user reads':>12}{'EXIF as tagged':>16}")
    reads, tagged = [], []
    for seed, result, cnn3 in rows:
        line = (f"{seed:>6}{result['accuracy']:>10.2%}{result['shifts']:>8.2%}"
                f"{result['seconds']:>9.1f}"
                f"{cnn3['seconds'] if cnn3 else float('nan'):>8.1f}"
                f"{result['cpu_seconds']:>7.1f}"
                f"{cnn3['cpu_seconds'] if cnn3 else float('nan'):>9.1f}")
        if user_labels is not None:
            predicted = user_predictions(result)
            reads.append(int((predicted == user_labels).sum()))
            line += f"{reads[-1]:>8}/{len(user_labels)}"
            if "user_as_tagged" in result:
                as_tagged = np.asarray(result["user_as_tagged"]).argmax(axis=1)
                tagged.append(int((as_tagged == user_labels).sum()))
                line += f"{tagged[-1]:>12}/{len(user_labels)}"
        print(line)
    accuracies = [r["accuracy"] for _, r, _ in rows]
    shifts = [r["shifts"] for _, r, _ in rows]
    seconds = [r["seconds"] for _, r, _ in rows]
    cpu = [r["cpu_seconds"] for _, r, _ in rows]
    line = (f"{'median':>6}{np.median(accuracies):>10.2%}{np.median(shifts):>8.2%}"
            f"{np.median(seconds):>9.1f}")
    if rows[0][2]:
        cnn3 = [c["seconds"] for _, _, c in rows]
        cnn3_cpu = [c["cpu_seconds"] for _, _, c in rows]
        line += f"{np.median(cnn3):>8.1f}{np.median(cpu):>7.1f}{np.median(cnn3_cpu):>9.1f}"
        ratio = np.median(np.array(seconds) / np.array(cnn3))
        cpu_ratio = np.median(np.array(cpu) / np.array(cnn3_cpu))
        print(f"train time / cnn3 (median of pairs): {ratio:.2f} wall, {cpu_ratio:.2f} CPU")
    else:
        line += f"{'':>8}{np.median(cpu):>7.1f}{'':>9}"
    if reads:
        line += f"{np.median(reads):>8.0f}/{len(user_labels)}"
    if tagged:
        line += f"{np.median(tagged):>12.0f}/{len(user_labels)}"
    print(line)
    if user_labels is None:
        return
    for seed, result, _ in rows:
        wrong = np.flatnonzero(user_predictions(result) != user_labels)
        print(f"seed {seed} misread: " + ", ".join(
            f"{names[i]} ({user_labels[i]} {_as(result['user'][i])})" for i in wrong))
    read = [(p, label) for _, r, _ in rows for p, label in zip(r["user"], user_labels,
                                                                  strict=True) if p is not None]
    scores = calibration(np.asarray([p for p, _ in read]), np.asarray([lb for _, lb in read]))
    missed = len(rows) * len(user_labels) - len(read)
    print(f"user pictures not read as one digit (refused or split), all seeds: {missed}")
    print(f"user pictures read as one digit, all seeds pooled: accuracy "
          f"{scores['accuracy']:.1%}, mean "
          f"confidence {scores['mean_confidence']:.1%}, ECE {scores['ece']:.3f}")
    print(f"{'unsure below':>13}{'wrong, sure':>13}{'unsure':>8}{'right, unsure':>15}")
    for threshold, (wrong_sure, unsure, right_unsure) in scores["thresholds"].items():
        print(f"{threshold:>13.2f}{wrong_sure:>13}{unsure:>8}{right_unsure:>15}")


if __name__ == "__main__":
    main()
