"""The prepared-data format: what `data/prepared/` holds, written and read in one place.

- `{train,val,test}_images.npy`: float32 (N, 28, 28, 1), values in [0, 1], white ink on black;
- `{split}_labels.npy`: uint8 (N,);
- `train_redrawn.npy`: the training digits drawn again as the predict stage draws a user's
  picture (see `images.redraw`), same shape as `train_images.npy`;
- `{split}_negatives.npy` (only when `prepare.negatives` is above 0 and the dataset has
  negatives, see `catalog.Dataset.negatives`): float32 (M, 28, 28, 1) pictures with no digit,
  drawn in MNIST's style, from a seed of their own per split;
- `manifest.json` (`write_manifest` writes the whole of it): `image_shape`, `val_size`, `seed`,
  `negatives` (the share), `sources` (the SHA-256 of every raw file), and `splits`: per split
  its `count`, `class_counts`, `pixel_mean` and `pixel_std`, `negatives` (their count, when
  drawn), and for train also `redrawn_pixel_mean`.

The arrays are `.npy` files so that training memory-maps them instead of loading them.
They are written with ordinary writes (`NpyWriter`), never through a memory map: a full
disk then fails a `write` with ENOSPC, which is reported, where a map's page fault would
kill the process with SIGBUS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from digitrec.catalog import IMAGE_SHAPE, NUM_CLASSES
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write_json

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
REDRAWN = "train_redrawn.npy"


def images_file(split: str) -> str:
    return f"{split}_images.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


WRITE_ROWS = 4096  # images normalised and written at a time


class NpyWriter:
    """A `.npy` file of a known dtype and shape, written a block of rows at a time with
    ordinary writes (so memory holds one block, and a full disk is an OSError)."""

    def __init__(self, file: BinaryIO, dtype: np.dtype, shape: tuple[int, ...]):
        self.file, self.dtype, self.shape = file, np.dtype(dtype), shape
        self.rows = 0
        np.lib.format.write_array_header_1_0(file, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": shape})

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"rows {rows.shape} do not fit {self.shape} after {self.rows}")
        self.file.write(rows.tobytes())
        self.rows += len(rows)


@contextmanager
def npy_writer(path: Path, dtype: Any, shape: tuple[int, ...]) -> Iterator[NpyWriter]:
    """`NpyWriter` on a new file at `path`; checks every row was written."""
    with open(path, "wb") as file:
        writer = NpyWriter(file, dtype, shape)
        yield writer
        if writer.rows != shape[0]:
            raise ValueError(f"{path}: {writer.rows} of {shape[0]} rows written")


def write_split(out_dir: Path, split: str, images: np.ndarray, labels: np.ndarray
                ) -> dict[str, Any]:
    """Write one split from uint8 pixels (normalised a block at a time, never held twice in
    memory) and return its manifest entry."""
    shape = (len(images), *IMAGE_SHAPE)
    with npy_writer(out_dir / images_file(split), np.float32, shape) as out:
        for start in range(0, len(images), WRITE_ROWS):
            block = images[start:start + WRITE_ROWS].reshape(-1, *IMAGE_SHAPE)
            out.write(np.multiply(block, np.float32(1 / 255), dtype=np.float32))
    np.save(out_dir / labels_file(split), labels)
    mean, std = pixel_stats(images)
    return {
        "count": int(len(labels)),
        "class_counts": np.bincount(labels, minlength=NUM_CLASSES).tolist(),
        "pixel_mean": mean,
        "pixel_std": std,
    }


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of the normalised pixels, exactly, from a histogram of the uint8 values."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    mean = float(counts @ values / total)
    var = float(counts @ values**2 / total) - mean**2
    return mean, float(np.sqrt(max(var, 0.0)))


def redrawn_writer(out_dir: Path, shape: tuple[int, ...]
                   ) -> AbstractContextManager[NpyWriter]:
    """The redrawn-digits file in `out_dir`, for the writer to fill in order."""
    return npy_writer(out_dir / REDRAWN, np.float32, shape)


def write_manifest(out_dir: Path, val_size: float | int, seed: int, sources: dict[str, str],
                   splits: dict[str, dict[str, Any]], redrawn_pixel_mean: float,
                   negatives: float = 0.0) -> dict[str, Any]:
    """Write `manifest.json` from its parts (`splits` as `write_split` returned them, each
    with its `negatives` count when they were drawn) and return it."""
    manifest: dict[str, Any] = {
        "image_shape": list(IMAGE_SHAPE),
        "val_size": val_size,
        "seed": seed,
        "negatives": negatives,
        "sources": sources,
        "splits": {**splits, "train": {**splits["train"],
                                       "redrawn_pixel_mean": redrawn_pixel_mean}},
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest


def load_split(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one prepared split: (images float32 (N, 28, 28, 1), labels uint8 (N,))."""
    images_path = prepared_dir / images_file(split)
    if not images_path.exists():
        raise DigitrecError(f"{images_path}: not found; run the prepare stage first")
    images = np.load(images_path, mmap_mode="r")
    labels = np.load(prepared_dir / labels_file(split))
    if len(labels) == 0:
        raise DigitrecError(f"{images_path}: the {split} split is empty; "
                            "run the prepare stage again")
    return images, labels


def load_redrawn(prepared_dir: Path) -> np.ndarray:
    """Memory-map the redrawn training digits (float32 (N, 28, 28, 1))."""
    path = prepared_dir / REDRAWN
    if not path.exists():
        raise DigitrecError(f"{path}: not found; run the prepare stage again")
    return np.load(path, mmap_mode="r")


def negatives_file(split: str) -> str:
    return f"{split}_negatives.npy"


def write_negatives(out_dir: Path, split: str, negatives: np.ndarray) -> None:
    """Write a split's negatives (pictures with no digit) as float32 (N, 28, 28, 1),
    through a temporary file so a failed write leaves what was there."""
    path = out_dir / negatives_file(split)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.asarray(negatives, dtype=np.float32).reshape(-1, *IMAGE_SHAPE))
    tmp.replace(path)


def load_negatives(prepared_dir: Path, split: str) -> np.ndarray:
    """Memory-map a split's negatives; an empty (0, 28, 28, 1) array when the dataset has
    none (Fashion-MNIST: every picture is some class, there is nothing to refuse)."""
    path = prepared_dir / negatives_file(split)
    if not path.exists():
        return np.zeros((0, *IMAGE_SHAPE), dtype=np.float32)
    return np.load(path, mmap_mode="r")
