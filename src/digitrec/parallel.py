"""Map a function over many items on every core, safely beside TensorFlow."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item],
                 chunksize: int = 1) -> list[Result]:
    """`[function(item) for item in items]`, in order, spread over the cores."""
    with _pool(len(items)) as pool:
        return list(pool.map(function, items, chunksize=chunksize))


def _pool(count: int) -> Executor:
    """Processes while TensorFlow is not loaded and there is enough work; threads otherwise.

    Forking a process that already runs TensorFlow's threads is unsafe, and starting fresh
    interpreters costs more than the work they would share.
    """
    workers = os.cpu_count() or 1
    if count >= 4 * workers and "tensorflow" not in sys.modules and os.name == "posix":
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)
