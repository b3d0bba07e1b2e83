"""One writer per folder: an exclusive lock on `FOLDER/.lock`, held for the whole run.

Two conversions into one OUT would delete each other's staging; the second one refuses at once,
naming the process that holds the folder. The lock is the kernel's (flock), so it goes away with
its process, kill -9 included: a stale lock file never blocks a rerun.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against each other
    fcntl = None

LOCK_NAME = ".lock"


class FolderLocked(Exception):
    """Another process is writing the folder."""


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "conversion",
                advice: str = "wait for it to end, or choose another folder") -> Iterator[None]:
    """Hold the lock of `folder` (created if missing) for the block; raise FolderLocked at once
    when another process holds it (the message names the holder, `what` it is and `advice`).
    The lock file is removed when the block ends."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if fcntl is None:
        yield
        return
    handle = _acquire(path, what, advice)
    try:
        yield
    finally:
        # Unlinked before it is released: a process that opened it meanwhile finds, once it gets
        # the lock, that the file is no longer the one at `path`, and starts over (see _acquire).
        path.unlink(missing_ok=True)
        handle.close()


def _acquire(path: Path, what: str, advice: str):
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise FolderLocked(f"{path.parent} is in use by another {what} ({holder}); {advice}") from None
        if _same_file(handle, path):
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()  # the holder removed it as we opened it: lock the new one


def _holder(handle) -> str:
    handle.seek(0)
    pid = handle.read().strip()
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
