"""Where the per-recording tasks run: a local Dask cluster by default, or an existing one.

Tasks are independent (one per source recording), so the graph is a plain map; results come back
as they finish, with a progress bar, and a task that raises or whose worker dies is reported, not
fatal: the caller turns it into error-log entries for that recording's utterances.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm


@dataclass
class TaskFailure:
    """A task that did not return: the exception text stands in for its result."""

    item: Any
    reason: str


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A distributed Client: connected to `scheduler` if given, else on a fresh LocalCluster of
    `workers` single-threaded worker processes (media work is CPU-bound and runs ffmpeg children,
    so processes, not threads)."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # dashboard_address ":0": a free port, so two clusters on one machine never collide.
    with _process_environment_kept(), \
            LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _process_environment_kept() -> Iterator[None]:
    """Undo what starting worker processes writes into this process's environment.

    distributed's nannies set OMP_NUM_THREADS=1 (and MKL_/OPENBLAS_...) in os.environ of the process
    that starts them, meant for the workers; left there, torch imported later in the same process
    (e.g. `mer demo` training after its conversion) would run on one thread.
    """
    import os

    before = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def map_tasks(client: Any, fn: Callable[[Any], Any], items: Sequence[Any], *, names: Sequence[str],
              progress: bool = True, desc: str = "recordings") -> list[Any]:
    """fn(item) for every item on the cluster; results (or TaskFailure) in the order of `items`."""
    from distributed import as_completed

    futures = client.map(fn, items, key=[f"{desc}-{name}" for name in names], pure=False)
    position = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    with tqdm(total=len(items), desc=desc, unit="rec", disable=not progress, leave=False) as bar:
        for future in as_completed(futures):
            i = position[future.key]
            if future.status == "finished":
                results[i] = future.result()
            else:
                exc = future.exception()
                results[i] = TaskFailure(items[i], f"{type(exc).__name__}: {exc}")
            future.release()
            bar.update(1)
    return results
