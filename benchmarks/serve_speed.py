"""Requests per second and latency of `digitrec serve` for single pictures over loopback.

    python benchmarks/serve_speed.py [--model models/model.keras] [--requests 200]
                                     [--clients 1 4]

Starts the real command (`digitrec serve --port 0`) in its own process, then, for each kind
of picture (a 280x280 PNG as the page's canvas sends, and a 1200 px JPEG photo of paper as a
phone sends) and each number of concurrent clients, posts `--requests` pictures one at a
time per client and prints requests/s, median and 95th-percentile latency. Without --model
an untrained default model is served (the speed does not depend on the weights). The
request count is bounded and every request goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from digitrec.examples import draw_digit, photo_of_paper


def pictures() -> dict[str, list[bytes]]:
    """Ten pictures of each kind, as bytes ready to post."""
    kinds: dict[str, list[bytes]] = {"canvas 280px PNG": [], "photo 1200px JPEG": []}
    for digit in range(10):
        buffer = io.BytesIO()
        draw_digit(digit, 280, pen=0.07, ink=0, paper=255, seed=digit).save(buffer, "PNG")
        kinds["canvas 280px PNG"].append(buffer.getvalue())
        buffer = io.BytesIO()
        page = draw_digit(digit, 1200, pen=0.025, ink=40, paper=225, seed=digit)
        photo_of_paper(page, seed=digit).save(buffer, "JPEG", quality=85)
        kinds["photo 1200px JPEG"].append(buffer.getvalue())
    return kinds


def untrained_model(folder: Path) -> Path:
    from digitrec.training.models import build_model

    path = folder / "untrained.keras"
    build_model("digitnet").save(path)
    return path


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "digitrec.cli", "serve", "--model", str(model), "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, match.group(1)


def run(url: str, bodies: list[bytes], requests: int, clients: int) -> tuple[float, list[float]]:
    """(seconds in all, latency of each request) for `requests` posts from `clients`."""
    share = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index: int) -> list[float]:
        latencies = []
        with httpx.Client(base_url=url, timeout=60) as session:
            for n in range(share[index]):
                body = bodies[(index + n) % len(bodies)]
                start = time.perf_counter()
                response = session.post("/api/predict", content=body)
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for part in pool.map(client, range(clients)) for t in part]
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a trained model (default: untrained)")
    parser.add_argument("--requests", type=int, default=200, help="per kind and client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000:
        raise SystemExit("--requests: between 1 and 10000")

    with tempfile.TemporaryDirectory() as folder:
        model = args.model or untrained_model(Path(folder))
        process, url = start_server(model)
        try:
            kinds = pictures()
            for bodies in kinds.values():  # warm up: the first calls build TensorFlow's graphs
                run(url, bodies, 10, 1)
            print(f"{'pictures':<18} {'clients':>7} {'requests':>8} {'req/s':>7} "
                  f"{'median ms':>9} {'p95 ms':>7}")
            for kind, bodies in kinds.items():
                for clients in args.clients:
                    seconds, latencies = run(url, bodies, args.requests, clients)
                    p95 = statistics.quantiles(latencies, n=20)[-1]
                    print(f"{kind:<18} {clients:>7} {len(latencies):>8} "
                          f"{len(latencies) / seconds:>7.1f} "
                          f"{1000 * statistics.median(latencies):>9.1f} {1000 * p95:>7.1f}")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
