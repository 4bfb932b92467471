"""How well the reader answers what real pictures say: single digits, whole numbers, and
pictures with no digit at all.

    python benchmarks/reading.py --model models/model.keras \
        --user-digits ../shared/datasets/user-digits \
        --user-numbers ../shared/datasets/user-numbers \
        --not-digits ../shared/datasets/not-digits [--sweep]

Each folder holds pictures and a labels.csv: `file,label` with the digits as text for the
digit and number sets, `file,category` for the no-digit set. For each set it prints the
exact-reading accuracy (the number read exactly; for the no-digit set, answered
`not_digits`, also per category when labels.csv has a `category` column), the share read
exactly and `ok` (not unsure), the digit accuracy (1 - edit distance / length), the false
refusals (real digits answered `not_digits`) and the pictures per second (decoding,
cleaning, segmenting and reading, after the model is loaded; the same path as `digitrec
predict`). `--sweep` also prints the three headline rates for other values of
`number.NOT_DIGIT_BELOW` and `LONE_NOT_DIGIT_BELOW`, to pick the operating point.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from digitrec.reading import batch as predict
from digitrec.reading import number
from digitrec.reading.batch import edit_distance

SWEEP = ((0.5, 0.5), (0.6, 0.6), (0.6, 0.7), (0.6, 0.8), (0.6, 0.85), (0.7, 0.8),
         (0.8, 0.8), (0.6, 0.9), (0.9, 0.9))


def label_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "labels.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def expected_texts(folder: Path) -> dict[str, str]:
    """name -> the digits the picture holds ("" for the no-digit set, which has no label)."""
    return {row["file"]: row.get("label") or "" for row in label_rows(folder)}


def categories(folder: Path) -> dict[str, str]:
    """name -> the picture's category in labels.csv (empty without that column); a picture
    marked `ambiguous: yes` (a letter shaped as a digit: O, S, Z, l) counts as a look-alike."""
    return {row["file"]: "look-alike" if row.get("ambiguous") == "yes" else
            row.get("category") or "" for row in label_rows(folder)}


def by_category(readings: list[predict.Reading], folder: Path) -> str:
    """Refused / pictures for each category of the no-digit set, e.g. `letter 21/24`."""
    kinds = categories(folder)
    counts: dict[str, list[int]] = {}
    for reading in readings:
        if kinds.get(reading.name):
            count = counts.setdefault(kinds[reading.name], [0, 0])
            count[0] += reading.status == "not_digits"
            count[1] += 1
    return ", ".join(f"{kind} {done}/{total}" for kind, (done, total) in sorted(counts.items()))


def read_set(model: Path, folder: Path) -> tuple[list[predict.Reading], float]:
    pictures = predict.find_pictures([folder])
    start = time.perf_counter()
    readings = predict.predict_pictures(model, pictures, keep_cleaned=0)
    return readings, len(readings) / (time.perf_counter() - start)


def rejudged(reading: predict.Reading, below: tuple[float, float]) -> number.Read | None:
    """The reading's verdict had the thresholds been `below` (same segmentation)."""
    if reading.read is None or not reading.read.characters:
        return reading.read
    return number.judge(reading.read.characters, predict.UNSURE_BELOW,
                        reading.read.split_doubtful, below)


def rates(readings: list[predict.Reading], expected: dict[str, str]) -> dict[str, float]:
    labelled = [(r, expected[r.name]) for r in readings if r.name in expected]
    exact = [r.status == "not_digits" if text == "" else
             (r.status in ("ok", "unsure") and r.text == text) for r, text in labelled]
    sure = [ok and r.status in ("ok", "not_digits") for ok, (r, _) in zip(exact, labelled,
                                                                           strict=True)]
    digits = [(r, text) for r, text in labelled if text]
    written = sum(len(text) for _, text in digits)
    wrong = sum(min(len(text), edit_distance(r.text, text)) for r, text in digits)
    refused = sum(r.status == "not_digits" for r, _ in digits)
    return {"pictures": len(labelled), "exact": float(np.mean(exact)),
            "exact_and_ok": float(np.mean(sure)),
            "digit_accuracy": 1 - wrong / written if written else float("nan"),
            "false_refusals": refused / len(digits) if digits else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--user-digits", type=Path)
    parser.add_argument("--user-numbers", type=Path)
    parser.add_argument("--not-digits", type=Path)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    sets = {name: folder for name, folder in (("single digits", args.user_digits),
                                              ("numbers", args.user_numbers),
                                              ("no digit", args.not_digits)) if folder}
    if not sets:
        parser.error("give at least one of --user-digits, --user-numbers, --not-digits")
    results = {}
    for name, folder in sets.items():
        readings, speed = read_set(args.model, folder)
        expected = expected_texts(folder)
        results[name] = (readings, expected)
        figures = rates(readings, expected)
        if name == "no digit":
            print(f"{name:14} {figures['pictures']:4} pictures: refused (not_digits) "
                  f"{figures['exact']:.1%}; {speed:.1f} pictures/s")
            if kinds := by_category(readings, folder):
                print(f"{'':14} refused by category: {kinds}")
        else:
            print(f"{name:14} {figures['pictures']:4} pictures: exact {figures['exact']:.1%}, "
                  f"exact and ok {figures['exact_and_ok']:.1%}, digit accuracy "
                  f"{figures['digit_accuracy']:.1%}, false refusals "
                  f"{figures['false_refusals']:.1%}; {speed:.1f} pictures/s")
    if args.sweep:
        now = (number.NOT_DIGIT_BELOW, number.LONE_NOT_DIGIT_BELOW)
        print(f"\nNOT_DIGIT_BELOW, LONE_NOT_DIGIT_BELOW (now {now}):  " +
              "  ".join(f"{name} exact" for name in results))
        for below in SWEEP:
            cells = []
            for readings, expected in results.values():
                for reading in readings:
                    reading.read = rejudged(reading, below)
                cells.append(f"{rates(readings, expected)['exact']:.1%}")
            print(f"  {str(below):<44}" + "  ".join(f"{c:>12}" for c in cells))


if __name__ == "__main__":
    main()
