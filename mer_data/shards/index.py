"""index.parquet: one row per sample, so users select and count without opening a tar.

Rows are sorted by (split, shard, position), splits in the order train, valid, test, so the
index reads in the order the shards hold the samples. Columns: key, split, shard, position
(0-based within the shard), then every other column the rows hold, alphabetically; a row
without a column gets null there.

The file is byte-reproducible: built from plain Python values (no pandas metadata), without
timestamps; its only environment-dependent bytes are pyarrow's `created_by` version string.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mer_data.records import StagedSample
from mer_data.shards.atomic import atomic_path
from mer_data.shards.layout import INDEX_NAME, SPLITS
from mer_data.shards.packer import Placement

LEADING_COLUMNS = {"key": pa.string(), "split": pa.string(), "shard": pa.string(), "position": pa.int64()}


def index_rows(samples: Sequence[StagedSample], placements: Mapping[str, Placement]) -> list[dict[str, Any]]:
    """Each sample's index_row with its key, split, and its shard and position from the pack."""
    rows = []
    for sample in samples:
        placement = placements[sample.key]
        rows.append(
            {
                **sample.index_row,
                "key": sample.key,
                "split": sample.split,
                "shard": placement.shard,
                "position": placement.position,
            }
        )
    return rows


def write_index(rows: list[dict[str, Any]], out_dir: str | os.PathLike[str]) -> Path:
    """Write `rows` as `out_dir/index.parquet`, atomically; every row needs key, split, shard, position."""
    _check_rows(rows)
    ordered = sorted(rows, key=lambda row: (SPLITS.index(row["split"]), row["shard"], row["position"]))
    path = Path(out_dir) / INDEX_NAME
    with atomic_path(path) as temp:
        # Parquet statistics and the embedded Arrow schema are functions of the data; nothing
        # else (no clock, no host) goes into the file.
        pq.write_table(_table(ordered), temp, compression="zstd")
    return path


def _check_rows(rows: list[dict[str, Any]]) -> None:
    for number, row in enumerate(rows):
        missing = [column for column in LEADING_COLUMNS if row.get(column) is None]
        if missing:
            raise ValueError(f"index row {number} ({row.get('key')!r}) lacks {missing}")
        if row["split"] not in SPLITS:
            raise ValueError(f"index row {number} ({row['key']!r}) has unknown split {row['split']!r}")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    other_columns = sorted({column for row in rows for column in row} - set(LEADING_COLUMNS))
    arrays = {}
    for column in [*LEADING_COLUMNS, *other_columns]:
        values = [row.get(column) for row in rows]
        arrays[column] = _column(column, values, LEADING_COLUMNS.get(column))
    return pa.table(arrays)


def _column(name: str, values: list[Any], type_: pa.DataType | None) -> pa.Array:
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"index column {name!r} holds values of incompatible types: {error}") from error
