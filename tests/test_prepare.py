import json
import shutil

import numpy as np
import pytest
from helpers import folder_digest, run_stage, synthetic_dataset_arrays, write_raw

from digitrec.catalog import TRAIN_IMAGES, TRAIN_LABELS
from digitrec.data import prepared
from digitrec.data import splits as prepare
from digitrec.errors import DigitrecError
from digitrec.reading import digit as digit_style


@pytest.fixture
def raw(tmp_path):
    arrays = synthetic_dataset_arrays(n_train=500, n_test=120)
    write_raw(tmp_path / "raw", arrays)
    return tmp_path / "raw", arrays


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory):
    """`raw`'s data prepared once (val_size 0.1, seed 1) for the tests that only read it:
    the folder, its manifest, and the arrays it came from."""
    folder = tmp_path_factory.mktemp("prepare")
    arrays = synthetic_dataset_arrays(n_train=500, n_test=120)
    write_raw(folder / "raw", arrays)
    manifest = prepare.prepare(folder / "raw", folder / "prepared", val_size=0.1, seed=1)
    return folder / "prepared", manifest, arrays


def test_stratified_split_keeps_class_shares_and_is_seeded():
    labels = np.repeat(np.arange(10, dtype=np.uint8), [50, 80, 30, 40, 60, 70, 20, 90, 55, 45])
    train, val = prepare.stratified_split(labels, 0.2, seed=3)
    assert len(val) == round(0.2 * len(labels))
    assert np.intersect1d(train, val).size == 0
    assert len(train) + len(val) == len(labels)
    expected = np.bincount(labels) * 0.2
    assert np.all(np.abs(np.bincount(labels[val], minlength=10) - expected) <= 1)

    again_train, again_val = prepare.stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    _, other_val = prepare.stratified_split(labels, 0.2, seed=4)
    assert not np.array_equal(val, other_val)


def test_val_size_as_a_count():
    labels = np.arange(100, dtype=np.uint8) % 10
    _, val = prepare.stratified_split(labels, 30, seed=0)
    assert len(val) == 30
    assert np.bincount(labels[val], minlength=10).tolist() == [3] * 10


def test_prepare_writes_normalised_arrays_and_a_correct_manifest(prepared_once):
    out, manifest, arrays = prepared_once
    assert json.loads((out / "manifest.json").read_text()) == manifest

    total = 0
    for split in prepared.SPLITS:
        images, labels = prepared.load_split(out, split)
        assert images.dtype == np.float32 and labels.dtype == np.uint8
        assert images.shape == (len(labels), 28, 28, 1)
        assert images.min() >= 0.0 and images.max() <= 1.0
        info = manifest["splits"][split]
        assert info["count"] == len(labels)
        assert info["class_counts"] == np.bincount(labels, minlength=10).tolist()
        assert info["pixel_mean"] == pytest.approx(float(np.mean(images, dtype=np.float64)))
        assert info["pixel_std"] == pytest.approx(float(np.std(images, dtype=np.float64)),
                                                  rel=1e-5)
        total += len(labels)
    assert manifest["splits"]["val"]["count"] == 50
    assert total == 500 + 120
    test_images, _ = prepared.load_split(out, "test")
    np.testing.assert_allclose(test_images[..., 0] * 255, arrays["t10k-images-idx3-ubyte"],
                               atol=1e-3)
    assert set(manifest["sources"]) == set(arrays)
    assert all(len(digest) == 64 for digest in manifest["sources"].values())
    # No negatives unless asked for (prepare.negatives; a dataset without any).
    assert not list(out.glob("*_negatives.npy")) and "negatives" not in manifest["splits"]["val"]
    assert prepared.load_negatives(out, "train").shape == (0, 28, 28, 1)


def test_prepare_writes_the_training_digits_redrawn_as_predict_draws_them(prepared_once,
                                                                         tmp_path):
    out = tmp_path / "prepared"
    shutil.copytree(prepared_once[0], out)  # a copy: this test removes a file from it
    manifest = prepared_once[1]
    train_images, _ = prepared.load_split(out, "train")
    redrawn = prepared.load_redrawn(out)
    assert redrawn.shape == train_images.shape and redrawn.dtype == np.float32
    for index in (0, 123, len(redrawn) - 1):
        np.testing.assert_array_equal(redrawn[index, ..., 0],
                                      digit_style.redraw(train_images[index, ..., 0]))
    assert manifest["splits"]["train"]["redrawn_pixel_mean"] == pytest.approx(
        float(redrawn.mean()))
    (out / prepared.REDRAWN).unlink()
    with pytest.raises(DigitrecError, match="train_redrawn.npy: not found; run the prepare"):
        prepared.load_redrawn(out)


def test_prepare_draws_each_splits_negatives_from_its_own_seed(raw, tmp_path):
    out = tmp_path / "prepared"
    manifest = prepare.prepare(raw[0], out, val_size=0.1, seed=1, negatives=0.3)
    sizes = {"train": 450, "val": 50, "test": 120}
    drawn = {}
    for split, size in sizes.items():
        negatives = prepared.load_negatives(out, split)
        assert negatives.shape == (round(0.3 * size), 28, 28, 1)
        assert negatives.dtype == np.float32
        assert negatives.min() >= 0 and negatives.max() <= 1 and negatives.max() > 0.5
        assert manifest["splits"][split]["negatives"] == len(negatives)
        drawn[split] = [array.tobytes() for array in negatives]
    assert manifest["negatives"] == 0.3
    # Held out: other pictures than training's (a few simple ones, such as a blank or a
    # face, can come out the same).
    for split in ("val", "test"):
        assert np.mean([picture in set(drawn["train"]) for picture in drawn[split]]) < 0.25
    again = tmp_path / "again"
    again.mkdir()
    prepare.draw_split_negatives(again, {"test": 36}, seed=1)
    np.testing.assert_array_equal(prepared.load_negatives(again, "test"),
                                  prepared.load_negatives(out, "test"))


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "expected"), [("mnist", 12), ("fashion_mnist", 0)])
def test_prepare_stage_draws_negatives_for_digits_only(project, dataset, expected):
    """Clothes have nothing to refuse: Fashion-MNIST gets no negatives."""
    write_raw(project.root / "data/raw", synthetic_dataset_arrays(n_train=100, n_test=40))
    project.set_params(dataset=dataset, prepare={"negatives": 0.3})
    summary = run_stage(project.root, "prepare").stdout  # in this process
    test_negatives = prepared.load_negatives(project.root / "data/prepared", "test")
    assert len(test_negatives) == expected
    assert ("and 42 negatives" in summary) == bool(expected)  # 27 + 3 + 12


def test_mismatched_counts_fail_and_keep_previous_output(raw, tmp_path, prepared_once):
    raw_dir, arrays = raw
    out = tmp_path / "prepared"
    shutil.copytree(prepared_once[0], out)  # what prepare made of this raw data before
    before = folder_digest(out)
    write_raw(raw_dir, {TRAIN_LABELS: arrays[TRAIN_LABELS][:-1]})
    with pytest.raises(DigitrecError, match="has 500 images but .* has 499 labels") as error:
        prepare.prepare(raw_dir, out, val_size=0.1, seed=1)
    assert TRAIN_IMAGES in str(error.value)
    assert folder_digest(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_label_outside_0_to_9_fails_clearly(raw, tmp_path):
    raw_dir, arrays = raw
    labels = arrays[TRAIN_LABELS].copy()
    labels[7] = 10
    write_raw(raw_dir, {TRAIN_LABELS: labels})
    with pytest.raises(DigitrecError, match="label 10 at index 7 is outside 0..9") as error:
        prepare.prepare(raw_dir, tmp_path / "prepared", val_size=0.1, seed=1)
    assert TRAIN_LABELS in str(error.value)
    assert not (tmp_path / "prepared").exists()


def test_images_must_be_28x28(raw, tmp_path):
    raw_dir, arrays = raw
    write_raw(raw_dir, {TRAIN_IMAGES: np.zeros((500, 32, 32), dtype=np.uint8)})
    with pytest.raises(DigitrecError, match="images are 32x32, expected 28x28"):
        prepare.prepare(raw_dir, tmp_path / "prepared", val_size=0.1, seed=1)


def test_a_missing_raw_file_is_one_clear_error(raw, tmp_path):
    raw_dir, _ = raw
    (raw_dir / TRAIN_LABELS).unlink()
    with pytest.raises(DigitrecError, match=f"{TRAIN_LABELS}: not found; run the download"):
        prepare.prepare(raw_dir, tmp_path / "prepared", val_size=0.1, seed=1)
