"""Where the per-recording tasks run: a local Dask cluster by default, or an existing one.

Tasks are independent (one per source recording), so the graph is a plain map; results come back
as they finish, with a progress bar, and a task that raises or whose worker dies is reported, not
fatal: the caller turns it into error-log entries for that recording's utterances.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm


@dataclass
class TaskFailure:
    """A task that did not return: the exception text stands in for its result."""

    item: Any
    reason: str


# The local cluster listens on the loopback interface only.
LOCAL_HOST = "127.0.0.1"
# Scheduler HTTP routes of the local cluster: a health check only (no dashboard, no task listings).
LOCAL_HTTP_ROUTES = ["distributed.http.health"]


class SchedulerUnreachable(ConnectionError):
    """`--scheduler ADDRESS` could not be connected to (the message says what to check)."""


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A distributed Client: connected to `scheduler` if given, else on a fresh LocalCluster of
    `workers` single-threaded worker processes (media work is CPU-bound and runs ffmpeg children,
    so processes, not threads).

    The local cluster is private to this process: scheduler and workers bind to 127.0.0.1, there
    is no dashboard, and every connection is TLS with a temporary certificate that only this
    process and its workers hold, so another local user's client cannot connect and run code as
    this user. A remote `scheduler` gets dask's own security configuration
    (distributed.comm.tls.*; docs/dask-cluster.md).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        with _connect(scheduler) as client:
            yield client
        return
    with _process_environment_kept(), dask.config.set({"distributed.scheduler.http.routes": LOCAL_HTTP_ROUTES}), \
            LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, host=LOCAL_HOST,
                         scheduler_port=0, dashboard_address=f"{LOCAL_HOST}:0", scheduler_kwargs={"dashboard": False},
                         security=local_security(), silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def local_security() -> Any:
    """TLS with a fresh self-signed certificate (dask's Security.temporary), or None without the
    `cryptography` package (then any local user could connect: said once as a warning)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        warnings.warn("the `cryptography` package is missing, so the local Dask cluster runs without TLS and other "
                      "users of this machine could connect to it: pip install cryptography", stacklevel=2)
        return None


def _connect(address: str) -> Any:
    """A Client of the scheduler at `address`; SchedulerUnreachable (one clear line) when that fails."""
    from distributed import Client

    try:
        return Client(address)
    except (OSError, TypeError, ValueError) as exc:
        # TypeError: distributed's complaint about a tls:// address without TLS settings.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SchedulerUnreachable(
            f"cannot connect to the Dask scheduler at {address} ({reason}): check that it is running and "
            f"reachable from here (address, port, firewall){_security_hint(address)}") from exc


def _security_hint(address: str) -> str:
    if address.startswith("tls://"):
        return (", and that --tls-ca-file, --tls-cert and --tls-key (or dask's distributed.comm.tls config) "
                "are the cluster's")
    return "; a cluster that requires TLS needs a tls:// address"


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
    """fn(item) for every item on the cluster; results (or TaskFailure) in the order of `items`.

    The progress bar is drawn on a terminal only (tqdm's disable=None), never into a pipe or a log."""
    from distributed import as_completed

    futures = client.map(fn, items, key=[f"{desc}-{name}" for name in names], pure=False)
    position = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    with tqdm(total=len(items), desc=desc, unit="rec", disable=None if progress else True, leave=False) as bar:
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
