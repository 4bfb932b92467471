"""The train stage against the TensorFlow tutorial CNN, both timed as the whole processes a
user waits for, and where the train stage's time goes.

    python benchmarks/train_vs_tutorial.py DATA_DIR [--work DIR] [--pairs 3] [--stages]

DATA_DIR holds the four MNIST .gz archives (../shared/datasets/mnist-10k). The benchmark
makes a scratch project from this checkout (its files as they are now, uncommitted edits
included) in --work (a temporary folder unless given; given, its data is kept between runs
and only the code is copied again), points `download.mirrors` at DATA_DIR with `verify:
false`, and runs `dvc repro` once. Then, in turn, `dvc repro -s -f train` (the real stage,
DVC's own work included) and `python benchmarks/tutorial_cnn.py` (the tutorial as a user
copies it, on the same prepared arrays), `--pairs` times each, A B A B, and prints each
pair's wall and CPU seconds and their ratio, and the medians. A ratio of pairs holds when the
machine's speed drifts; the single times do not.

Then one more run of the stage's script, in a process of its own with timers around each
phase (nothing in the stage is changed: the timers wrap the library's functions from the
outside), prints the profile: interpreter start, imports, reading the params, the data,
building, the first epoch's extra (graph tracing), the steps, validation, each callback,
calibration, DVCLive, saving, and the process's exit.

`--stages` also times `dvc repro -f` (the whole pipeline, forced) and each stage alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "benchmarks" / "tutorial_cnn.py"
BETWEEN = "between epochs (the callbacks above, Keras)"
STAGES = ("download", "prepare", "train", "evaluate", "predict")


def copy_checkout(project: Path) -> None:
    """This checkout's files (tracked and new, not ignored) into `project`; the data, models
    and metrics a previous run left there stay."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)


def point_at(project: Path, data_dir: Path) -> None:
    """params.yaml with the mirror set to `data_dir` and no checksum check (a subset)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["download"].update(mirrors=[str(data_dir)], verify=False)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def environment(project: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(project / "src"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def timed(command: list[str], project: Path, quiet: bool = True) -> tuple[float, float]:
    """Run `command` in `project` as a whole process: its wall and CPU seconds (user + sys
    of it and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=environment(project),
                          stdout=subprocess.DEVNULL if quiet else None,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def dvc(*args: str) -> list[str]:
    beside = Path(sys.executable).parent / "dvc"
    return [str(beside) if beside.exists() else shutil.which("dvc") or "dvc", *args]


def make_project(project: Path, data_dir: Path) -> None:
    fresh = not (project / "dvc.yaml").exists()
    project.mkdir(parents=True, exist_ok=True)
    copy_checkout(project)
    point_at(project, data_dir.resolve())
    if fresh:  # DVC and DVCLive want a repository with a commit
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        subprocess.run(["git", "add", "-A"], cwd=project, check=True)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                        "commit", "-qm", "scratch project"], cwd=project, check=True)
    wall, cpu = timed(dvc("repro"), project)
    print(f"project {project}: dvc repro ({'all stages' if fresh else 'what was stale'}) "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)


def compare(project: Path, pairs: int) -> None:
    stage = dvc("repro", "-s", "-f", "train")
    tutorial = [sys.executable, str(TUTORIAL), "data/prepared",
                str(project / "models" / "tutorial.keras")]
    rows = []
    print(f"\n{'pair':<6}{'stage wall':>11}{'CPU':>8}{'tutorial wall':>15}{'CPU':>8}"
          f"{'ratio wall':>12}{'CPU':>8}")
    for pair in range(1, pairs + 1):
        a, b = timed(stage, project), timed(tutorial, project)
        rows.append((*a, *b, a[0] / b[0], a[1] / b[1]))
        print(f"{pair:<6}{a[0]:>10.1f}s{a[1]:>7.1f}s{b[0]:>14.1f}s{b[1]:>7.1f}s"
              f"{a[0] / b[0]:>11.2f}x{a[1] / b[1]:>7.2f}x", flush=True)
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(f"{'median':<6}{medians[0]:>10.1f}s{medians[1]:>7.1f}s{medians[2]:>14.1f}s"
          f"{medians[3]:>7.1f}s{medians[4]:>11.2f}x{medians[5]:>7.2f}x")


def time_stages(project: Path) -> None:
    wall, cpu = timed(dvc("repro", "-f"), project)
    print(f"\ndvc repro -f (the whole pipeline): {wall:.1f} s wall, {cpu:.1f} s CPU")
    for name in STAGES:
        wall, cpu = timed(dvc("repro", "-s", "-f", name), project)
        print(f"  dvc repro -s -f {name:<9} {wall:>5.1f} s wall, {cpu:>5.1f} s CPU")


# ---- the profile: runs in a child process of its own, in the project ----

class Phases:
    """Seconds per phase, added up over every call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def wrap(self, owner: object, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - start)

        setattr(owner, name, timed_call)


def profile_child(launched: float) -> None:
    """Run stages/train.py's main with timers around its phases; print them as JSON."""
    entered = time.time()
    phases = Phases()
    phases.add("interpreter start", entered - launched)
    start = time.perf_counter()
    import digitrec.backend  # noqa: F401  (TensorFlow and Keras)
    phases.add("import TensorFlow + Keras", time.perf_counter() - start)
    start = time.perf_counter()
    import runpy

    stage = runpy.run_path("stages/train.py")
    import dvclive

    from digitrec.training import callbacks, input, run
    phases.add("import the rest (digitrec, DVCLive, ...)", time.perf_counter() - start)
    keras = digitrec.backend.keras

    namespace = argparse.Namespace(**stage["main"].__globals__)  # the stage's globals
    phases.wrap(namespace, "read_params", "read params")
    stage["main"].__globals__["read_params"] = namespace.read_params
    phases.wrap(input.TrainingInput, "__init__", "data (load, streams)")
    phases.wrap(input.TrainingInput, "training", "data (load, streams)")
    phases.wrap(input.TrainingInput, "validation", "data (load, streams)")
    phases.wrap(run, "seed_everything", "seeding")
    phases.wrap(run, "resume_state", "resume fingerprint")
    phases.wrap(run.TrainingRun, "build_model", "build + compile")
    phases.wrap(run, "open_live", "DVCLive")
    phases.wrap(callbacks.EpochLog, "on_epoch_end", "DVCLive")
    phases.wrap(dvclive.Live, "end", "DVCLive")
    phases.wrap(keras.callbacks.BackupAndRestore, "on_epoch_end", "callbacks: backup")
    phases.wrap(keras.callbacks.BackupAndRestore, "on_train_begin", "callbacks: backup")
    phases.wrap(keras.callbacks.CSVLogger, "on_epoch_end", "callbacks: history CSV")
    phases.wrap(callbacks.StopOnNonFiniteLoss, "on_epoch_end", "callbacks: loss check")
    phases.wrap(callbacks.PeriodicCheckpoint, "on_epoch_end", "checkpoints")
    phases.wrap(run, "calibrate", "calibration")
    phases.wrap(run, "save_model", "saving the model")
    phases.wrap(run, "replace_dir", "finishing (logs in place, backup dropped)")
    phases.wrap(run.shutil, "rmtree", "finishing (logs in place, backup dropped)")

    epochs: list[dict[str, float]] = []

    fit_called: list[float] = []

    class Timer(keras.callbacks.Callback):
        """First of the callbacks: the edges of each epoch, its validation, and the time
        from one epoch's validation to the next epoch (the other callbacks, Keras)."""

        def on_train_begin(self, logs=None):
            self.began = time.perf_counter()
            phases.add("fit set-up (iterators, before the callbacks)",
                       self.began - fit_called[-1])

        def on_epoch_begin(self, epoch, logs=None):
            now = time.perf_counter()
            if epochs:
                phases.add(BETWEEN, now - epochs[-1]["val_end"])
            else:
                phases.add("fit set-up", now - self.began)
            epochs.append({"start": now})

        def on_train_end(self, logs=None):
            phases.add(BETWEEN,
                       time.perf_counter() - epochs[-1]["val_end"])

        def on_test_begin(self, logs=None):
            epochs[-1]["train"] = time.perf_counter() - epochs[-1]["start"]
            epochs[-1]["val_start"] = time.perf_counter()

        def on_test_end(self, logs=None):
            epochs[-1]["val_end"] = time.perf_counter()
            epochs[-1]["val"] = epochs[-1]["val_end"] - epochs[-1]["val_start"]

    callbacks_of = run.TrainingRun.callbacks
    run.TrainingRun.callbacks = lambda self, live: [Timer(), *callbacks_of(self, live)]
    phases.wrap(run.SingleMachine, "run_epochs", "fit (all of it)")
    run_epochs = run.SingleMachine.run_epochs

    def noted_run_epochs(*args, **kwargs):
        fit_called.append(time.perf_counter())
        return run_epochs(*args, **kwargs)

    run.SingleMachine.run_epochs = noted_run_epochs

    start = time.perf_counter()
    message = stage["main"](Path("params.yaml"))
    phases.add("the stage's main (all of it)", time.perf_counter() - start)
    trains = [epoch["train"] for epoch in epochs]
    vals = [epoch.get("val", 0.0) for epoch in epochs]
    steady = statistics.median(trains[1:]) if len(trains) > 1 else trains[0]
    steady_val = statistics.median(vals[1:]) if len(vals) > 1 else vals[0]
    phases.add("first epoch's extra (tracing)", trains[0] - steady)
    phases.add("steps (every epoch at the steady pace)", steady * len(trains))
    phases.add("first validation's extra (tracing)", vals[0] - steady_val)
    phases.add("validation (steady pace)", steady_val * len(vals))
    print(json.dumps({"phases": phases.seconds, "epochs": len(epochs), "message": message,
                      "epoch_train": trains, "epoch_val": vals, "ended": time.time()}))
    from digitrec.errors import exit_now

    exit_now(0)  # as the stage's script ends (errors.run_command)


def profile(project: Path) -> None:
    launched = time.time()
    done = subprocess.run([sys.executable, __file__, "--profile-child", str(launched), "x"],
                          cwd=project, env=environment(project), capture_output=True, text=True)
    finished = time.time()
    if done.returncode:
        sys.exit(f"error: the profiled stage failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    phases = report["phases"]
    phases["process exit"] = finished - report["ended"]
    total = finished - launched
    whole = {"fit (all of it)", "the stage's main (all of it)", BETWEEN}  # hold others
    print(f"\nprofile of `python stages/train.py` ({report['message']})")
    print(f"  epochs (train part, s): {', '.join(f'{s:.2f}' for s in report['epoch_train'])}")
    print(f"  validation (s):         {', '.join(f'{s:.2f}' for s in report['epoch_val'])}")
    for phase, seconds in phases.items():
        if phase not in whole or phase == BETWEEN:
            print(f"  {phase:<44}{seconds:>6.2f} s {seconds / total:>5.0%}")
    accounted = sum(seconds for phase, seconds in phases.items() if phase not in whole)
    print(f"  {'(not in any phase above: Keras between epochs, ...)':<44}"
          f"{total - accounted:>6.2f} s {(total - accounted) / total:>5.0%}")
    print(f"  {'whole process':<44}{total:>6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with the four .gz archives")
    parser.add_argument("--work", type=Path, help="the scratch project (kept)")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs (default 3)")
    parser.add_argument("--stages", action="store_true",
                        help="also time dvc repro -f and each stage alone")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile")
    parser.add_argument("--profile-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_child is not None:
        return profile_child(args.profile_child)
    with tempfile.TemporaryDirectory() as scratch:
        project = args.work.resolve() if args.work else Path(scratch) / "project"
        make_project(project, args.data_dir)
        if args.pairs:
            compare(project, args.pairs)
        if not args.no_profile:
            profile(project)
        if args.stages:
            time_stages(project)


if __name__ == "__main__":
    main()
