"""How an interrupted run resumes: Keras' `BackupAndRestore` backup, in a folder named after
a fingerprint of the run (its train params, the prepared data, and every module a training
run can execute), so a changed run starts fresh while an interrupted identical run continues
from its last completed epoch; and the history of the epochs it already did."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py  # the format of Keras' weights files

from digitrec import codedeps
from digitrec.data import prepared
from digitrec.params import TrainParams

BACKUP_ROOT_NAME = ".backup"
HISTORY_FILE = "history.csv"


def code_files() -> list[Path]:
    """The source of a training run: `run.py` and every module of ours it can import."""
    run_module = Path(__file__).with_name("run.py")
    return [run_module, *codedeps.module_closure(run_module, run_module.parents[2])]


def fingerprint(config: TrainParams, prepared_dir: Path) -> str:
    """What identifies a run for resuming: params, prepared data and the code."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update((prepared_dir / prepared.MANIFEST).read_bytes())
    for path in sorted(set(code_files())):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class RunState:
    """Where a run starts: its backup folder and the epochs already done there."""

    backup_dir: Path
    completed_epochs: int
    discarded_other_runs: bool


def resume_state(config: TrainParams, prepared_dir: Path, model_path: Path) -> RunState:
    """Find this run's backup (beside the model, named by the run's fingerprint); remove
    backups of runs with other params, data or code."""
    backup_root = model_path.parent / BACKUP_ROOT_NAME
    run_id = fingerprint(config, prepared_dir)
    backup_dir = backup_root / run_id
    discarded = False
    if backup_root.exists():
        for other in backup_root.iterdir():
            if other.name != run_id:
                shutil.rmtree(other, ignore_errors=True)
                discarded = True
    completed = backed_up_epochs(backup_dir)
    if completed is None:
        print(f"warning: the backup of an interrupted run in {backup_dir} is damaged (a kill "
              "or power cut while it was written); starting fresh", file=sys.stderr)
        shutil.rmtree(backup_dir, ignore_errors=True)
        completed, discarded = 0, True
    return RunState(backup_dir, completed, discarded)


def backed_up_epochs(backup_dir: Path) -> int | None:
    """How many epochs Keras' backup in `backup_dir` holds (0 when there is none), or None
    when it cannot be used: its metadata or weights file is unreadable."""
    metadata = backup_dir / "training_metadata.json"
    if not metadata.exists():
        return 0
    try:
        epochs = json.loads(metadata.read_text())["epoch"]
        with h5py.File(backup_dir / "latest.weights.h5", "r"):
            pass
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) and epochs >= 0 else None


def read_history(path: Path, epochs: int) -> list[dict[str, float]]:
    """The first `epochs` rows Keras' CSVLogger wrote, and rewrite the file to just those."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))[:epochs]
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return [{k: float(v) for k, v in row.items() if k != "epoch"} for row in rows]


def merge_history(earlier: list[dict[str, float]], this_run: dict[str, list[float]]
                  ) -> dict[str, list[float]]:
    """Per-epoch values of the whole run: the interrupted run's epochs, then this run's
    (none, when the backup already held every epoch)."""
    keys = list(this_run) or (list(earlier[0]) if earlier else [])
    return {key: [row[key] for row in earlier] + this_run.get(key, []) for key in keys
            if all(key in row for row in earlier)}


def announce(state: RunState, epochs: int) -> None:
    """Say whether the run resumes, or starts fresh instead of an interrupted one."""
    if state.completed_epochs:
        print(f"Resuming from epoch {state.completed_epochs + 1}/{epochs}: epochs "
              f"1-{state.completed_epochs} were done by an interrupted run "
              f"(backup in {state.backup_dir})", flush=True)
    elif state.discarded_other_runs:
        print("Starting fresh: params, data or code changed since the interrupted run",
              flush=True)
