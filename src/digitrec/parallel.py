"""Map a function over many items on every core, safely beside TensorFlow."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item],
                 chunksize: int = 1, progress: str | None = None) -> list[Result]:
    """`[function(item) for item in items]`, in order, spread over the cores.

    With `progress`, a bar of that name counts the items done (on a terminal only).
    """
    with worker_pool(len(items)) as pool:
        results = pool.map(function, items, chunksize=chunksize)
        if progress is not None:
            results = tqdm(results, total=len(items), desc=progress, file=sys.stderr,
                           disable=None, leave=False)
        return list(results)


@contextmanager
def worker_pool(count: int) -> Iterator[Executor]:
    """One worker per core for `count` items: processes while TensorFlow is not loaded and
    there is enough work, threads otherwise.

    Forking a process that already runs TensorFlow's threads is unsafe, and starting fresh
    interpreters costs more than the work they would share. The processes are all forked
    when the pool opens, so a caller may load TensorFlow afterwards and keep using them.
    """
    workers = os.cpu_count() or 1
    if count >= 4 * workers and "tensorflow" not in sys.modules and os.name == "posix":
        pool: Executor = ProcessPoolExecutor(workers,
                                             mp_context=multiprocessing.get_context("fork"))
        pool.submit(int).result()  # a forking pool starts all its workers on first use
    else:
        pool = ThreadPoolExecutor(workers)
    with pool:
        yield pool
