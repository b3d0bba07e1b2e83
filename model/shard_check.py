"""What a run reads, checked against what its shard folder says it holds, so a run never trains or
evaluates on less (or on other samples) without saying so.

Where the shards are (RUN/config.json), and which locations may be opened at all:
- local locations are stored absolute, with a fingerprint of each shard folder (the SHA-256 of its
  dataset.json, else of its index.parquet), so `mer evaluate`, `--resume` and `mer compare` read the
  same folder from any working directory and warn when its data changed since training;
- object-storage URLs (s3://, gs://, ...; mer_data/storage.py) are opened by this package with fsspec,
  never by a command, and their side files are read from the bucket (fingerprinted the same way);
- webdataset opens every other URL but file: by running a command (`pipe:` runs a shell command; http(s),
  sftp, scp, gs, ais and hf URLs run curl, gsutil or ais). Such a location is opened only when it
  was typed on the command line behind `--allow-command-urls`; one read from a stored config never is.

Before the run folder is written (expect_split), from the side files of each shard folder:
- each shard is a tar archive, listed in index.parquet and in dataset.json with the size it has on
  disk (a shard cut short or changed after conversion has another size).
While streaming, in every reader (sample_problem, a pipeline stage of model/data.py), with the
rules `mer validate` and `mer features` apply:
- the sample's key is a valid key (mer_data.shards.tarwriter.key_problem): members named
  `../x.json`, `/abs/x.json` or `dir/x.json` are refused;
- the key is one index.parquet lists for this shard, and its metadata's split is the shard's
  (split purity: a train sample copied into a test shard is refused).
At the end of each pass (SplitExpectation.after_pass): the samples read equal those the index lists
for the split's shards.

Each problem stops the run with one message naming the shard and `mer validate`; with
`allow_partial` it is a warning instead, and the run records samples read against expected in its
log and metrics.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterable

from mer_data import storage
from mer_data.locations import local_folder
from mer_data.shards.hashing import sha256_file
from mer_data.shards.folder import ShardFolder, ShardFolderError
from mer_data.shards.layout import CARD_NAME, INDEX_NAME, SHARD_NAME
from mer_data.shards.tarwriter import key_problem

COMMAND_URL_FLAG = "--allow-command-urls"
PARTIAL_FLAG = "--allow-partial"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)


class ShardCheckError(ValueError):
    """What a run would read disagrees with its shard folder's index or card (the message says how)."""


class UnsafeShardSource(ValueError):
    """A shard location that webdataset opens by running a command, not allowed here."""


# --------------------------------------------------------------------------------------------
# Locations


def command_scheme(source: str) -> str | None:
    """The URL scheme of `source` when webdataset opens it by running a command (every scheme but file:
    and the object stores this package opens itself with fsspec)."""
    match = _URL.match(str(source))
    if match is None or match.group(1).lower() == "file" or len(match.group(1)) == 1:  # C:\... is a path
        return None
    scheme = match.group(1).lower()
    if scheme in storage.STORAGE_SCHEMES and str(source)[match.end():].startswith("//"):
        return None
    return scheme


def is_storage(source: str) -> bool:
    """`source` is an object-storage URL (opened with fsspec; command_scheme is None for it)."""
    match = _URL.match(str(source))
    return (match is not None and match.group(1).lower() in storage.STORAGE_SCHEMES
            and str(source)[match.end():].startswith("//"))


def check_source_safety(sources: Iterable[str], *, allow_command_urls: bool) -> None:
    """Refuse any location that would run a command unless the caller allows it (see the module doc)."""
    if allow_command_urls:
        return
    for source in map(str, sources):
        scheme = command_scheme(source)
        if scheme is not None:
            raise UnsafeShardSource(
                f"{source}: webdataset opens {scheme}: URLs by running a command; such a shard location is used only"
                f" when typed on the command line with {COMMAND_URL_FLAG}, never read from a run's config.json")


def absolute_sources(sources: Iterable[str]) -> list[str]:
    """Local locations made absolute (file: URLs read as paths the way every written folder reads
    them, mer_data.locations.local_folder); URLs that run a command as they are."""
    return [source if command_scheme(source) is not None or is_storage(source)
            else os.path.abspath(local_folder(source)) for source in map(str, sources)]


def data_fingerprint(sources: Iterable[str]) -> dict[str, str]:
    """{side file: SHA-256} of the folder of each local location: dataset.json, else index.parquet."""
    fingerprint = {}
    for source in map(str, sources):
        if is_storage(source):
            fingerprint.update(_storage_fingerprint(source))
            continue
        if command_scheme(source) is not None:
            continue
        folder = source if os.path.isdir(source) else os.path.dirname(source)
        for name in (CARD_NAME, INDEX_NAME, "features.json"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                fingerprint[path] = sha256_file(path)
                break
    return fingerprint


def _storage_fingerprint(source: str) -> dict[str, str]:
    """data_fingerprint of a storage location: the side file's URL and the SHA-256 of its bytes."""
    folder = source if not source.endswith(".tar") and "{" not in source else storage.parent_url(source)
    for name in (CARD_NAME, INDEX_NAME, "features.json"):
        data = storage.read_bytes(storage.join(folder, name))
        if data is not None:
            return {storage.join(folder, name): hashlib.sha256(data).hexdigest()}
    return {}


def _current_digest(path: str) -> str | None:
    """The SHA-256 of a fingerprinted side file now (local path or storage URL); None when it is gone."""
    if is_storage(path):
        data = storage.read_bytes(path)
        return None if data is None else hashlib.sha256(data).hexdigest()
    return sha256_file(path) if os.path.isfile(path) else None


def data_changes(sources: list[str], fingerprint: dict[str, str] | None) -> list[str]:
    """Warnings for a stored run: relative locations (runs trained before they were stored absolute)
    and side files whose SHA-256 is not the one recorded at training."""
    notes = [f"{source}: a relative shard location (stored by an older mer train): read from the current directory"
             for source in sources if command_scheme(source) is None and not is_storage(source)
             and not os.path.isabs(source)]
    for path, digest in sorted((fingerprint or {}).items()):
        current = _current_digest(path)
        if current is None:
            notes.append(f"{path}: gone since the run trained (its data folder moved or was removed)")
        elif current != digest:
            notes.append(f"{path}: changed since the run trained (SHA-256 {digest[:12]}... then): the data is not "
                         f"the data the run was trained on")
    return notes


# --------------------------------------------------------------------------------------------
# Before a pass: the side files


def check_is_tar(shard: str) -> None:
    """ShardCheckError unless the local file `shard` is a tar archive (say, a file given instead of a folder)."""
    if not tarfile.is_tarfile(shard):
        raise ShardCheckError(f"{shard}: not a tar archive (mer train reads a shard folder, or its"
                              f" train/valid/test-NNNNNN.tar shards)")


@dataclass
class SplitExpectation:
    """What the index says the resolved shards of one split hold, and what is known to be wrong."""

    split: str
    allow_partial: bool = False
    keys: dict[str, frozenset[str]] = field(default_factory=dict)   # shard location -> keys index.parquet lists
    unverified: list[str] = field(default_factory=list)             # shards without an index to check against
    problems: list[str] = field(default_factory=list)               # found before reading (allow_partial: warnings)

    @property
    def samples(self) -> int | None:
        """Samples the index lists for the split's shards; None where a shard has no index."""
        return None if self.unverified else sum(len(keys) for keys in self.keys.values())

    def after_pass(self, read: int) -> str | None:
        """After a full pass that read `read` samples: None when they are those expected, else the
        shortfall (raised as ShardCheckError unless allow_partial)."""
        expected = self.samples
        if expected is None or read == expected:
            return None
        message = (f"the {self.split} pass read {read} samples, but index.parquet lists {expected} in its"
                   f" {len(self.keys)} shard(s)")
        if not self.allow_partial:
            raise ShardCheckError(refusal(message))
        return message


def refusal(message: str) -> str:
    return (f"{message}; check the shard folder with `mer validate`, or pass {PARTIAL_FLAG} to go on with what is"
            f" readable (the run's log and metrics then record samples read against expected)")


def expect_split(shards: list[str], split: str, *, allow_partial: bool = False) -> SplitExpectation:
    """The expectation of the resolved `shards` of `split`; ShardCheckError on a problem unless allow_partial."""
    expectation = SplitExpectation(split, allow_partial)
    folders: dict[str, tuple[dict | None, dict[str, list[str]] | None]] = {}
    for shard in shards:
        if command_scheme(shard) is not None:
            expectation.unverified.append(shard)
            continue
        if is_storage(shard):
            folder = storage.parent_url(shard)
        else:
            check_is_tar(shard)
            folder = os.path.dirname(os.path.abspath(shard))
        if folder not in folders:
            folders[folder] = _side_files(ShardFolder(folder))
        card, index = folders[folder]
        name = os.path.basename(shard)
        if index is None:
            expectation.unverified.append(shard)
        elif name not in index:
            expectation.problems.append(f"{shard}: not listed in {INDEX_NAME} (a shard added after conversion?)")
        else:
            expectation.keys[shard] = frozenset(index[name])
        expectation.problems += _card_problems(shard, card, index)
    if expectation.problems and not allow_partial:
        shown = expectation.problems[0] + (f" (and {len(expectation.problems) - 1} more)"
                                           if len(expectation.problems) > 1 else "")
        raise ShardCheckError(refusal(shown))
    return expectation


def _side_files(folder: ShardFolder) -> tuple[dict | None, dict[str, list[str]] | None]:
    """(dataset card, keys by shard) of a shard folder, local or in object storage."""
    try:
        return folder.card, folder.keys_by_shard()
    except ShardFolderError as error:
        raise ShardCheckError(str(error)) from error


def _card_problems(shard: str, card: dict | None, index: dict[str, list[str]] | None) -> list[str]:
    """The shard against its record in dataset.json (count and bytes; the SHA-256 is `mer validate`'s)."""
    if card is None:
        return []
    name = os.path.basename(shard)
    record = next((entry for entry in card.get("shards", []) if entry.get("name") == name), None)
    if record is None:
        return [f"{shard}: not listed in {CARD_NAME}"]
    problems = []
    size = storage.object_size(shard) if is_storage(shard) else os.path.getsize(shard)
    if record.get("bytes") is not None and size != record["bytes"]:
        problems.append(f"{shard}: {size} bytes, but {CARD_NAME} says {record['bytes']}: the shard was cut short or"
                        f" changed after conversion")
    if index is not None and name in index and record.get("count") is not None and record["count"] != len(index[name]):
        problems.append(f"{shard}: {INDEX_NAME} lists {len(index[name])} samples, {CARD_NAME} {record['count']}")
    return problems


# --------------------------------------------------------------------------------------------
# While streaming


def sample_problem(sample: dict[str, Any], keys: frozenset[str] | None) -> str | None:
    """Why a raw webdataset sample must not be used (see the module doc), or None.

    `keys`: the keys index.parquet lists for the sample's shard (None: no index to check against)."""
    key, url = str(sample.get("__key__")), str(sample.get("__url__", "?"))
    shard = url.rsplit("/", 1)[-1]
    reason = key_problem(key)
    if reason is not None:
        members = ", ".join(f"{key}.{ext}" for ext in sample if not ext.startswith("__"))
        return f"{url}: members {members!r}: {reason} (`mer validate` reports them as bad-member-name)"
    if keys is not None and key not in keys:
        return f"{url}: sample {key} is not one {INDEX_NAME} lists for {shard} (added or moved after conversion)"
    match = SHARD_NAME.match(shard)
    if match and "json" in sample:
        try:
            split = json.loads(sample["json"]).get("split")
        except (ValueError, AttributeError):
            return None   # unreadable metadata: decoding says so, naming the sample
        if split != match["split"]:
            return f"{url}: sample {key} is a {split} sample in a {match['split']} shard (split purity)"
    return None


def warn(message: str) -> None:
    """A warning from a reader (a DataLoader worker has no log function of the run)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
