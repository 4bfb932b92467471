"""Training across processes: two real workers on 127.0.0.1, talking gRPC, as on two machines.

Each worker runs the train stage in its own copy of the project (its own "machine"), with
`train.strategy: multi_worker` and its own `TF_CONFIG`.
"""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    kill_once_backed_up,
    local_tf_configs,
    run_stage,
    synthetic_dataset_arrays,
    write_raw,
)

from digitrec.data import splits as prepare
from digitrec.errors import DigitrecError

TRAIN = {"model": "digitnet", "epochs": 3, "batch_size": 64, "learning_rate": 0.03,
         "checkpoint_every": 1, "keep_checkpoints": 3, "seed": 3}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A small raw and prepared dataset, made once for the module's machines."""
    data = tmp_path_factory.mktemp("multiworker_data")
    write_raw(data / "raw", synthetic_dataset_arrays(n_train=600, n_test=300))
    prepare.prepare(data / "raw", data / "prepared", val_size=0.2, seed=0,
                    negatives=0.3)  # each worker mixes its share of them in
    return data


@pytest.fixture
def machines(project, tmp_path, small_data):
    """Two copies of a project with the same prepared data: the chief's and a worker's."""
    for name in ("raw", "prepared"):
        shutil.copytree(small_data / name, project.root / "data" / name)
    project.set_params(train={**TRAIN, "strategy": "multi_worker"})
    second = tmp_path / "second-machine"
    shutil.copytree(project.root, second)
    for root in (project.root, second):
        (root / "tmp").mkdir()  # each worker's TMPDIR, to see what it leaves behind
    return project.root, second


def start_workers(roots: tuple[Path, ...], env: dict[str, str]) -> list[subprocess.Popen]:
    workers = []
    for root, tf_config in zip(roots, local_tf_configs(len(roots)), strict=True):
        workers.append(subprocess.Popen(
            [sys.executable, "stages/train.py"], cwd=root, text=True,
            env={**env, "TF_CONFIG": tf_config, "TMPDIR": str(root / "tmp")},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ))
    return workers


def finish(workers: list[subprocess.Popen]) -> list[str]:
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    return outputs


def test_accuracy(root: Path, split: str = "test") -> float:
    """The accuracy of the project's saved model on one prepared split (loaded by Keras)."""
    from digitrec.backend import keras

    model = keras.models.load_model(root / "models/model.keras")
    x = np.load(root / f"data/prepared/{split}_images.npy")
    y = np.load(root / f"data/prepared/{split}_labels.npy")
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


test_accuracy.__test__ = False  # a helper, not a test


KILLED_RUN_EPOCHS = 5  # killed after 2: enough left that the kill comes mid-run


@pytest.mark.slow
def test_killed_worker_then_restarted_job_resumes_as_good_as_one_process(machines, project):
    """A machine dies mid-run: the chief says so in one line and stops; the job started
    again on both resumes from the last completed epoch, the chief alone writes outputs,
    and the model is as good as the same global batch trained in one process. (One cluster
    run serves the resume and the two-worker training checks: each costs two TF startups.)"""
    chief, second = machines
    project.set_params(train={"epochs": KILLED_RUN_EPOCHS})
    project.__class__(second, project.env).set_params(train={"epochs": KILLED_RUN_EPOCHS})
    workers = start_workers((chief, second), project.env)
    backups = chief / "models/.backup"
    try:
        # a machine dies once the chief has backed up two epochs
        kill_once_backed_up(workers[0], backups, 2, victim=workers[1])
        chief_out = workers[0].communicate(timeout=180)[0]  # the chief notices, and stops
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert workers[1].returncode == -signal.SIGKILL, "training ended before the kill"
    assert workers[0].returncode == 1, chief_out[-3000:]
    assert "error: the training cluster lost a worker" in chief_out
    assert "Traceback" not in chief_out
    (metadata,) = backups.glob("*/training_metadata.json")
    done = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done < KILLED_RUN_EPOCHS

    chief_out, _ = finish(start_workers((chief, second), project.env))
    assert "train: digitnet (66,778 parameters)" in chief_out
    assert f"Resuming from epoch {done + 1}/{KILLED_RUN_EPOCHS}" in chief_out
    assert f"Epoch 1/{KILLED_RUN_EPOCHS}" not in chief_out
    assert f"Epoch {done + 1}/{KILLED_RUN_EPOCHS}" in chief_out
    loss_rows = (chief / "metrics/train/plots/metrics/train/loss.tsv").read_text()
    assert len(loss_rows.strip().splitlines()[1:]) == KILLED_RUN_EPOCHS
    assert not (chief / "models/.backup").exists()

    # The chief alone wrote outputs; the other worker left nothing behind.
    assert (chief / "models/model.keras").exists()
    assert sorted(p.name for p in (chief / "models/checkpoints").iterdir()) == [
        f"epoch-{epoch:03d}.keras" for epoch in range(KILLED_RUN_EPOCHS - 2,
                                                        KILLED_RUN_EPOCHS + 1)]
    logged = json.loads((chief / "metrics/train/metrics.json").read_text())
    # The averaged weights were validated, as they were saved.
    assert logged["val"]["accuracy"] == pytest.approx(test_accuracy(chief, "val"), abs=1e-6)
    assert not (second / "models").exists() and not (second / "metrics").exists()
    assert list((second / "tmp").glob("digitrec*")) == []

    # The same global batch in one process reaches the same accuracy, within noise.
    single = second
    project.__class__(single, project.env).set_params(train={"strategy": "auto"})
    run_stage(single, "train")  # in this process: no TF_CONFIG, no cluster
    two, one = test_accuracy(chief), test_accuracy(single)
    print(f"test accuracy: one process {one:.3f}, two workers {two:.3f}")
    assert one > 0.5 and two > 0.5, (one, two)  # both learned (chance is 0.1)
    assert abs(two - one) < 0.15, (one, two)


def test_batch_that_does_not_split_evenly_is_a_clear_error(project, monkeypatch):
    """Checked from TF_CONFIG alone, before the worker joins the cluster: so the stage runs
    here, as worker 0 of two, with no other worker and no cluster started."""
    from digitrec.backend import tf

    def joined(*args, **kwargs):
        raise AssertionError("the batch must be checked before the cluster is joined")

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", joined)
    monkeypatch.setenv("TF_CONFIG", local_tf_configs(2)[0])
    project.set_params(train={**TRAIN, "strategy": "multi_worker", "batch_size": 63})
    result = run_stage(project.root, "train", check=False)
    assert result.returncode == 1
    assert result.stderr == "error: train.batch_size 63 must be a multiple of the 2 workers\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_tf_config_is_a_clear_error(monkeypatch):
    from digitrec.training.multiworker import task_from_env

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DigitrecError, match="TF_CONFIG"):
        task_from_env()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": '
                                    '"worker", "index": 3}}')
    with pytest.raises(DigitrecError, match="not in the cluster"):
        task_from_env()
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
        "task": {"type": "worker", "index": 0}}))
    task = task_from_env()
    assert task.workers == 3 and not task.is_chief


def test_worker_shares_are_equal_disjoint_and_cover_the_epoch():
    from digitrec.training.input import training_dataset

    images = np.arange(101, dtype=np.float32).reshape(101, 1, 1, 1) * np.ones((1, 28, 28, 1))
    labels = np.arange(101) % 10
    seen = []
    for index in range(2):
        stream = training_dataset(images, labels, batch_size=10, seed=0, shard=(2, index))
        epoch = [batch[0].numpy()[:, 0, 0, 0] for batch in stream.take(5)]  # 50 / 10
        seen.append(np.concatenate(epoch).astype(int))
    assert [len(share) for share in seen] == [50, 50]
    assert len(set(seen[0]) | set(seen[1])) == 100  # disjoint, one example left out
