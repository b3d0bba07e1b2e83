"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

Every output of the packer (shards, index.parquet, dataset.json, errors.jsonl) is written to a
temporary file in the destination directory (same filesystem, so the rename is atomic), fsync'd,
then renamed over the destination. Temporary names start with `.tmp-` and do not end in the
destination's suffix, so globs such as `train-*.tar` never pick up a half-written shard.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once at import, while the process is still
    # single-threaded, rather than racing other threads (Dask workers) later.
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished outputs get the permissions an
# ordinary open() would have given them, so datasets can be shared.
_FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is fsync'd and renamed over `path`.

    The caller writes the temporary file (it already exists, empty) and closes it before the
    block ends. If the block raises, the temporary file is removed and `path` is left untouched.
    """
    target = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        _fsync_file(temp)
        os.chmod(temp, _FILE_MODE)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path` as a Path."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically, byte for byte (no newline translation on any OS)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable. Directories cannot be opened on Windows; there the
    # rename is as durable as the OS makes it.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
