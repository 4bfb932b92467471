"""Images per second for reading a folder of mixed pictures, end to end after model load;
and peak memory for N pictures against 4N.

    python benchmarks/predict_speed.py [--model models/model.keras] [--count 1000]
                                       [--user-digits DIR] [--memory N]

Draws `count` pictures of digits (photos of paper, chalkboards, transparent drawings; PNG,
JPEG, BMP; 28 to 2000 px) into a temporary folder, then times finding, decoding, preparing
and predicting all of them. Without --model an untrained default model is used (the speed
does not depend on the weights). With --user-digits DIR (a folder with labels.csv, such as
../shared/datasets/user-digits) it also prints the accuracy there, and that of the
tutorials' resize-and-invert reading for comparison. With --memory N it runs the whole
`predict_batch` (CSV, contact sheet, metrics) on N and then 4N drawn pictures, each in a
fresh process, and prints each one's peak resident memory and that of its worker processes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitrec.examples import draw_digit, photo_of_paper
from digitrec.parallel import worker_pool
from digitrec.reading import batch as predict


def draw_pictures(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(28), np.log(2000), size=count)).astype(int)
    for index, size in enumerate(sizes):
        digit = int(rng.integers(10))
        kind = index % 3
        if kind == 0:
            picture = photo_of_paper(draw_digit(digit, size, 0.03, 40, 225, index), index)
            picture.save(folder / f"photo_{index}.jpg", quality=85)
        elif kind == 1:
            draw_digit(digit, size, 0.06, 235, 30, index).save(folder / f"board_{index}.bmp")
        else:
            strokes = draw_digit(digit, size, 0.08, 255, 0, index)
            drawing = Image.new("RGBA", strokes.size, (0, 0, 0, 0))
            drawing.putalpha(strokes)
            drawing.save(folder / f"drawing_{index}.png")


def tutorial_reading(model, path: Path) -> int:
    """What tutorials do: the whole picture resized to 28x28, grey, inverted."""
    with Image.open(path) as image:
        small = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32) / 255
    return int(model.predict_on_batch((1 - small)[None, ..., None]).argmax())


def untrained_model(folder: Path) -> Path:
    """The default model, untrained, saved (the speed does not depend on the weights)."""
    from digitrec.modelfile import save_model
    from digitrec.training.models import build_model

    path = folder / "untrained.keras"
    save_model(build_model("digitnet"), path)
    return path


def time_reading(model_path: Path | None, folder: Path) -> list[predict.Reading]:
    """predict.predict_pictures, step by step, with the model load left out of the time."""
    from digitrec.modelfile import load_model

    pictures = predict.find_pictures([folder])
    readings: list[predict.Reading] = []
    preparing = predicting = 0.0
    with worker_pool(len(pictures)) as pool:  # forks its workers before TensorFlow
        model = load_model(model_path or untrained_model(folder.parent))
        model.predict_on_batch(np.zeros((5, 28, 28, 1), np.float32))  # warm up
        for start in range(0, len(pictures), predict.CHUNK):
            began = time.perf_counter()
            chunk = list(pool.map(predict.read_one, pictures[start:start + predict.CHUNK],
                                  chunksize=8))
            prepared = time.perf_counter()
            predict.predict_readings(model, chunk)
            predicting += time.perf_counter() - prepared
            preparing += prepared - began
            readings += chunk
    failed = sum(r.probabilities is None for r in readings)
    print(f"{len(readings)} pictures (28-2000 px, PNG/JPEG/BMP), {failed} failed")
    print(f"decode + prepare: {preparing:6.2f} s")
    print(f"predict:          {predicting:6.2f} s")
    print(f"end to end:       {len(readings) / (preparing + predicting):6.0f} images/s")
    return readings


def peak_memory(model_path: Path | None, counts: list[int]) -> None:
    """Run the whole batch on each count of pictures in a fresh process; print peak RSS."""
    for count in counts:
        with tempfile.TemporaryDirectory() as work:
            folder = Path(work) / "pictures"
            folder.mkdir()
            draw_pictures(folder, count)
            model = model_path or _untrained_in_a_child(Path(work))
            result = subprocess.run([sys.executable, __file__, "--measure", str(folder),
                                     "--model", str(model)], capture_output=True, text=True,
                                    check=True)
            print(f"{count:6d} pictures: {result.stdout.strip()}")


def _untrained_in_a_child(folder: Path) -> Path:
    """Saved by another process, so this one stays free of TensorFlow (and can fork)."""
    code = ("import sys, pathlib; sys.path.insert(0, sys.argv[1]); import predict_speed; "
            "predict_speed.untrained_model(pathlib.Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(folder)],
                   check=True)
    return folder / "untrained.keras"


def measure(folder: Path, model: Path) -> None:
    """In a fresh process: the whole predict batch with all its outputs, then peak memory.

    Peaks are the kernel's high-water marks (VmHWM) of this process and, sampled while it
    runs, of its worker processes (`ru_maxrss` would count the parent's memory before exec).
    """
    out = folder.parent / "out"
    outputs = predict.BatchOutputs(csv=out / "predictions.csv", contact_sheet=out / "sheet.png",
                              metrics=out / "predict.json")
    workers = WorkerPeaks()
    workers.start()
    start = time.perf_counter()
    batch = predict.predict_batch(model, [folder], outputs)
    seconds = time.perf_counter() - start
    workers.stop()
    print(f"peak {high_water('self'):5.0f} MB in the main process, {workers.peak:4.0f} MB in the "
          f"largest worker ({batch.figures['predicted']} read, {seconds:.0f} s with the model "
          f"load)")


def high_water(pid: str | int) -> float:
    """A process's peak resident memory in MB, from /proc (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class WorkerPeaks(threading.Thread):
    """Samples the peak memory of this process's children every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            for task in Path("/proc/self/task").iterdir():
                try:
                    children = (task / "children").read_text().split()
                except OSError:
                    continue
                for child in children:
                    self.peak = max(self.peak, high_water(child))

    def stop(self) -> None:
        self.done.set()
        self.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a trained model (default: untrained)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--user-digits", type=Path, help="a folder with labels.csv")
    parser.add_argument("--memory", type=int, metavar="N",
                        help="print peak memory for N and 4N pictures instead")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.model)
        return
    if args.memory:
        peak_memory(args.model, [args.memory, 4 * args.memory])
        return

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "pictures"
        folder.mkdir()
        draw_pictures(folder, args.count)
        time_reading(args.model, folder)

    if args.user_digits and args.model:
        from digitrec.modelfile import load_model

        batch = predict.predict_batch(args.model, [args.user_digits])
        figures = batch.figures
        if "accuracy" in figures:
            print(f"user digits: {figures['correct']}/{figures['labelled']} "
                  f"({figures['accuracy']:.1%}) read correctly")
        model = load_model(args.model)
        tutorial = [tutorial_reading(model, r.path) == batch.labels[r.name]
                    for r in batch.readings if r.name in batch.labels]
        if tutorial:
            print(f"tutorial resize-and-invert: {sum(tutorial)}/{len(tutorial)} "
                  f"({np.mean(tutorial):.1%})")


if __name__ == "__main__":
    main()
