"""Training across processes: two real workers on 127.0.0.1, talking gRPC, as on two machines.

Each worker runs the train stage in its own copy of the project (its own "machine"), with
`train.strategy: multi_worker` and its own `TF_CONFIG`.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import local_tf_configs, synthetic_dataset_arrays, write_raw

from digitrec.data import splits as prepare
from digitrec.errors import DigitrecError

pytestmark = pytest.mark.slow

TRAIN = {"model": "digitnet", "epochs": 3, "batch_size": 64, "learning_rate": 0.03,
         "checkpoint_every": 1, "keep_checkpoints": 3, "seed": 3}


@pytest.fixture
def machines(project, tmp_path):
    """Two copies of a project with the same prepared data: the chief's and a worker's."""
    raw = project.root / "data" / "raw"
    write_raw(raw, synthetic_dataset_arrays(n_train=600, n_test=300))
    prepare.prepare(raw, project.root / "data" / "prepared", val_size=0.2, seed=0,
                    negatives=0.3)  # each worker mixes its share of them in
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
    check = (
        "import numpy as np, keras\n"
        "m = keras.models.load_model('models/model.keras')\n"
        f"x = np.load('data/prepared/{split}_images.npy')\n"
        f"y = np.load('data/prepared/{split}_labels.npy')\n"
        "print((m.predict(x, verbose=0).argmax(1) == y).mean())\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=root, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


test_accuracy.__test__ = False  # a helper, not a test


def test_two_workers_train_one_model_as_good_as_one_process(machines, project):
    chief, second = machines
    chief_out, worker_out = finish(start_workers((chief, second), project.env))
    assert "Epoch 3/3" in chief_out and "train: digitnet (66,778 parameters)" in chief_out

    # The chief alone wrote outputs; the other worker left nothing behind.
    assert (chief / "models/model.keras").exists()
    assert sorted(p.name for p in (chief / "models/checkpoints").iterdir()) == [
        "epoch-001.keras", "epoch-002.keras", "epoch-003.keras"]
    logged = json.loads((chief / "metrics/train/metrics.json").read_text())
    # The averaged weights were validated, as they were saved.
    assert logged["val"]["accuracy"] == pytest.approx(test_accuracy(chief, "val"), abs=1e-6)
    assert not (second / "models").exists() and not (second / "metrics").exists()
    assert list((second / "tmp").glob("digitrec*")) == []

    # The same global batch in one process reaches the same accuracy, within noise.
    single = second
    project.__class__(single, project.env).set_params(train={"strategy": "auto"})
    subprocess.run([sys.executable, "stages/train.py"], cwd=single, env=project.env,
                   check=True, capture_output=True)
    two, one = test_accuracy(chief), test_accuracy(single)
    print(f"test accuracy: one process {one:.3f}, two workers {two:.3f}")
    assert one > 0.5 and two > 0.5, (one, two)  # both learned (chance is 0.1)
    assert abs(two - one) < 0.15, (one, two)


def test_killed_worker_then_restarted_job_resumes(machines, project):
    chief, second = machines
    project.set_params(train={"epochs": 12})
    project.__class__(second, project.env).set_params(train={"epochs": 12})
    workers = start_workers((chief, second), project.env)
    backups = chief / "models/.backup"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and workers[0].poll() is None:
            done = [json.loads(p.read_text())["epoch"]
                    for p in backups.glob("*/training_metadata.json") if p.stat().st_size]
            if done and max(done) >= 2:
                break
            time.sleep(0.02)
        workers[1].send_signal(signal.SIGKILL)  # a machine dies
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
    assert 2 <= done < 12

    chief_out, _ = finish(start_workers((chief, second), project.env))
    assert f"Resuming from epoch {done + 1}/12" in chief_out
    assert "Epoch 1/12" not in chief_out and f"Epoch {done + 1}/12" in chief_out
    loss_rows = (chief / "metrics/train/plots/metrics/train/loss.tsv").read_text()
    assert len(loss_rows.strip().splitlines()[1:]) == 12
    assert (chief / "models/model.keras").exists()
    assert not (chief / "models/.backup").exists()
    assert list((second / "tmp").glob("digitrec*")) == []


def test_batch_that_does_not_split_evenly_is_a_clear_error(machines, project):
    chief, second = machines
    project.set_params(train={"batch_size": 63})
    project.__class__(second, project.env).set_params(train={"batch_size": 63})
    outputs = [w.communicate(timeout=300)[0]
               for w in start_workers((chief, second), project.env)]
    assert any("train.batch_size 63 must be a multiple of the 2 workers" in out
               for out in outputs), outputs
    assert not any("Traceback" in out for out in outputs)


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
