"""Feature tables: the on-disk layout shared by `mer features`, `mer features import-csd` and the baselines.

    FEATS/
      features.json              the card (schemas/features.schema.json), written last: its presence
                                 means the tables are complete; it names the modalities, their
                                 extractor, dimension and feature names, the label space, the parts
      train/part-NNNNNN.parquet  one table per split, stored as Parquet parts (a pyarrow dataset:
      valid/part-NNNNNN.parquet  `pandas.read_parquet("FEATS/train")` reads the split whole)
      test/part-NNNNNN.parquet
      errors.jsonl               utterances without features, with the reason (file, line, reason, ...)
      extraction.json            `mer features` only: what the extraction cost (timings, so not in the card)

One row per utterance. Columns, in this order:

    id        string                 the utterance id (the sample's metadata `id`)
    key       string                 the sample's WebDataset key (`__key__`)
    split     string                 train / valid / test
    source    string                 where the row came from: "<shard name>#<position>" for `mer features`,
                                     "<csd file>" for import-csd
    recording string (nullable)      dialog (IEMOCAP) or video (MOSEI) id, for grouping
    speaker   string (nullable)
    start     float64 (nullable)     the utterance interval in the recording, seconds
    end       float64 (nullable)
    target    list<float32>[C]       the training target over the card's label_names (mer_data/shards/labels.py)
    <m>       list<fixed_size_list<float32>[D_m]>   the sequence of modality m, one vector per step
    <m>_times list<float32> (nullable)              each step's time in seconds from the utterance
                                     start (the centre of its analysis window); null where steps have
                                     no times (e.g. text tokens of a frozen encoder)

for every modality m the card lists, in name order (audio, text, visual, or imported names such as COVAREP).
A sequence may be empty (an utterance with no face at all has zero visual steps); the baselines
treat an empty sequence as a missing modality. The Arrow schema is a function of the card
(`arrow_schema`), so every part is checked against the card when it is read.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import mer_data
from mer_data import schemas
from mer_data.shards.atomic import atomic_path, atomic_write_text
from mer_data.shards.layout import SPLITS

CARD_NAME = "features.json"
ERRORS_NAME = "errors.jsonl"
EXTRACTION_TIMING_NAME = "extraction.json"
ROLES = ("t", "a", "v")
LEADING_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "key": pa.string(),
    "split": pa.string(),
    "source": pa.string(),
    "recording": pa.string(),
    "speaker": pa.string(),
    "start": pa.float64(),
    "end": pa.float64(),
}
NOT_NULL = ("id", "key", "split", "source", "target")


class FeatureTableError(ValueError):
    """A feature table or card that breaks the layout; the message names the file and the reason."""


@dataclass
class ModalitySpec:
    """One modality of a feature table, as the card records it."""

    role: str                      # "t", "a" or "v": the modality letter `mer train --modalities` selects it by
    extractor: str                 # e.g. "opensmile-egemaps-v02-lld", "librosa-mfcc-prosody", "csd:COVAREP"
    names: list[str]               # one name per dimension
    description: str = ""
    step_seconds: float | None = None   # nominal hop between steps; None where steps are not timed
    timed: bool = True             # whether <m>_times is filled
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.role not in ROLES:
            raise FeatureTableError(f"modality role {self.role!r} is not one of {', '.join(ROLES)}")
        if not self.names:
            raise FeatureTableError(f"a {self.extractor} modality needs at least one feature name")

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_json(self) -> dict:
        return {**asdict(self), "dim": self.dim}

    @classmethod
    def from_json(cls, data: dict) -> "ModalitySpec":
        values = {k: v for k, v in data.items() if k != "dim"}
        return cls(**values)


def arrow_schema(modalities: dict[str, ModalitySpec], label_count: int) -> pa.Schema:
    """The Arrow schema every part of a table with these modalities must have."""
    columns = [pa.field(name, type_, nullable=name not in NOT_NULL) for name, type_ in LEADING_COLUMNS.items()]
    columns.append(pa.field("target", pa.list_(pa.float32(), label_count), nullable=False))
    # Modality columns in name order: the card stores its modalities as a JSON object with sorted
    # keys, so the schema must not depend on the order a writer happened to build them in.
    for name, spec in sorted(modalities.items()):
        _check_modality_name(name)
        columns.append(pa.field(name, pa.list_(pa.list_(pa.float32(), spec.dim)), nullable=False))
        columns.append(pa.field(f"{name}_times", pa.list_(pa.float32()), nullable=True))
    return pa.schema(columns)


def _check_modality_name(name: str) -> None:
    if not name or name in LEADING_COLUMNS or name == "target" or name.endswith("_times"):
        raise FeatureTableError(f"modality name {name!r} clashes with a table column")


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts; sequences as numpy arrays [T, D]) -> a table of `schema`.

    A row whose sequence has the wrong dimension, a non-finite value, or whose times do not match
    its steps is refused with its id named (a silently wrong feature would poison every baseline).
    """
    cells = {f.name: [_cell(row, f) for row in rows] for f in schema}
    arrays = [_array(cells[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_sequence(type_: pa.DataType) -> bool:
    return pa.types.is_list(type_) and pa.types.is_fixed_size_list(type_.value_type)


def _array(values: list, type_: pa.DataType) -> pa.Array:
    """Sequence columns are built from one flat float32 buffer and offsets (no per-value Python objects)."""
    if not _is_sequence(type_):
        return pa.array(values, type=type_)
    dim = type_.value_type.list_size
    lengths = np.array([len(v) for v in values], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = (np.concatenate([v.reshape(-1) for v in values]) if values else np.zeros(0)).astype(np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), dim)
    return pa.ListArray.from_arrays(pa.array(offsets), vectors).cast(type_)


def sequence_problem(values: np.ndarray, times, dim: int, *, times_required: bool = False) -> str | None:
    """Why a sequence [steps, dim] with its `times` cannot go into a table, or None.

    Writers that must not lose a whole part to one sample (pipelines/features.py) check each sample
    with it first; `rows_to_table` checks every row with it again and refuses the table.
    """
    if values.ndim != 2 or values.shape[1] != dim:
        return f"features of shape {tuple(values.shape)}, expected [steps, {dim}]"
    if not np.isfinite(values).all():
        return "the features hold non-finite values"
    if times is None:
        return f"{len(values)} steps but no times" if times_required else None
    if len(times) != len(values):
        return f"{len(values)} steps but {len(times)} times"
    return None


def _cell(row: dict[str, Any], schema_field: pa.Field):
    name, type_ = schema_field.name, schema_field.type
    value = row.get(name)
    row_id = row.get("id", "<no id>")
    if value is None:
        if not schema_field.nullable:
            raise FeatureTableError(f"{row_id}: column {name!r} is missing")
        return None
    if _is_sequence(type_):
        dim = type_.value_type.list_size
        array = np.asarray(value, dtype=np.float32)
        if array.size == 0:
            return np.zeros((0, dim), dtype=np.float32)
        problem = sequence_problem(array, row.get(f"{name}_times"), dim)
        if problem:
            raise FeatureTableError(f"{row_id}: {name}: {problem}")
        return array
    if pa.types.is_fixed_size_list(type_):
        array = np.asarray(value, dtype=np.float32)
        if array.shape != (type_.list_size,):
            raise FeatureTableError(f"{row_id}: {name} has shape {array.shape}, expected [{type_.list_size}]")
        return array
    if pa.types.is_list(type_):
        return np.asarray(value, dtype=np.float32)
    if pa.types.is_floating(type_):
        return float(value)
    return str(value)


def split_dir(feats: str | os.PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise FeatureTableError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(feats) / split


def part_path(feats: str | os.PathLike, split: str, number: int) -> Path:
    return split_dir(feats, split) / f"part-{number:06d}.parquet"


def write_part(path: str | os.PathLike, table: pa.Table) -> Path:
    """Write one part atomically (a killed run never leaves half a part to resume from)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        pq.write_table(table, temp, compression="zstd")
    return path


def write_card(feats: str | os.PathLike, card: dict) -> Path:
    """Validate `card` against schemas/features.schema.json and write FEATS/features.json atomically."""
    problems = schemas.errors("features", card)
    if problems:
        raise FeatureTableError(f"{Path(feats) / CARD_NAME}: the card breaks the schema: " + "; ".join(problems))
    return atomic_write_text(Path(feats) / CARD_NAME,
                             json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def feature_card(*, corpus: str, label_names: Sequence[str], label_task: str, source: dict,
                 modalities: dict[str, ModalitySpec], options: dict, per_split: Mapping[str, int],
                 empty_sequences: dict[str, int], parts: list[dict], error_reasons: Iterable[str],
                 extra_counts: dict | None = None) -> dict:
    """The card of a feature folder (schemas/features.schema.json), for every writer of one.

    `source`: where the rows came from (its `kind`: "shards" for `mer features`, "csd" for an import);
    `options`: what the writer was asked for; `per_split`: rows per split; `error_reasons`: the reason
    of each utterance without features, counted as given (a writer shortens them first if it wants
    them grouped); `extra_counts`: counts only this writer has (e.g. the import's unmatched entries).
    """
    reasons = list(error_reasons)
    return {
        "schema_version": schemas.FEATURES_SCHEMA_VERSION,
        "tool": {"name": "mer-data", "version": mer_data.__version__},
        "corpus": corpus,
        "label_names": list(label_names),
        "label_task": label_task,
        "source": source,
        "modalities": {name: spec.to_json() for name, spec in modalities.items()},
        "options": options,
        "counts": {"per_split": {split: per_split.get(split, 0) for split in SPLITS},
                   "total": sum(per_split.values()), "empty_sequences": dict(empty_sequences),
                   **(extra_counts or {})},
        "parts": parts,
        "errors": {"count": len(reasons), "by_reason": dict(sorted(Counter(reasons).items()))},
    }


def read_card(feats: str | os.PathLike) -> dict:
    """The validated card of a feature folder; a clear error when it is missing or broken."""
    path = Path(feats) / CARD_NAME
    if not path.is_file():
        raise FeatureTableError(f"{path}: no feature card; is {feats} a finished `mer features` folder?")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FeatureTableError(f"{path}: unreadable feature card: {error}") from error
    problems = schemas.errors("features", card)
    if problems:
        raise FeatureTableError(f"{path}: the card breaks the schema: " + "; ".join(problems))
    return card


def card_modalities(card: dict) -> dict[str, ModalitySpec]:
    return {name: ModalitySpec.from_json(spec) for name, spec in card["modalities"].items()}


def card_schema(card: dict) -> pa.Schema:
    return arrow_schema(card_modalities(card), len(card["label_names"]))


def split_parts(feats: str | os.PathLike, split: str) -> list[Path]:
    directory = split_dir(feats, split)
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def read_split(feats: str | os.PathLike, split: str, columns: Iterable[str] | None = None) -> pa.Table:
    """One split's table (all its parts, in order), each part checked against the card's schema."""
    card = read_card(feats)
    expected = card_schema(card)
    tables = []
    for path in split_parts(feats, split):
        schema = pq.read_schema(path)
        if not schema.equals(expected, check_metadata=False):
            raise FeatureTableError(f"{path}: its columns do not match {Path(feats) / CARD_NAME}:"
                                    f" {_schema_difference(schema, expected)}")
        tables.append(pq.read_table(path, columns=list(columns) if columns else None))
    if not tables:
        names = list(columns) if columns else expected.names
        return expected.empty_table().select(names)
    return pa.concat_tables(tables)


def _schema_difference(found: pa.Schema, expected: pa.Schema) -> str:
    for schema_field in expected:
        if schema_field.name not in found.names:
            return f"column {schema_field.name!r} is missing"
        if not found.field(schema_field.name).type.equals(schema_field.type):
            return (f"column {schema_field.name!r} is {found.field(schema_field.name).type},"
                    f" expected {schema_field.type}")
    extra = [name for name in found.names if name not in expected.names]
    return f"extra column(s) {extra}" if extra else "column order differs"


def sequence(table_row: dict, modality: str, dim: int) -> np.ndarray:
    """A row's sequence of `modality` as float32 [T, dim] (T may be 0), from `table.to_pylist()` rows."""
    steps = table_row.get(modality) or []
    return np.asarray(steps, dtype=np.float32).reshape(len(steps), dim)

