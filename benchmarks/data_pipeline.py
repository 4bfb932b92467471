"""Time the download and prepare stages and report their peak memory.

    python benchmarks/data_pipeline.py PATH_TO_ARCHIVES [--http] [--no-verify] [--dataset NAME]

PATH_TO_ARCHIVES is a folder with the four .gz archives (for example
/usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist). With --http they are
served from a loopback HTTP server instead of read as a folder. Each phase runs in its own
process so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def run_phase(phase: str, archives: str, work: Path, dataset: str, verify: bool
              ) -> tuple[float, float]:
    """Run one phase in a child process; return (seconds it reported, its peak RSS in MiB)."""
    command = [sys.executable, __file__, "--phase", phase, "--work", str(work),
               "--dataset", dataset, archives] + ([] if verify else ["--no-verify"])
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{phase} failed with exit code {child.returncode}")
    return json.loads(output)["seconds"], usage.ru_maxrss / 1024


def phase_main(args: argparse.Namespace) -> None:
    from digitrec.catalog import get_dataset
    from digitrec.data.download import download
    from digitrec.data.splits import prepare
    from digitrec.data.transfer import Retries
    from digitrec.params import DownloadParams, PrepareParams

    start = time.perf_counter()
    if args.phase == "download":
        download(get_dataset(args.dataset),
                 DownloadParams(mirrors=(str(args.archives),), verify=args.verify),
                 args.work / "raw", args.work / "partial", Retries(progress=False))
    else:
        negatives = get_dataset(args.dataset).negative_share(PrepareParams().negatives)
        prepare(args.work / "raw", args.work / "prepared", val_size=0.1, seed=42,
                negatives=negatives)
    print(json.dumps({"seconds": time.perf_counter() - start}))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archives", help="folder holding the four .gz archives")
    parser.add_argument("--http", action="store_true", help="serve them over loopback HTTP")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checksums (for subsets such as mnist-10k)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--phase", choices=["download", "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase_main(args)

    source = str(Path(args.archives).resolve())
    server = None
    if args.http:
        server, source = serve(source)
    with tempfile.TemporaryDirectory() as work:
        rows = [(phase, *run_phase(phase, source, Path(work), args.dataset, args.verify))
                for phase in ("download", "prepare")]
        count = json.loads((Path(work) / "prepared/manifest.json").read_text())["splits"]
    if server:
        server.shutdown()
    total = sum(split["count"] for split in count.values())
    print(f"{args.dataset} from {'HTTP ' if args.http else ''}{args.archives}: {total} images")
    print(f"{'phase':<10}{'seconds':>10}{'peak MiB':>10}")
    for phase, seconds, peak in rows:
        print(f"{phase:<10}{seconds:>10.2f}{peak:>10.0f}")


if __name__ == "__main__":
    main()
