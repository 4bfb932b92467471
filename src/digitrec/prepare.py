"""Turn the raw IDX files into normalised, memory-mappable arrays and a manifest.

Output, in `data/prepared/`: `{train,val,test}_images.npy` (float32, (N, 28, 28, 1), values in
[0, 1]), `{split}_labels.npy` (uint8), `train_redrawn.npy` (the training digits redrawn as the
predict stage draws a user's picture, see `images.redraw`) and `manifest.json` (counts, class
counts, pixel mean and std per split, SHA-256 of the source files). The whole folder is built
beside the old one and swapped in at the end, so a failure leaves the previous output untouched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from digitrec import idx
from digitrec.datasets import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write_json, make_shareable, sha256_file
from digitrec.parallel import parallel_map

NUM_CLASSES = 10
IMAGE_SIDE = 28
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
REDRAWN = "train_redrawn.npy"
REDRAW_CHUNK = 1000


def images_file(split: str) -> str:
    return f"{split}_images.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


def load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check they fit together and look like digits."""
    images = idx.read_idx(images_path, ndim=3)
    labels = idx.read_idx(labels_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DigitrecError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if images.dtype != np.uint8:
        raise DigitrecError(f"{images_path}: pixels are {images.dtype}, expected uint8")
    if len(images) != len(labels):
        raise DigitrecError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DigitrecError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..9 "
            f"({bad.size} such labels)"
        )
    return images, labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, val_size: float | int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) so every class keeps its share in both parts.

    `val_size` is a fraction (0 < x < 1) or a count of examples. Per-class counts are
    rounded by largest remainder so they add up to exactly the requested total.
    """
    n = len(labels)
    n_val = round(val_size * n) if 0 < val_size < 1 else int(val_size)
    if not 0 <= n_val < n:
        raise DigitrecError(f"params.yaml: prepare.val_size {val_size} does not fit {n} examples")
    rng = np.random.default_rng(seed)
    class_counts = np.bincount(labels, minlength=NUM_CLASSES)
    quota = class_counts * (n_val / n)
    per_class = np.floor(quota).astype(int)
    shortfall = n_val - per_class.sum()
    per_class[np.argsort(-(quota - per_class), kind="stable")[:shortfall]] += 1
    val_parts = []
    for digit in range(NUM_CLASSES):
        members = np.flatnonzero(labels == digit)
        val_parts.append(rng.permutation(members)[: per_class[digit]])
    val = np.sort(np.concatenate(val_parts))
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return train, val


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


def write_split(out_dir: Path, split: str, images: np.ndarray, labels: np.ndarray
                ) -> dict[str, Any]:
    """Write one split's arrays (normalised straight into the .npy file) and return its stats."""
    shape = (len(images), IMAGE_SIDE, IMAGE_SIDE, 1)
    array = np.lib.format.open_memmap(out_dir / images_file(split), mode="w+",
                                      dtype=np.float32, shape=shape)
    np.multiply(images.reshape(shape), np.float32(1 / 255), out=array, dtype=np.float32)
    array.flush()
    del array
    np.save(out_dir / labels_file(split), labels)
    mean, std = pixel_stats(images)
    return {
        "count": int(len(labels)),
        "class_counts": np.bincount(labels, minlength=NUM_CLASSES).tolist(),
        "pixel_mean": mean,
        "pixel_std": std,
    }


def write_redrawn(out_dir: Path) -> float:
    """Redraw the train split already written in `out_dir` as `images.redraw` draws it,
    straight into its .npy file; return the redrawn pixel mean."""
    train = np.load(out_dir / images_file("train"), mmap_mode="r")
    array = np.lib.format.open_memmap(out_dir / REDRAWN, mode="w+", dtype=np.float32,
                                      shape=train.shape)
    starts = range(0, len(train), REDRAW_CHUNK)
    chunks = [np.array(train[start: start + REDRAW_CHUNK]) for start in starts]
    for start, redrawn in zip(starts, parallel_map(_redraw_chunk, chunks), strict=True):
        array[start: start + len(redrawn)] = redrawn
    mean = float(array.mean())
    array.flush()
    del array
    return mean


def _redraw_chunk(images: np.ndarray) -> np.ndarray:
    from digitrec.images import redraw  # SciPy and Pillow: only prepare needs them here

    return np.stack([redraw(image[..., 0]) for image in images])[..., None]


def prepare(raw_dir: Path, out_dir: Path, val_size: float | int, seed: int) -> dict[str, Any]:
    """Validate the raw files, split, normalise and write everything; return the manifest."""
    train_x, train_y = load_pair(raw_dir / TRAIN_IMAGES, raw_dir / TRAIN_LABELS)
    test_x, test_y = load_pair(raw_dir / TEST_IMAGES, raw_dir / TEST_LABELS)
    train_idx, val_idx = stratified_split(train_y, val_size, seed)
    splits = {
        "train": (train_x[train_idx], train_y[train_idx]),
        "val": (train_x[val_idx], train_y[val_idx]),
        "test": (test_x, test_y),
    }
    manifest: dict[str, Any] = {
        "image_shape": [IMAGE_SIDE, IMAGE_SIDE, 1],
        "val_size": val_size,
        "seed": seed,
        "sources": {
            name: sha256_file(raw_dir / name)
            for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
        },
        "splits": {},
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        for split, (images, labels) in splits.items():
            manifest["splits"][split] = write_split(staging, split, images, labels)
        manifest["splits"]["train"]["redrawn_pixel_mean"] = write_redrawn(staging)
        atomic_write_json(staging / MANIFEST, manifest)
        make_shareable(staging, directory=True)
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is, keeping the old one until the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_split(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one prepared split: (images float32 (N, 28, 28, 1), labels uint8 (N,))."""
    images_path = prepared_dir / images_file(split)
    if not images_path.exists():
        raise DigitrecError(f"{images_path}: not found; run the prepare stage first")
    images = np.load(images_path, mmap_mode="r")
    labels = np.load(prepared_dir / labels_file(split))
    return images, labels


def load_redrawn(prepared_dir: Path) -> np.ndarray:
    """Memory-map the redrawn training digits (float32 (N, 28, 28, 1))."""
    path = prepared_dir / REDRAWN
    if not path.exists():
        raise DigitrecError(f"{path}: not found; run the prepare stage again")
    return np.load(path, mmap_mode="r")


def stage(params: dict[str, Any]) -> str:
    """Split and normalise data/raw/ into data/prepared/ (the `prepare` stage)."""
    from digitrec.config import PREPARED_DIR, RAW_DIR, section

    options = section(params, "prepare")
    manifest = prepare(RAW_DIR, PREPARED_DIR, options["val_size"], int(options["seed"]))
    counts = ", ".join(f"{s} {manifest['splits'][s]['count']}" for s in SPLITS)
    return f"prepare: {counts} images in {PREPARED_DIR}/"
