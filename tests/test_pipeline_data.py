import json

import pytest
from helpers import synthetic_dataset_arrays, write_archives

pytestmark = pytest.mark.slow


def test_dvc_repro_prepare_from_a_local_mirror_then_nothing_to_do(project, mirror):
    write_archives(mirror.root / "mnist", synthetic_dataset_arrays(n_train=300, n_test=60))
    project.set_params(download={"mirrors": [mirror.url("gone/"), mirror.url("mnist/")],
                                 "verify": False})
    first = project.dvc("repro", "prepare")
    assert "download: mnist: 4 files in data/raw/ (4 fetched" in first.stdout
    assert "prepare: train 270, val 30, test 60 images" in first.stdout
    manifest = json.loads((project.root / "data/prepared/manifest.json").read_text())
    assert manifest["splits"]["test"]["count"] == 60
    assert (project.root / "dvc.lock").exists()

    requests = len(mirror.requests)
    second = project.dvc("repro", "prepare")
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout
    assert len(mirror.requests) == requests
    status = project.dvc("status", "prepare").stdout
    assert status.strip().endswith("up to date.")


def test_dvc_repro_offline_fails_with_the_mirror_list(project, mirror):
    project.set_params(download={"mirrors": [mirror.url("gone/")]})
    result = project.dvc("repro", "download", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{mirror.url('gone/')}train-images-idx3-ubyte.gz: HTTP 404" in output
    assert "Traceback" not in output
