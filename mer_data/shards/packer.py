"""Packing staged samples into split-pure, size-capped, shuffled, byte-reproducible shards.

Shards are named `{split}-{NNNNNN}.tar`, numbered from 000000 within each split. Within a split
the samples are sorted by key and then shuffled with a seed derived from (seed, split), so the
result depends only on the set of samples and the options: not on the order the samples arrived
in (the number of Dask workers), not on the process, not on the machine.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mer_data.records import StagedSample
from mer_data.shards.atomic import atomic_path
from mer_data.shards.hashing import HashingWriter
from mer_data.shards.layout import SHARD_NAME, SPLITS, shard_name
from mer_data.shards.tarwriter import (
    MEMBER_ORDER,
    DeterministicTarWriter,
    archive_bytes,
    key_problem,
    sample_bytes,
)

_EXTENSION = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class PackError(ValueError):
    """The samples cannot be packed as given; the message names every offending key."""


class ShardSizeWarning(UserWarning):
    """A single sample is larger than the shard byte cap, so its shard exceeds the cap."""


@dataclass(frozen=True)
class ShardInfo:
    """One written shard, as the dataset card lists it."""

    name: str
    split: str
    count: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Placement(NamedTuple):
    """Where a sample landed: its shard and its 0-based position among the shard's samples.

    A named tuple, so `shard, position = result.placements[key]` works too.
    """

    shard: str
    position: int


@dataclass
class PackResult:
    """What pack_shards wrote. Shards are in split order (train, valid, test), then by number."""

    shards: list[ShardInfo] = field(default_factory=list)
    placements: dict[str, Placement] = field(default_factory=dict)
    oversized: list[str] = field(default_factory=list)  # keys alone over max_bytes
    removed_stale: list[str] = field(default_factory=list)  # shard files of an earlier pack


def split_seed(seed: int, split: str) -> int:
    """The shuffle seed of one split: the first 8 bytes of SHA-256("<seed>:<split>").

    Python's hash() is salted per process, so it would give a different order in every run.
    """
    digest = hashlib.sha256(f"{seed}:{split}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def shuffled(samples: Sequence[StagedSample], seed: int, split: str) -> list[StagedSample]:
    """The samples of one split in shard order: sorted by key, then a seeded shuffle.

    Sorting first makes the order independent of the input order. random.Random's seeding by
    an int and its shuffle have been stable across Python 3 releases.
    """
    ordered = sorted(samples, key=lambda sample: sample.key)
    random.Random(split_seed(seed, split)).shuffle(ordered)
    return ordered


def pack_shards(
    samples: Sequence[StagedSample],
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    max_bytes: int,
    max_count: int,
    members: Sequence[str] = MEMBER_ORDER,
) -> PackResult:
    """Write the samples as `{split}-{NNNNNN}.tar` shards in `out_dir`.

    A shard holds at most `max_count` samples and its file at most `max_bytes` bytes; a sample
    never splits, so one larger than `max_bytes` on its own gets a shard of its own (with a
    ShardSizeWarning). Every sample must have exactly the member extensions in `members`; member
    files are copied as-is. All samples are checked before anything is written. Each shard is
    written atomically; shard files in `out_dir` left by an earlier pack and not rewritten now
    are removed, so the directory holds exactly the shards in the result.
    """
    _check_options(seed, max_bytes, max_count)
    extensions = _check_extensions(members)
    by_split = _group_by_split(samples, extensions)
    sizes = {sample.key: _sample_size(sample, extensions) for sample in samples}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    result = PackResult()
    for split in SPLITS:
        ordered = shuffled(by_split[split], seed, split)
        result.oversized += _warn_oversized(ordered, sizes, max_bytes)
        for number, batch in enumerate(plan_shards(ordered, sizes, max_bytes, max_count)):
            shard = _write_shard(out / shard_name(split, number), split, batch, extensions, sizes)
            result.shards.append(shard)
            for position, sample in enumerate(batch):
                result.placements[sample.key] = Placement(shard.name, position)
    result.removed_stale = _remove_stale_shards(out, {shard.name for shard in result.shards})
    return result


def plan_shards(
    ordered: Sequence[StagedSample], sizes: dict[str, int], max_bytes: int, max_count: int
) -> list[list[StagedSample]]:
    """Cut the ordered samples into consecutive shards that respect both caps.

    `sizes` is each sample's size inside a tar (headers and padding included), so the cap
    applies to the finished file, end-of-archive blocks and record padding included.
    """
    shards: list[list[StagedSample]] = []
    current: list[StagedSample] = []
    current_bytes = 0
    for sample in ordered:
        size = sizes[sample.key]
        fits = len(current) < max_count and archive_bytes(current_bytes + size) <= max_bytes
        if current and not fits:
            shards.append(current)
            current, current_bytes = [], 0
        current.append(sample)
        current_bytes += size
    if current:
        shards.append(current)
    return shards


def _check_options(seed: int, max_bytes: int, max_count: int) -> None:
    # The seed goes into the dataset card; "1" and 1 would shuffle differently.
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    for name, value in (("max_bytes", max_bytes), ("max_count", max_count)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_extensions(members: Sequence[str]) -> list[str]:
    if isinstance(members, str) or not members:
        raise ValueError(f"members must be a non-empty sequence of extensions, got {members!r}")
    if len(set(members)) != len(members):
        raise ValueError(f"members lists an extension twice: {list(members)}")
    bad = [ext for ext in members if not _EXTENSION.match(ext)]
    if bad:
        raise ValueError(f"invalid member extensions {bad} (letters, digits, '_', inner '.')")
    return list(members)


def _group_by_split(
    samples: Sequence[StagedSample], extensions: list[str]
) -> dict[str, list[StagedSample]]:
    """The samples per split, after checking every sample; raises PackError listing them all."""
    by_split: dict[str, list[StagedSample]] = {split: [] for split in SPLITS}
    problems: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        problems.extend(_sample_problems(sample, extensions, seen))
        seen.add(sample.key)
        if sample.split in by_split:
            by_split[sample.split].append(sample)
    if problems:
        raise PackError("cannot pack:\n  " + "\n  ".join(problems))
    return by_split


def _sample_problems(sample: StagedSample, extensions: list[str], seen: set[str]) -> list[str]:
    problems = []
    key_issue = key_problem(sample.key)
    if key_issue:
        problems.append(f"sample {sample.key!r}: {key_issue}")
    if sample.key in seen:
        problems.append(f"sample {sample.key!r}: the key occurs more than once")
    if sample.split not in SPLITS:
        problems.append(f"sample {sample.key!r}: unknown split {sample.split!r} (expected one of {SPLITS})")
    missing = [ext for ext in extensions if ext not in sample.members]
    unexpected = sorted(set(sample.members) - set(extensions))
    if missing or unexpected:
        problems.append(
            f"sample {sample.key!r}: members must be exactly {extensions}; "
            f"missing {missing}, unexpected {unexpected}"
        )
    return problems


def _sample_size(sample: StagedSample, extensions: list[str]) -> int:
    try:
        member_sizes = {ext: Path(sample.members[ext]).stat().st_size for ext in extensions}
    except OSError as error:
        raise PackError(f"sample {sample.key!r}: cannot read a member file: {error}") from error
    return sample_bytes(sample.key, member_sizes)


def _warn_oversized(ordered: list[StagedSample], sizes: dict[str, int], max_bytes: int) -> list[str]:
    """Warn about, and return the keys of, samples that alone make a shard over max_bytes."""
    oversized = []
    for sample in ordered:
        alone = archive_bytes(sizes[sample.key])
        if alone > max_bytes:
            oversized.append(sample.key)
            warnings.warn(
                f"sample {sample.key!r} needs a {alone}-byte shard, more than max_bytes={max_bytes}: "
                "it gets a shard of its own",
                ShardSizeWarning,
                stacklevel=3,
            )
    return oversized


def _write_shard(
    path: Path, split: str, batch: list[StagedSample], extensions: list[str], sizes: dict[str, int]
) -> ShardInfo:
    planned_bytes = archive_bytes(sum(sizes[sample.key] for sample in batch))
    with atomic_path(path) as temp:
        with open(temp, "wb") as raw:
            stream = HashingWriter(raw)
            with DeterministicTarWriter(stream) as tar:
                for sample in batch:
                    tar.add_sample(sample.key, {ext: sample.members[ext] for ext in extensions})
        # The caps were checked against the planned size; a mismatch means a member file
        # changed between planning and writing, and the shard could break its cap.
        if stream.bytes_written != planned_bytes:
            raise PackError(
                f"{path.name}: wrote {stream.bytes_written} bytes, planned {planned_bytes}; "
                "did a member file change while packing?"
            )
    return ShardInfo(path.name, split, len(batch), stream.bytes_written, stream.hexdigest())


def _remove_stale_shards(out_dir: Path, written: set[str]) -> list[str]:
    # A shard left by an earlier, larger pack would otherwise be read as part of this dataset
    # by any `train-*.tar` glob, though neither the index nor the card knows it.
    stale = sorted(p.name for p in out_dir.iterdir() if SHARD_NAME.match(p.name) and p.name not in written)
    for name in stale:
        (out_dir / name).unlink()
    return stale
