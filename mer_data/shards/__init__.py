"""The shard contract: tar shards, index.parquet, dataset.json, errors.jsonl, excluded.jsonl.

Writing it:

    result = pack_shards(samples, out, seed=0, max_bytes=1 << 30, max_count=1000)
    write_index(index_rows(samples, result.placements), out)
    write_errors(problems, out)
    write_dataset_card(card, out)   # card built from result.shards, counts, checksums, ...

Every file is written atomically and byte-reproducibly (see docs in each module).

Reading it (folder.py, samples.py): `ShardFolder(location)` opens a converted folder (local or in
object storage) once and gives its card, index, error and exclusion records, shards per split,
samples (tolerant of damage) and label space. The names of both sides are layout.py's.
"""
from mer_data.shards.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from mer_data.shards.card import InvalidCardError, card_problems, write_dataset_card
from mer_data.shards.errorlog import read_errors, write_errors
from mer_data.shards.folder import ShardFolder, ShardFolderError
from mer_data.shards.hashing import sha256_file
from mer_data.shards.index import index_rows, write_index
from mer_data.shards.layout import (
    CARD_NAME,
    ERRORS_NAME,
    EXCLUDED_NAME,
    INDEX_NAME,
    SHARD_NAME,
    SPLITS,
    shard_name,
    shard_split,
)
from mer_data.shards.packer import (
    PackError,
    PackResult,
    Placement,
    ShardInfo,
    ShardSizeWarning,
    pack_shards,
)
from mer_data.shards.tarwriter import (
    MEMBER_ORDER,
    DeterministicTarWriter,
    InvalidKeyError,
    check_key,
    key_problem,
)

__all__ = [
    "CARD_NAME",
    "ERRORS_NAME",
    "EXCLUDED_NAME",
    "INDEX_NAME",
    "MEMBER_ORDER",
    "SHARD_NAME",
    "SPLITS",
    "DeterministicTarWriter",
    "InvalidCardError",
    "InvalidKeyError",
    "PackError",
    "PackResult",
    "Placement",
    "ShardFolder",
    "ShardFolderError",
    "ShardInfo",
    "ShardSizeWarning",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "card_problems",
    "check_key",
    "index_rows",
    "key_problem",
    "pack_shards",
    "read_errors",
    "sha256_file",
    "shard_name",
    "shard_split",
    "write_dataset_card",
    "write_errors",
    "write_index",
]
