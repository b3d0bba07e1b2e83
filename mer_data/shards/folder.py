"""Reading the shard contract: one converted folder, opened once.

    folder = ShardFolder("shards/")               # or "file:///data/shards", "s3://bucket/shards"
    folder.card                                   # dataset.json (None where there is none)
    folder.shards("train")                        # the train-NNNNNN.tar shards, as paths or URLs
    folder.index_rows(["key", "shard"])           # index.parquet, one dict per sample
    folder.errors(), folder.excluded()            # errors.jsonl as Problems, excluded.jsonl records
    folder.label_space()                          # (corpus, label names)
    for sample in folder.samples("train-000000.tar", on_problem): ...

The names are mer_data/shards/layout.py's; only strictly named shards are shards. Side files are
read on first use and kept: a ShardFolder describes the folder as it was when first asked, which is
what a run that reads it wants (a conversion still writing it is kept out by its lock and by
dataset.json being written last). Every unreadable side file is a ShardFolderError naming it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from mer_data import storage
from mer_data.locations import local_folder
from mer_data.records import Problem
from mer_data.shards.layout import CARD_NAME, ERRORS_NAME, EXCLUDED_NAME, INDEX_NAME, SHARD_NAME
from mer_data.shards.samples import OnProblem, ShardSample, read_metadata, read_samples


class ShardFolderError(ValueError):
    """A side file of a shard folder that cannot be read; the message names the file and why."""


class ShardFolder:
    """A converted folder: a local path, a file:// URL or an object-storage URL (mer_data/storage.py)."""

    def __init__(self, location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None):
        text = os.fspath(location)
        self.is_storage = storage.is_storage_url(text)
        self.location = text.rstrip("/") if self.is_storage else str(local_folder(text))
        self.storage_options = None if storage_options is None else dict(storage_options)

    @classmethod
    def containing(cls, location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
                   ) -> ShardFolder:
        """The folder `location` names: itself when it is a folder, else the folder its file lies in."""
        text = os.fspath(location)
        if storage.is_storage_url(text):
            is_file = text.endswith(".tar")
            return cls(storage.parent_url(text) if is_file else text, storage_options)
        path = local_folder(text)
        return cls(path if path.is_dir() else path.parent, storage_options)

    def __repr__(self) -> str:
        return f"ShardFolder({self.location!r})"

    def __str__(self) -> str:
        return self.location

    def path_of(self, name: str) -> str:
        """The location of the file `name` in the folder (a path, or a URL for object storage)."""
        return storage.join(self.location, name) if self.is_storage else str(Path(self.location, name))

    def read_bytes(self, name: str) -> bytes | None:
        """The bytes of the file `name`, or None when the folder has none."""
        if self.is_storage:
            return storage.read_bytes(self.path_of(name), self.storage_options)
        path = Path(self.location, name)
        if not path.is_file():
            return None
        try:
            return path.read_bytes()
        except OSError as error:
            raise ShardFolderError(f"{path}: unreadable: {error}") from error

    # ----------------------------------------------------------------------------------------
    # Side files

    @cached_property
    def card(self) -> dict[str, Any] | None:
        """dataset.json, parsed; None where the folder has none (a conversion not finished, loose shards)."""
        data = self.read_bytes(CARD_NAME)
        if data is None:
            return None
        try:
            card = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ShardFolderError(f"{self.path_of(CARD_NAME)}: unreadable dataset card: {error}") from error
        if not isinstance(card, dict):
            raise ShardFolderError(f"{self.path_of(CARD_NAME)}: unreadable dataset card: not a JSON object")
        return card

    def index_rows(self, columns: Sequence[str] | None = None) -> list[dict[str, Any]] | None:
        """The rows of index.parquet (only `columns`, None: all), in file order; None where there is none."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.read_bytes(INDEX_NAME)
        if data is None:
            return None
        try:
            return pq.read_table(pa.BufferReader(data), columns=columns).to_pylist()
        except Exception as error:  # pyarrow raises several types for damaged files and missing columns
            raise ShardFolderError(f"{self.path_of(INDEX_NAME)}: unreadable index: {error}") from error

    def keys_by_shard(self) -> dict[str, list[str]] | None:
        """shard name -> its keys in position order, from index.parquet; None where it is absent or
        unreadable. For readers that cross-check what a shard holds (feature extraction, training);
        `mer validate` reports an unreadable index itself."""
        try:
            rows = self.index_rows(["key", "shard", "position"])
        except ShardFolderError:
            return None
        if rows is None:
            return None
        keys: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            keys.setdefault(row["shard"], []).append((row["position"], row["key"]))
        return {shard: [key for _, key in sorted(pairs)] for shard, pairs in keys.items()}

    def errors(self) -> list[Problem]:
        """errors.jsonl as Problems, in file order (none where the file is absent)."""
        return [Problem(**record) for record in self._json_lines(ERRORS_NAME)]

    def excluded(self) -> list[dict[str, Any]]:
        """excluded.jsonl's records ({"utterance", "label", "reason"}), in file order."""
        return self._json_lines(EXCLUDED_NAME)

    def _json_lines(self, name: str) -> list[dict[str, Any]]:
        data = self.read_bytes(name)
        if data is None:
            return []
        records = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ShardFolderError(f"{self.path_of(name)}:{number}: not a JSON object: {error}") from error
            if not isinstance(record, dict):
                raise ShardFolderError(f"{self.path_of(name)}:{number}: not a JSON object")
            records.append(record)
        return records

    # ----------------------------------------------------------------------------------------
    # Shards and samples

    def shard_names(self, split: str | None = None) -> list[str]:
        """The names of the folder's shards (of `split`; None: every split), sorted."""
        return [name for name in self._names()
                if (match := SHARD_NAME.match(name)) and (split is None or match["split"] == split)]

    def shards(self, split: str | None = None) -> list[str]:
        """The locations of the folder's shards (of `split`; None: every split), sorted by name."""
        return [self.path_of(name) for name in self.shard_names(split)]

    def _names(self) -> list[str]:
        if self.is_storage:
            return storage.child_names(self.location, self.storage_options)
        folder = Path(self.location)
        if not folder.is_dir():
            return []
        return sorted(path.name for path in folder.iterdir() if path.is_file())

    def samples(self, shard: str, on_problem: OnProblem) -> Iterator[ShardSample]:
        """The samples of the shard named `shard`, tolerant of damage (mer_data/shards/samples.py)."""
        return read_samples(self.path_of(shard), on_problem)

    def metadata(self, shard: str, keys: set[str]) -> dict[str, dict]:
        """key -> the `json` member of each sample of `keys` in the shard named `shard` (strict:
        ShardFolderError where the shard or a metadata member cannot be read)."""
        import tarfile

        try:
            return read_metadata(self.path_of(shard), keys)
        except (OSError, tarfile.TarError, ValueError) as error:
            raise ShardFolderError(f"{self.path_of(shard)}: cannot read the samples' metadata: {error}") from error

    # ----------------------------------------------------------------------------------------
    # Labels: labels.py (numpy, the corpora) is imported only here, so that reading side files
    # does not cost the import of numpy.

    def label_space(self) -> tuple[str | None, tuple[str, ...]]:
        """(corpus, label names): from the dataset card; for loose shards (no card), the corpus of the
        first sample with metadata and its default label space (mer_data/shards/labels.py)."""
        from mer_data.shards.labels import LabelError, default_label_names, label_names_from_card

        if self.card is not None:
            return self.card.get("corpus"), label_names_from_card(self.card)
        shards = self.shard_names()
        if not shards:
            raise LabelError(f"no shard in {self.location} to read the label space from")
        corpus = first_sample_corpus(self.path_of(shards[0]))
        return corpus, default_label_names(corpus)

    def label_task(self) -> str:
        """How the label space trains (labels.label_task_from_card); loose shards have their corpus's
        default label space, which trains one-vs-rest."""
        from mer_data.corpora.label_protocol import ONE_VS_REST
        from mer_data.shards.labels import label_task_from_card

        return ONE_VS_REST if self.card is None else label_task_from_card(self.card)


def first_sample_corpus(shard: str) -> str | None:
    """The `corpus` of the first sample with a `json` member in the shard (a path or storage URL)."""
    from mer_data.shards.labels import LabelError

    for sample in read_samples(shard, _ignore):
        if "json" in sample.members:
            try:
                return json.loads(sample.members["json"]).get("corpus")
            except (ValueError, AttributeError) as error:
                raise LabelError(f"{shard}: sample {sample.key}: unreadable metadata: {error}") from error
    raise LabelError(f"{shard}: no sample with metadata to read the label space from")


def _ignore(_problem) -> None:
    """Damage does not matter to a label-space lookup: any readable sample with metadata will do."""
