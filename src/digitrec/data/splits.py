"""Turn the raw IDX files into the prepared splits (the format: `digitrec.data.prepared`).

Checks that the files fit together and look like the dataset, carves a stratified, seeded
validation split off the training set, normalises, redraws the training digits as the
predict stage draws a user's picture, and draws each split's negatives (pictures with no
digit, `digitrec.data.negatives`). The whole folder is built beside the old one and
swapped in at the end, so a failure leaves the previous output untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from digitrec.catalog import (
    IMAGE_SIDE,
    NUM_CLASSES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
)
from digitrec.data import idx, prepared
from digitrec.errors import DigitrecError
from digitrec.files import (
    disk_errors,
    make_shareable,
    replace_dir,
    require_space,
    sha256_file,
    staging_dir,
)
from digitrec.parallel import parallel_map

REDRAW_CHUNK = 500
NEGATIVES_CHUNK = 500  # negatives drawn per task; each chunk has its own seed


def load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check they fit together and look like the dataset."""
    images = idx.read_idx(images_path, ndim=3)
    labels = idx.read_idx(labels_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DigitrecError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                            f"expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    if images.dtype != np.uint8:
        raise DigitrecError(f"{images_path}: pixels are {images.dtype}, expected uint8")
    if len(images) != len(labels):
        raise DigitrecError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DigitrecError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside "
            f"0..{NUM_CLASSES - 1} ({bad.size} such labels)"
        )
    return images, labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, val_size: float | int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) so every class keeps its share in both parts.

    `val_size` is a fraction (0 < x < 1) or a count of examples. Per-class counts are
    rounded by largest remainder so they add up to exactly the requested total. Both parts
    must hold at least one example.
    """
    n = len(labels)
    n_val = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if not 1 <= n_val < n:
        raise DigitrecError(f"prepare.val_size {val_size} gives {n_val} of {n} "
                            "training examples to validation; both splits need at least one")
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


def write_redrawn(out_dir: Path) -> float:
    """Redraw the train split already written in `out_dir` as `images.redraw` draws it,
    straight into its .npy file; return the redrawn pixel mean."""
    train, _ = prepared.load_split(out_dir, "train")
    starts = range(0, len(train), REDRAW_CHUNK)
    chunks = [np.array(train[start: start + REDRAW_CHUNK]) for start in starts]
    redrawn_chunks = parallel_map(_redraw_chunk, chunks, progress="prepare: redrawing")
    with prepared.redrawn_writer(out_dir, train.shape) as out:
        for redrawn in redrawn_chunks:
            out.write(redrawn)
    return float(prepared.load_redrawn(out_dir).mean())  # read-only map: no write faults


def _redraw_chunk(images: np.ndarray) -> np.ndarray:
    from digitrec.reading.digit import redraw  # SciPy and Pillow: only prepare needs them

    return np.stack([redraw(image[..., 0]) for image in images])[..., None]


def negative_seed(seed: int, split: str, chunk: int) -> int:
    """The seed of one chunk of a split's negatives: its own for every split (val and test
    hold pictures training never saw) and chunk (so the cores can share the drawing, and
    the pictures do not depend on how many there are)."""
    key = [seed, prepared.SPLITS.index(split), chunk]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def draw_split_negatives(out_dir: Path, counts: dict[str, int], seed: int) -> None:
    """Draw `counts[split]` negatives for each split, in chunks over the cores, and write
    them as `{split}_negatives.npy`."""
    tasks = [(split, chunk, min(NEGATIVES_CHUNK, count - start))
             for split, count in counts.items()
             for chunk, start in enumerate(range(0, count, NEGATIVES_CHUNK))]
    drawn = parallel_map(_draw_chunk, [(size, negative_seed(seed, split, chunk))
                                       for split, chunk, size in tasks],
                         progress="prepare: drawing negatives")
    for split in counts:
        parts = [images for (of, _, _), images in zip(tasks, drawn, strict=True)
                 if of == split]
        images = np.concatenate(parts) if parts else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE))
        prepared.write_negatives(out_dir, split, images)


def _draw_chunk(task: tuple[int, int]) -> np.ndarray:
    from digitrec.data.negatives import draw_negatives  # fonts and Pillow: only prepare

    count, seed = task
    return draw_negatives(count, seed)


def prepare(raw_dir: Path, out_dir: Path, val_size: float | int, seed: int,
            negatives: float = 0.0) -> dict[str, Any]:
    """Validate the raw files, split, normalise and write everything; return the manifest.

    `negatives` is the share of each split's digits drawn again as negatives (0: none, and
    no negatives files, as for a dataset with nothing to refuse)."""
    train_x, train_y = load_pair(raw_dir / TRAIN_IMAGES, raw_dir / TRAIN_LABELS)
    test_x, test_y = load_pair(raw_dir / TEST_IMAGES, raw_dir / TEST_LABELS)
    train_idx, val_idx = stratified_split(train_y, val_size, seed)
    splits = {
        "train": (train_x[train_idx], train_y[train_idx]),
        "val": (train_x[val_idx], train_y[val_idx]),
        "test": (test_x, test_y),
    }
    sources = {name: sha256_file(raw_dir / name)
               for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)}
    counts = {split: round(negatives * len(labels)) for split, (_, labels) in splits.items()}
    needed = _bytes_needed(splits, counts)
    require_space(out_dir, needed)
    with staging_dir(out_dir) as staging, disk_errors(out_dir, needed=needed):
        written = {split: prepared.write_split(staging, split, images, labels)
                   for split, (images, labels) in splits.items()}
        if negatives > 0:
            draw_split_negatives(staging, counts, seed)
            written = {split: {**entry, "negatives": counts[split]}
                       for split, entry in written.items()}
        manifest = prepared.write_manifest(staging, val_size, seed, sources, written,
                                           redrawn_pixel_mean=write_redrawn(staging),
                                           negatives=negatives)
        make_shareable(staging, directory=True)
        replace_dir(staging, out_dir)
    return manifest


def _bytes_needed(splits: dict[str, tuple[np.ndarray, np.ndarray]],
                  negatives: dict[str, int]) -> int:
    """What the prepared folder takes: float32 images of every split, the redrawn training
    digits and the negatives, plus labels (the old folder stays until the swap)."""
    pixel = 4 * IMAGE_SIDE * IMAGE_SIDE
    digits = sum(len(labels) for _, labels in splits.values())
    return (pixel * (digits + len(splits["train"][1]) + sum(negatives.values()))
            + digits + 64 * 1024)
