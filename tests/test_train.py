import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import kill_once_backed_up, run_stage, synthetic_dataset_arrays, write_raw

from digitrec.data import splits as prepare
from digitrec.errors import DigitrecError
from digitrec.params import Augment, TrainParams, read_params
from digitrec.schema import parse_section

TINY_TRAIN = {"model": "digitnet", "epochs": 2, "batch_size": 64, "learning_rate": 0.004,
              "checkpoint_every": 1, "keep_checkpoints": 3, "seed": 3}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A small raw and prepared dataset, made once for the module's projects."""
    data = tmp_path_factory.mktemp("train_data")
    write_raw(data / "raw", synthetic_dataset_arrays(n_train=600, n_test=200))
    prepare.prepare(data / "raw", data / "prepared", val_size=0.2, seed=0, negatives=0.3)
    return data


@pytest.fixture
def trained_project(project, small_data):
    """The project copy with a small prepared dataset (negatives included) and tiny
    training params."""
    for name in ("raw", "prepared"):
        shutil.copytree(small_data / name, project.root / "data" / name)
    project.set_params(train=TINY_TRAIN)
    return project


def train_stage(project, check=True):
    """`python stages/train.py` in the project, run in this process (see run_stage)."""
    return run_stage(project.root, "train", check=check)


def tsv_rows(project, name):
    path = project.root / "metrics/train/plots/metrics" / name
    return path.read_text().strip().splitlines()[1:]


@pytest.mark.slow
def test_stage_trains_and_writes_model_checkpoints_and_logs(trained_project):
    project = trained_project
    project.set_params(train={"epochs": 3, "checkpoint_every": 1, "keep_checkpoints": 2})
    result = train_stage(project)
    assert "Epoch 1/3" in result.stdout and "Epoch 3/3" in result.stdout
    assert "train: digitnet (66,778 parameters), 3 epochs" in result.stdout
    # Outlier exposure (train.negatives 0.2): more steps than the 480 digits alone fill
    # (8 of 64), so that an epoch is still one pass over the digits.
    assert "\n10/10 - " in result.stdout
    checkpoints = sorted(p.name for p in (project.root / "models/checkpoints").iterdir())
    assert checkpoints == ["epoch-002.keras", "epoch-003.keras"]
    assert len(tsv_rows(project, "train/loss.tsv")) == 3
    assert len(tsv_rows(project, "val/accuracy.tsv")) == 3
    metrics = json.loads((project.root / "metrics/train/metrics.json").read_text())
    assert metrics["parameter_count"] == 66_778
    assert metrics["step"] == 3  # the epoch number
    step, logged = tsv_rows(project, "val/accuracy.tsv")[-1].split("\t")
    assert (int(step), metrics["val"]["accuracy"]) == (3, pytest.approx(float(logged)))
    assert f"val accuracy {metrics['val']['accuracy']:.4f}" in result.stdout
    assert not (project.root / "models/.backup").exists()
    # Calibrated: the last epoch's weights with the temperature fit on the val digits
    # baked in (logged and printed); label smoothing leaves a short run far from 1.
    temperature = metrics["temperature"]
    assert f"temperature {temperature:.3f}" in result.stdout
    assert abs(temperature - 1) > 0.01
    _, gap = calibrated_against_checkpoint(project, "epoch-003.keras", temperature)
    assert gap < 1e-5

    # Loadable with Keras alone, and it reads the synthetic digits it learned.
    check = (
        "import sys, numpy as np, keras\n"
        "m = keras.models.load_model('models/model.keras')\n"
        "x = np.load('data/prepared/test_images.npy')\n"
        "y = np.load('data/prepared/test_labels.npy')\n"
        "p = m.predict(x, verbose=0)\n"
        "assert p.shape == (len(x), 10) and np.allclose(p.sum(1), 1, atol=1e-4)\n"
        "assert 'digitrec' not in sys.modules\n"
        "print((p.argmax(1) == y).mean())\n"
    )
    accuracy = float(project.run(sys.executable, "-c", check).stdout.strip())
    assert accuracy > 0.5


@pytest.mark.slow
def test_logged_validation_and_checkpoints_describe_the_saved_model(trained_project):
    """With the moving average of the weights on, the saved model holds the average: the
    logged validation numbers and the checkpoints must come from the same weights."""
    project = trained_project
    project.set_params(train={"epochs": 2, "checkpoint_every": 1, "ema": True})
    summary = train_stage(project).stdout
    logged = json.loads((project.root / "metrics/train/metrics.json").read_text())
    saved_accuracy, checkpoint_gap = calibrated_against_checkpoint(
        project, "epoch-002.keras", logged["temperature"])
    assert logged["val"]["accuracy"] == pytest.approx(saved_accuracy, abs=1e-6)
    assert f"val accuracy {saved_accuracy:.4f}" in summary
    assert checkpoint_gap < 1e-5  # the last checkpoint holds the saved weights, uncalibrated


def calibrated_against_checkpoint(project, checkpoint: str, temperature: float
                                  ) -> tuple[float, float]:
    """The saved model's val accuracy, and how far its probabilities are from the
    checkpoint's calibrated by hand, softmax(log(q) / T). (Loaded in this process: that
    Keras alone loads the model is test_stage_trains_and_writes_model_checkpoints_and_logs'.)"""
    from digitrec.backend import keras

    x = np.load(project.root / "data/prepared/val_images.npy")
    y = np.load(project.root / "data/prepared/val_labels.npy")
    saved = keras.models.load_model(project.root / "models/model.keras")
    last = keras.models.load_model(project.root / "models/checkpoints" / checkpoint)
    p = saved.predict(x, verbose=0)
    q = last.predict(x, verbose=0).astype(np.float64)
    z = np.log(np.maximum(q, 1e-45)) / temperature
    e = np.exp(z - z.max(1, keepdims=True))
    e /= e.sum(1, keepdims=True)
    return float((p.argmax(1) == y).mean()), float(np.abs(p - e).max())


EARLIER_OUTPUTS = {"models/model.keras": b"PK\x03\x04 the model of an earlier run",
                   "models/checkpoints/epoch-005.keras": b"its checkpoint",
                   "metrics/train/metrics.json": b'{"val": {"accuracy": 0.5}}\n',
                   "metrics/train/plots/metrics/val/accuracy.tsv": b"step\taccuracy\n1\t0.5\n"}


def write_earlier_outputs(project) -> None:
    for name, content in EARLIER_OUTPUTS.items():
        (project.root / name).parent.mkdir(parents=True, exist_ok=True)
        (project.root / name).write_bytes(content)


def assert_earlier_outputs_kept(project) -> None:
    for name, content in EARLIER_OUTPUTS.items():
        assert (project.root / name).read_bytes() == content, name


@pytest.mark.slow
def test_failed_train_under_dvc_repro_keeps_the_previous_outputs(trained_project):
    """DVC deletes a stage's outputs before it runs it, unless they persist."""
    project = trained_project
    write_earlier_outputs(project)
    project.set_params(train={"model": "resnet"})
    result = project.dvc("repro", "--single-item", "train", check=False)
    assert result.returncode != 0
    assert ("error: params.yaml: train.model: expected auto, or one of"
            in result.stdout + result.stderr)
    assert_earlier_outputs_kept(project)


def test_a_diverged_loss_stops_training_with_a_clear_error():
    from digitrec.training.callbacks import StopOnNonFiniteLoss

    stop = StopOnNonFiniteLoss()
    stop.on_epoch_end(1, {"loss": 0.3})
    for value in (float("nan"), float("inf")):
        with pytest.raises(DigitrecError, match="training diverged: the loss became .* in "
                                                "epoch 3; lower train.learning_rate"):
            stop.on_epoch_end(2, {"loss": value})


def run_until_killed(project, min_epochs):
    """Start training in its own process, SIGKILL it once `min_epochs` are backed up;
    return epochs backed up."""
    process = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project.root,
                               env=project.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    backups = project.root / "models/.backup"
    try:
        kill_once_backed_up(process, backups, min_epochs)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    (metadata,) = backups.glob("*/training_metadata.json")
    return json.loads(metadata.read_text())["epoch"]


RUN_EPOCHS = 6  # killed after 2: enough left that the kill comes mid-run


@pytest.mark.slow
def test_killed_run_keeps_the_previous_outputs_and_resumes_at_the_right_epoch(
        trained_project):
    """The run replaces its outputs only when it is complete: killed, it leaves the
    previous model, logs and checkpoints; run again, it goes on from its last backup."""
    project = trained_project
    write_earlier_outputs(project)
    project.set_params(train={"epochs": RUN_EPOCHS, "checkpoint_every": 3})
    done = run_until_killed(project, min_epochs=2)
    assert_earlier_outputs_kept(project)
    assert 2 <= done < RUN_EPOCHS
    result = train_stage(project)
    assert f"Resuming from epoch {done + 1}/{RUN_EPOCHS}" in result.stdout
    assert f"Epoch 1/{RUN_EPOCHS}" not in result.stdout
    assert f"Epoch {done + 1}/{RUN_EPOCHS}" in result.stdout
    assert len(tsv_rows(project, "train/loss.tsv")) == RUN_EPOCHS
    assert [row.split("\t")[0] for row in tsv_rows(project, "val/loss.tsv")] == [
        str(epoch) for epoch in range(1, RUN_EPOCHS + 1)]
    assert (project.root / "models/model.keras").read_bytes()[:4] == b"PK\x03\x04"
    assert (project.root / "models/model.keras").read_bytes() != EARLIER_OUTPUTS[
        "models/model.keras"]
    assert {"epoch-003.keras", "epoch-006.keras"} <= {
        p.name for p in (project.root / "models/checkpoints").iterdir()}


@pytest.mark.slow
def test_changed_params_start_fresh(trained_project):
    project = trained_project
    project.set_params(train={"epochs": RUN_EPOCHS})
    run_until_killed(project, min_epochs=1)
    project.set_params(train={"learning_rate": 0.002, "epochs": 2})
    result = train_stage(project)
    assert "Resuming" not in result.stdout
    assert "Starting fresh" in result.stdout
    assert "Epoch 1/2" in result.stdout


@pytest.mark.slow
def test_checkpoint_every_n_epochs_and_the_same_seed_gives_identical_metrics(trained_project):
    project = trained_project
    project.set_params(train={"epochs": 4, "checkpoint_every": 2, "keep_checkpoints": 5})
    train_stage(project)
    checkpoints = sorted(p.name for p in (project.root / "models/checkpoints").iterdir())
    assert checkpoints == ["epoch-002.keras", "epoch-004.keras"]
    first = (project.root / "metrics/train/metrics.json").read_text()
    first_curve = tsv_rows(project, "val/accuracy.tsv")
    assert len(first_curve) == 4
    train_stage(project)
    assert (project.root / "metrics/train/metrics.json").read_text() == first
    assert tsv_rows(project, "val/accuracy.tsv") == first_curve


@pytest.mark.slow
def test_bad_train_params_are_one_clear_error(trained_project):
    project = trained_project
    project.set_params(train={"model": "resnet"})
    result = train_stage(project, check=False)
    assert result.returncode == 1
    assert "error: params.yaml: train.model: expected auto, or one of" in result.stderr
    assert "Traceback" not in result.stderr


def train_section(**changes):
    return {**{f: getattr(TrainParams(), f) for f in TrainParams.__dataclass_fields__},
            "augment": True, **changes}


def read_train(tmp_path, dataset: str, **changes) -> TrainParams:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset, "train": train_section(**changes)}))
    return read_params("train", path=path).train


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_label_smoothing_outside_0_to_1_is_refused(tmp_path, smoothing):
    with pytest.raises(DigitrecError, match="train.label_smoothing: expected a share from 0"):
        read_train(tmp_path, "mnist", label_smoothing=smoothing)


def test_config_from_params_reads_augment_forms():
    assert parse_section(TrainParams, train_section(augment=False), "train").augment is None
    shifted = parse_section(TrainParams, train_section(augment={"shift": 1}), "train")
    assert shifted.augment == Augment(shift=1.0)
    with pytest.raises(DigitrecError, match="unknown setting train.epochz"):
        parse_section(TrainParams, train_section(epochz=3), "train")
    with pytest.raises(DigitrecError, match="unknown setting train.augment.shear"):
        parse_section(TrainParams, train_section(augment={"shear": 5}), "train")


@pytest.mark.parametrize("augment, expected", [
    (True, dict(redrawn=0.0, flip=True, rotation=0.0, shift=0.0, zoom=0.0)),
    ({"rotation": 5, "redrawn": 0.2}, dict(redrawn=0.2, flip=True, rotation=5, shift=0.0)),
    ({"flip": False}, dict(redrawn=0.0, flip=False)),
])
def test_a_dataset_style_fills_what_params_leave_out(tmp_path, augment, expected):
    config = read_train(tmp_path, "fashion_mnist", augment=augment)
    assert {name: getattr(config.augment, name) for name in expected} == expected
    assert read_train(tmp_path, "fashion_mnist", augment=False).augment is None
    digits = read_train(tmp_path, "mnist", augment=True)
    assert digits.augment == Augment() == TrainParams().augment
    assert digits.augment.redrawn == 0.5 and not digits.augment.flip


def test_auto_is_the_datasets_own_model_and_that_models_epochs_and_rate(tmp_path):
    auto = {"model": "auto", "epochs": "auto", "learning_rate": "auto"}
    digits = read_train(tmp_path, "mnist", **auto)
    assert (digits.model, digits.epochs, digits.learning_rate) == ("digitnet", 7, 0.03)
    clothes = read_train(tmp_path, "fashion_mnist", **auto)
    assert (clothes.model, clothes.epochs, clothes.learning_rate) == ("fashionnet", 12, 0.01)
    tutorial = read_train(tmp_path, "fashion_mnist", **{**auto, "model": "cnn3"})
    assert (tutorial.model, tutorial.epochs, tutorial.learning_rate) == ("cnn3", 5, 1e-3)
    chosen = read_train(tmp_path, "mnist", model="digitnet_wide", epochs=3, learning_rate=0.1)
    assert (chosen.model, chosen.epochs, chosen.learning_rate) == ("digitnet_wide", 3, 0.1)
    with pytest.raises(DigitrecError,
                       match="train.model: expected auto, or one of digitnet.*got 'resnet'"):
        read_train(tmp_path, "mnist", **{**auto, "model": "resnet"})
    with pytest.raises(DigitrecError, match="train.epochs: expected auto, or a whole number"):
        read_train(tmp_path, "mnist", epochs="automatic")


def test_every_model_has_a_recipe_for_auto():
    from dataclasses import asdict

    from digitrec.catalog import DATASETS, MODEL_RECIPES
    from digitrec.training import models

    assert set(MODEL_RECIPES) == set(models.REGISTRY)
    assert {dataset.model for dataset in DATASETS.values()} <= set(models.REGISTRY)
    for name, recipe in MODEL_RECIPES.items():
        parse_section(TrainParams, train_section(model=name, **asdict(recipe)), "train")


def test_flip_mirrors_about_half_of_the_images():
    from digitrec.backend import tf
    from digitrec.training.input import augment_batch

    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 3:9] = 1.0  # a bar on the left
    seed = tf.constant([1, 2], tf.int64)
    out = augment_batch(tf.constant(images), seed, 0.0, 0.0, 0.0, flip=True).numpy()
    mirrored = [np.array_equal(o, images[0, :, ::-1]) for o in out]
    kept = [np.array_equal(o, images[0]) for o in out]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))
    assert 16 <= sum(mirrored) <= 48
    np.testing.assert_array_equal(
        out, augment_batch(tf.constant(images), seed, 0.0, 0.0, 0.0, flip=True).numpy())
    assert np.array_equal(augment_batch(tf.constant(images), seed, 0.0, 0.0, 0.0).numpy(),
                          images)


def test_redrawn_share_picks_a_version_per_image_anew_every_epoch():
    from digitrec.training.input import training_dataset

    count = 64
    originals = np.zeros((count, 28, 28, 1), np.float32)
    redrawn = np.ones((count, 28, 28, 1), np.float32)
    ids = np.arange(count)  # as labels, to follow each image

    def shown(share: float) -> np.ndarray:
        """Per epoch (rows) and image id (columns): 1 where the redrawn version was shown."""
        augment = Augment(shift=0, rotation=0, zoom=0, redrawn=share)
        stream = training_dataset(originals, ids, 32, seed=3, augment=augment, redrawn=redrawn)
        choice = np.zeros((3, count))
        for step, (batch, labels) in enumerate(stream.take(3 * 2)):
            choice[step // 2, labels.numpy()] = batch.numpy()[:, 0, 0, 0]
        return choice

    assert not shown(0.0).any() and shown(1.0).all()
    half = shown(0.5)
    assert 0.35 < half.mean() < 0.65
    assert not np.array_equal(half[0], half[1])
    np.testing.assert_array_equal(half, shown(0.5))
    with pytest.raises(DigitrecError, match="train.augment.redrawn: expected a share"):
        parse_section(TrainParams, train_section(augment={"redrawn": 1.5}), "train")


def test_augmentation_moves_pixels_but_keeps_the_digit():
    from digitrec.backend import tf
    from digitrec.training.input import augment_batch

    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 10:18, 12:16] = 1.0
    moved = augment_batch(tf.constant(image), tf.constant([1, 2], tf.int64), 2.0, 10.0, 0.1)
    moved = moved.numpy()
    assert moved.shape == image.shape
    assert not np.allclose(moved, image)
    assert abs(moved.sum() - image.sum()) / image.sum() < 0.3
    again = augment_batch(tf.constant(image), tf.constant([1, 2], tf.int64), 2.0, 10.0, 0.1)
    np.testing.assert_array_equal(moved, again.numpy())
    assert np.array_equal(
        augment_batch(tf.constant(image), tf.constant([1, 2], tf.int64), 0.0, 0.0, 0.0).numpy(),
        image)


@pytest.mark.slow
def test_a_damaged_backup_is_dropped_with_a_warning(trained_project):
    project = trained_project
    project.set_params(train={"epochs": 4})
    run_until_killed(project, min_epochs=1)
    (weights,) = (project.root / "models/.backup").glob("*/latest.weights.h5")
    with open(weights, "r+b") as f:  # cut short, as a kill while Keras wrote it leaves it
        f.truncate(1000)
    result = train_stage(project)
    assert "is damaged" in result.stderr and "starting fresh" in result.stderr
    assert "Epoch 1/4" in result.stdout and "Resuming" not in result.stdout


def test_history_of_a_run_whose_backup_held_every_epoch():
    """Killed after the last epoch's backup: the rerun trains nothing and keeps the history."""
    from digitrec.training.resume import merge_history

    earlier = [{"loss": 0.5, "val_accuracy": 0.8}, {"loss": 0.4, "val_accuracy": 0.9}]
    assert merge_history(earlier, {}) == {"loss": [0.5, 0.4], "val_accuracy": [0.8, 0.9]}
    assert merge_history(earlier, {"loss": [0.3], "val_accuracy": [0.95]})["loss"] == [
        0.5, 0.4, 0.3]
    assert merge_history([], {"loss": [0.3]}) == {"loss": [0.3]}


def test_negatives_are_mixed_in_at_their_share_with_uniform_targets():
    from digitrec.training.input import NEGATIVE, epoch_steps, target_rows, training_dataset

    digits = np.zeros((200, 28, 28, 1), np.float32)
    negatives = np.ones((50, 28, 28, 1), np.float32)
    labels = np.arange(200) % 10
    augment = Augment(shift=0, rotation=0, zoom=0, redrawn=0)

    def stream(share: float, skip_epochs: int = 0):
        return training_dataset(digits, labels, 40, seed=1, augment=augment,
                                negatives=negatives, negative_share=share,
                                skip_epochs=skip_epochs)

    batches = [(x.numpy(), y.numpy()) for x, y in stream(0.25).take(20)]
    shown = np.concatenate([y for _, y in batches])
    assert all(len(y) == 40 for _, y in batches)  # no short batch at an epoch's end
    assert 0.18 < np.mean(shown == NEGATIVE) < 0.32
    for x, y in batches:  # each negative's picture goes with its label
        np.testing.assert_array_equal(x[:, 0, 0, 0], (y == NEGATIVE).astype(np.float32))
    again = [y.numpy() for _, y in stream(0.25).take(20)]
    np.testing.assert_array_equal(np.concatenate(again), shown)  # seeded
    off = np.concatenate([y.numpy() for _, y in stream(0.0).take(10)])
    assert not (off == NEGATIVE).any()
    assert epoch_steps(200, 40) == 5 and epoch_steps(200, 40, negative_share=0.25) == 7
    resumed = np.concatenate([y.numpy() for _, y in stream(0.25, skip_epochs=2).take(6)])
    np.testing.assert_array_equal(resumed, shown[2 * 7 * 40:])  # where a resumed run goes on

    images, targets = next(iter(target_rows(stream(0.25))))
    targets, labels_shown = targets.numpy(), batches[0][1]
    np.testing.assert_allclose(targets[labels_shown == NEGATIVE], 0.1)
    digit_rows = targets[labels_shown != NEGATIVE]
    np.testing.assert_array_equal(digit_rows.argmax(1), labels_shown[labels_shown != NEGATIVE])
    assert (digit_rows.max(1) == 1).all()


def test_digit_accuracy_counts_digits_only():
    from digitrec.training.recipe import DigitAccuracy

    targets = np.zeros((4, 10), np.float32)
    targets[0, 3] = targets[1, 5] = 1.0
    targets[2:] = 0.1  # negatives, whose argmax would be 0
    predicted = np.zeros((4, 10), np.float32)
    predicted[[0, 1, 2, 3], [3, 2, 0, 0]] = 1.0  # one digit right; negatives "read" as 0
    metric = DigitAccuracy()
    metric.update_state(targets, predicted)
    assert float(metric.result()) == pytest.approx(0.5)


@pytest.mark.slow
def test_a_full_models_folder_is_one_error_line_and_leaves_nothing(trained_project):
    """As found: a 500 KB file system under models/ made the stage print h5py tracebacks
    and die by SIGSEGV, its half-written backup filling the disk."""
    models = trained_project.root / "models"
    models.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=500k", "tmpfs", str(models)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        result = trained_project.run(sys.executable, "stages/train.py", check=False)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error: models: cannot write: no space left on the "
                                        "file system (needs more than ")
        assert result.stderr.count("\n") == 1, result.stderr
        assert list(models.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(models)], capture_output=True)
