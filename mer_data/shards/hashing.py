"""SHA-256 of files and of streams being written, for the checksums in the dataset card."""
from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashingWriter:
    """A write-only file wrapper that hashes and counts the bytes passing through.

    Shards are hashed while they are written, so a multi-GB shard is not read back just to
    checksum it. Offers the `write` and `tell` that tarfile needs.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._digest = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._raw.write(data)
        self._digest.update(data)
        self.bytes_written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.bytes_written

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
