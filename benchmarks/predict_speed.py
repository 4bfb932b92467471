"""Images per second for reading a folder of mixed pictures, end to end after model load.

    python benchmarks/predict_speed.py [--model models/model.keras] [--count 1000]
                                       [--user-digits DIR]

Draws `count` pictures of digits (photos of paper, chalkboards, transparent drawings; PNG,
JPEG, BMP; 28 to 2000 px) into a temporary folder, then times finding, decoding, preparing
and predicting all of them. Without --model an untrained default model is used (the speed
does not depend on the weights). With --user-digits DIR (a folder with labels.csv, such as
../shared/datasets/user-digits) it also prints the accuracy there, and that of the
tutorials' resize-and-invert reading for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitrec import predict
from digitrec.examples import draw_digit, photo_of_paper


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a trained model (default: untrained)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--user-digits", type=Path, help="a folder with labels.csv")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        draw_pictures(Path(folder), args.count)
        start = time.perf_counter()
        # As `digitrec predict` does: prepare first, in processes, then load TensorFlow.
        readings = predict.prepare_all(predict.find_pictures([folder]))
        prepared = time.perf_counter()
        from digitrec.backend import keras
        from digitrec.models import build_model

        model = keras.models.load_model(args.model) if args.model else build_model("digitnet")
        model.predict_on_batch(np.zeros((5, 28, 28, 1), np.float32))  # warm up
        loaded = time.perf_counter()
        predict.predict_readings(model, readings)
        done = time.perf_counter() - (loaded - prepared)  # the model load is not counted
    failed = sum(r.probabilities is None for r in readings)
    print(f"{len(readings)} pictures (28-2000 px, PNG/JPEG/BMP), {failed} failed")
    print(f"decode + prepare: {prepared - start:6.2f} s")
    print(f"predict:          {done - prepared:6.2f} s")
    print(f"end to end:       {len(readings) / (done - start):6.0f} images/s")

    if args.user_digits:
        labels = predict.read_labels(args.user_digits)
        readings = predict.predict_paths(args.model, [args.user_digits]) if args.model else []
        figures = predict.summary(readings, labels)
        if "accuracy" in figures:
            print(f"user digits: {figures['correct']}/{figures['labelled']} "
                  f"({figures['accuracy']:.1%}) read correctly")
        tutorial = [tutorial_reading(model, r.path) == labels[r.name]
                    for r in readings if r.name in labels]
        if tutorial:
            print(f"tutorial resize-and-invert: {sum(tutorial)}/{len(tutorial)} "
                  f"({np.mean(tutorial):.1%})")


if __name__ == "__main__":
    main()
