"""Writing the shard contract: tar shards, index.parquet, dataset.json, errors.jsonl.

    result = pack_shards(samples, out, seed=0, max_bytes=1 << 30, max_count=1000)
    write_index(index_rows(samples, result.placements), out)
    write_errors(problems, out)
    write_dataset_card(card, out)   # card built from result.shards, counts, checksums, ...

Every file is written atomically and byte-reproducibly (see docs in each module).
"""
from mer_data.shards.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from mer_data.shards.card import CARD_NAME, InvalidCardError, card_problems, write_dataset_card
from mer_data.shards.errorlog import ERRORS_NAME, read_errors, write_errors
from mer_data.shards.hashing import sha256_file
from mer_data.shards.index import INDEX_NAME, index_rows, write_index
from mer_data.shards.packer import (
    SPLITS,
    PackError,
    PackResult,
    Placement,
    ShardInfo,
    ShardSizeWarning,
    pack_shards,
    shard_name,
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
    "INDEX_NAME",
    "MEMBER_ORDER",
    "SPLITS",
    "DeterministicTarWriter",
    "InvalidCardError",
    "InvalidKeyError",
    "PackError",
    "PackResult",
    "Placement",
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
    "write_dataset_card",
    "write_errors",
    "write_index",
]
