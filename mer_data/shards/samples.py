"""Reading the samples of one shard: tolerant of damage, which is reported instead of raised.

    for sample in read_samples("shards/train-000000.tar", problems.append):
        sample.key, sample.position, sample.members["json"], sample.complete

webdataset's rule groups the members: consecutive members with the same key (the name up to its
first '.') form a sample. Damage becomes a ReadProblem handed to `on_problem` as it is met, so a
caller can keep it in order with what it finds itself (`mer validate` turns each into a finding):
- corrupt-tar: the file is no tar, a header or a member is unreadable (the reading ends; a member
  cut short ends its sample with complete=False), or the bytes after the last member are not an
  end-of-archive marker;
- bad-member-name: a member that is not a regular file named `<key>.<ext>` with a valid key (skipped);
- duplicate-key: a key that comes back after another key (a new sample with the same key);
- member-set: an extension given twice in one sample (the first is kept).
A shard is a local path or an object-storage URL (mer_data/storage.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from mer_data.shards.tarwriter import key_problem

# A tar ends with two zero blocks (then padding to a whole record).
END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE


@dataclass
class ShardSample:
    key: str
    position: int  # 0-based among the shard's samples
    members: dict[str, bytes] = field(default_factory=dict)
    complete: bool = True  # False: the tar broke inside this sample


@dataclass(frozen=True)
class ReadProblem:
    """Damage met while reading a shard; `kind` is one of the kinds in the module doc, `id` the key
    or member name it concerns (None: the shard as a whole), `details` what else locates it."""

    kind: str
    message: str
    id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


OnProblem = Callable[[ReadProblem], None]


def read_samples(shard: str | os.PathLike[str], on_problem: OnProblem) -> Iterator[ShardSample]:
    """The shard's samples in order; damage goes to `on_problem` (and a broken tar ends the reading)."""
    name = _name(shard)
    seen: set[str] = set()
    current: ShardSample | None = None
    position = 0
    for key, ext, data in _members(shard, on_problem):
        if current is not None and key == current.key:
            if data is None:
                current.complete = False
            else:
                _add_member(current, ext, data, on_problem)
            continue
        if current is not None:
            yield current
        if key in seen:
            on_problem(ReadProblem("duplicate-key", f"the key comes back after other samples in {name}", key,
                                   {"first": name}))
        current = ShardSample(key, position, complete=data is not None)
        position += 1
        seen.add(key)
        if data is not None:
            current.members[ext] = data
    if current is not None:
        yield current


def read_metadata(shard: str | os.PathLike[str], keys: set[str]) -> dict[str, dict]:
    """key -> the parsed `json` member of each sample in `keys`, reading only those members (tarfile
    seeks over the media). Strict: raises OSError, tarfile.TarError or ValueError (bad JSON)."""
    metadata: dict[str, dict] = {}
    with _open_tar(shard) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            if extension == "json" and key in keys:
                metadata[key] = json.loads(tar.extractfile(member).read())
    return metadata


def sample_keys(shard: str | os.PathLike[str]) -> list[str]:
    """The keys of the shard's members in order, once each; none where the tar cannot be read."""
    try:
        with _open_tar(shard) as tar:
            return list(dict.fromkeys(name.partition(".")[0] for name in tar.getnames()))
    except (tarfile.TarError, OSError):
        return []


def _name(shard: str | os.PathLike[str]) -> str:
    return os.fspath(shard).rstrip("/").rsplit("/", 1)[-1]


def _is_storage(shard: str | os.PathLike[str]) -> bool:
    from mer_data.storage import is_storage_url

    return isinstance(shard, str) and is_storage_url(shard)


@contextlib.contextmanager
def _open_tar(shard: str | os.PathLike[str]) -> Iterator[tarfile.TarFile]:
    """The shard as a tar read front to back: a local file by name, an object through fsspec."""
    with contextlib.ExitStack() as stack:
        if _is_storage(shard):
            from mer_data.storage import open_url

            tar = tarfile.open(fileobj=stack.enter_context(open_url(str(shard), "rb")), mode="r:")
        else:
            tar = tarfile.open(shard, mode="r:")
        with tar:
            yield tar


def _add_member(sample: ShardSample, ext: str, data: bytes, on_problem: OnProblem) -> None:
    if ext in sample.members:
        on_problem(ReadProblem("member-set", f"member .{ext} given twice; the first is checked", sample.key,
                               {"twice": [ext]}))
        return
    sample.members[ext] = data


def _members(shard: str | os.PathLike[str], on_problem: OnProblem) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, extension, bytes) of each well-named regular member; bytes None for the member the
    archive broke in (the last one yielded)."""
    with contextlib.ExitStack() as stack:
        try:
            tar = stack.enter_context(_open_tar(shard))
        except (tarfile.TarError, OSError) as error:
            on_problem(ReadProblem("corrupt-tar", f"not a readable tar: {error}"))
            return
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError) as error:
                on_problem(ReadProblem("corrupt-tar", f"unreadable after byte {tar.offset}: {error}", None,
                                       {"offset": tar.offset}))
                return
            if info is None:
                break
            named = _member_name(info, on_problem)
            if named is None:
                continue
            key, ext = named
            try:
                data = tar.extractfile(info).read()
            except (tarfile.TarError, OSError) as error:
                on_problem(ReadProblem("corrupt-tar", f"member {info.name} is cut short: {error}", key,
                                       {"member": info.name}))
                yield key, ext, None
                return
            yield key, ext, data
        trailer = _trailer_problem(tar.fileobj, tar.offset)
        if trailer:
            on_problem(ReadProblem("corrupt-tar", trailer, None, {"offset": tar.offset}))


def _member_name(info: tarfile.TarInfo, on_problem: OnProblem) -> tuple[str, str] | None:
    """(key, ext) of a member, or None with a problem where it cannot be a sample member."""
    key, dot, ext = info.name.partition(".")
    if not info.isreg():
        reason = "is not a regular file"
    elif not dot or not ext:
        reason = "has no extension: a member is named <key>.<ext>"
    else:
        reason = key_problem(key)
    if reason is None:
        return key, ext
    on_problem(ReadProblem("bad-member-name", f"member {info.name!r} {reason}", info.name))
    return None


def _trailer_problem(stream: IO[bytes], offset: int) -> str | None:
    """Why the bytes after the last member are not a tar's end (two zero blocks, zero padding)."""
    size = stream.seek(0, os.SEEK_END)
    if size - offset < END_OF_ARCHIVE:
        return f"no end-of-archive marker after the last member (the file ends at byte {size}): truncated"
    stream.seek(offset)
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        if chunk.strip(b"\0"):
            return f"unreadable data after byte {offset}: not a tar header (damaged or truncated archive)"
    return None
