"""The one task runner of the three graphs (convert, validate, features).

Every graph is a plain map: one independent task per recording or shard, `fn(item)` for each item.

    results = run_tasks(task, jobs, [job.name for job in jobs], "shards", workers=4)

On a local Dask cluster (`workers`), on an existing one (`scheduler`), or, with `in_process=True`,
one after the other in this process (tests, debugging). A task that raises, or whose worker dies,
comes back as a TaskFailure in its item's place: the graph decides what that means (a `task-failed`
finding, a machine fault, error-log entries), so nothing is skipped silently.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from .cluster import TaskFailure, dask_client, map_tasks


def run_tasks(fn: Callable[[Any], Any], items: Sequence[Any], names: Sequence[str], desc: str, *,
              workers: int | None = None, scheduler: str | None = None, in_process: bool = False,
              progress: bool = True) -> list[Any]:
    """fn(item) for every item, results (or TaskFailure) in the order of `items`; `names` name the tasks
    on the cluster, `desc` labels the progress bar ("recordings", "shards")."""
    if not items:
        return []
    if in_process:
        results = []
        for item in tqdm(items, desc=desc, disable=not progress, leave=False):
            try:
                results.append(fn(item))
            except Exception as error:  # the same contract as a task that fails on the cluster
                results.append(TaskFailure(item, f"{type(error).__name__}: {error}"))
        return results
    with dask_client(workers, scheduler) as client:
        return map_tasks(client, fn, items, names=names, progress=progress, desc=desc)
