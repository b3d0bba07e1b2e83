"""Commands that read or write whole folders (validation, feature extraction) on object storage.

Their tasks open files by path on the machine that runs them, so a folder in a bucket is copied into
a local temporary folder first (SHARDS), or worked on locally and then uploaded (FEATS: its existing
parts are copied in first so that a rerun resumes, and the result goes up with its card last). The
copy needs local disk for the folder; training, which reads each shard once, streams instead
(model/data.py). The local tasks run on this machine's Dask cluster: with --scheduler, the remote
workers could not see the temporary copy, so that combination is refused.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mer_data.locations import UnsupportedLocation
from mer_data.storage import download_folder, filesystem, is_storage_url, upload_folder


def refuse_remote_scheduler(scheduler: str | None, *urls: object) -> None:
    if scheduler and any(is_storage_url(url) for url in urls):
        raise UnsupportedLocation(f"{next(str(u) for u in urls if is_storage_url(u))}: a bucket folder is copied to "
                                  f"this machine for this command, which remote --scheduler workers cannot read; "
                                  f"run it without --scheduler (the local cluster), or copy the folder to a shared disk")


@contextlib.contextmanager
def readable_folder(location: object, name: str = "folder") -> Iterator[Path]:
    """A local folder with the content of `location`: itself when local, else a temporary copy."""
    if not is_storage_url(location):
        yield Path(location)
        return
    fs, path = filesystem(str(location))
    if not fs.exists(path):
        raise FileNotFoundError(f"{location}: no such folder in the bucket")
    with tempfile.TemporaryDirectory(prefix="mer-read-") as work:
        local = Path(work) / name
        download_folder(fs, path, local)
        local.mkdir(exist_ok=True)
        yield local


@contextlib.contextmanager
def writable_folder(location: object, last: tuple[str, ...], name: str = "folder") -> Iterator[Path]:
    """A local folder to write `location` in: itself when local; else a temporary copy of what the bucket
    holds there, uploaded when the block ends without an error (objects the block removed are removed
    in the bucket too, the names in `last` go up last)."""
    if not is_storage_url(location):
        yield Path(location)
        return
    fs, path = filesystem(str(location))
    with tempfile.TemporaryDirectory(prefix="mer-write-") as work:
        local = Path(work) / name
        if fs.exists(path):
            download_folder(fs, path, local)
        yield local
        upload_folder(local, str(location), last=last)
