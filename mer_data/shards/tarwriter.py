"""Deterministic tar writing: the same samples, in the same order, give byte-identical tars.

Every member header is fixed: mtime 0, uid/gid 0, empty uname/gname, mode 0o644, regular file,
POSIX pax format (which equals plain USTAR unless a name needs an extended header, and then the
extended header is itself fixed). Nothing about the machine, the user or the clock gets in.

Members are named `<key>.<ext>`. Within a sample they are written in MEMBER_ORDER: `json`
(metadata) first, so a streaming reader can decide about a sample before its media arrive, then
`txt`, then the media, small before large: `flac`, `mp4`. Extensions outside MEMBER_ORDER follow,
alphabetically.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

MEMBER_ORDER = ("json", "txt", "flac", "mp4")

TAR_FORMAT = tarfile.PAX_FORMAT
NAME_ENCODING = "utf-8"
MEMBER_MODE = 0o644

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
# A tar ends with two zero blocks; tarfile then pads the archive to a whole record.
_END_OF_ARCHIVE = 2 * _BLOCK


class InvalidKeyError(ValueError):
    """A sample key that would not survive as a `<key>.<ext>` member in every reader."""


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a sample key, or None when it can.

    Readers (webdataset, Hugging Face datasets) split a member name at its first `.`, so a key
    must not contain one. Keys may start with `-` or a single `_` (MOSEI video ids do).
    """
    if not key:
        return "the key is empty"
    if "." in key:
        return "the key contains '.', which readers take as the start of the member extension"
    if "/" in key or "\\" in key:
        return "the key contains a path separator"
    if key.startswith("__"):
        # datasets' tar iterator skips basenames starting with "__" as hidden files: the sample
        # would silently vanish from load_dataset("webdataset", ...).
        return "the key starts with '__', which Hugging Face datasets skips as a hidden file"
    if any(char.isspace() or not char.isprintable() for char in key):
        return "the key contains whitespace or control characters"
    return None


def check_key(key: str) -> None:
    """Raise InvalidKeyError, naming the key, if it cannot be a sample key."""
    problem = key_problem(key)
    if problem:
        raise InvalidKeyError(f"invalid sample key {key!r}: {problem}")


def ordered_extensions(extensions: Iterable[str]) -> list[str]:
    """The extensions in the order members are written: MEMBER_ORDER first, then the rest sorted."""
    known = [ext for ext in MEMBER_ORDER if ext in extensions]
    others = sorted(set(extensions) - set(MEMBER_ORDER))
    return known + others


def member_info(name: str, size: int) -> tarfile.TarInfo:
    """The fixed header of a regular-file member."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = tarfile.REGTYPE
    info.mode = MEMBER_MODE
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def member_bytes(name: str, size: int) -> int:
    """Bytes a member takes in the archive: header(s) plus data padded to whole blocks."""
    header = member_info(name, size).tobuf(TAR_FORMAT, NAME_ENCODING, "strict")
    return len(header) + _round_up(size, _BLOCK)


def sample_bytes(key: str, member_sizes: Mapping[str, int]) -> int:
    """Bytes a sample takes in the archive, given the size of each member file by extension."""
    return sum(member_bytes(f"{key}.{ext}", size) for ext, size in member_sizes.items())


def archive_bytes(content_bytes: int) -> int:
    """Size of a finished tar whose members take `content_bytes` (end blocks, record padding)."""
    return _round_up(content_bytes + _END_OF_ARCHIVE, _RECORD)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class DeterministicTarWriter:
    """Writes samples into a tar stream with fixed headers and a fixed member order.

    Use as a context manager; the underlying `fileobj` (needs `write` and `tell`) is not closed.
    """

    def __init__(self, fileobj: BinaryIO):
        self._tar = tarfile.open(fileobj=fileobj, mode="w", format=TAR_FORMAT, encoding=NAME_ENCODING)

    def add_sample(self, key: str, members: Mapping[str, Path]) -> None:
        """Add one sample: each member file (by extension) copied as-is, as `<key>.<ext>`."""
        check_key(key)
        for ext in ordered_extensions(members):
            self._add_file(f"{key}.{ext}", Path(members[ext]))

    def _add_file(self, name: str, path: Path) -> None:
        with open(path, "rb") as handle:
            self._tar.addfile(member_info(name, os.fstat(handle.fileno()).st_size), handle)

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> DeterministicTarWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
