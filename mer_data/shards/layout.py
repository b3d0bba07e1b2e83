"""The names of the shard contract (docs/shard-format.md), defined once for its writer and its readers.

A converted folder holds `{split}-{NNNNNN}.tar` shards (six digits, numbered from 000000 within each
split), index.parquet, errors.jsonl, excluded.jsonl and dataset.json (written last). Only names
that match SHARD_NAME exactly are shards: `train-1.tar` or `train-000000.tar.bak` are not.
"""
from __future__ import annotations

import re

from mer_data.records import SPLITS

__all__ = ["CARD_NAME", "ERRORS_NAME", "EXCLUDED_NAME", "INDEX_NAME", "SHARD_NAME", "SPLITS", "shard_name",
           "shard_split"]

CARD_NAME = "dataset.json"
INDEX_NAME = "index.parquet"
ERRORS_NAME = "errors.jsonl"
EXCLUDED_NAME = "excluded.jsonl"
SHARD_NAME = re.compile(rf"^(?P<split>{'|'.join(SPLITS)})-(?P<number>[0-9]{{6}})\.tar$")


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def shard_split(name: str) -> str | None:
    """The split of a shard file name (the last part of a path or URL), or None when it is no shard."""
    match = SHARD_NAME.match(str(name).rsplit("/", 1)[-1])
    return match["split"] if match else None
