"""Map a function over many items on every core, safely beside TensorFlow."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item],
                 chunksize: int = 1, progress: str | None = None) -> list[Result]:
    """`[function(item) for item in items]`, in order, spread over the cores.

    With `progress`, a bar of that name counts the items done (on a terminal only).
    """
    with _pool(len(items)) as pool:
        results = pool.map(function, items, chunksize=chunksize)
        if progress is not None:
            results = tqdm(results, total=len(items), desc=progress, file=sys.stderr,
                           disable=None, leave=False)
        return list(results)


def _pool(count: int) -> Executor:
    """Processes while TensorFlow is not loaded and there is enough work; threads otherwise.

    Forking a process that already runs TensorFlow's threads is unsafe, and starting fresh
    interpreters costs more than the work they would share.
    """
    workers = os.cpu_count() or 1
    if count >= 4 * workers and "tensorflow" not in sys.modules and os.name == "posix":
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)
