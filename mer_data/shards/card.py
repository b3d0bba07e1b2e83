"""dataset.json: the dataset card, validated against schemas/dataset.schema.json.

Besides the schema, the card must add up: the per-split counts sum to the total and match the
shards, and the error and exclusion breakdowns sum to their counts. A card that does not add up
would claim samples that vanished, which the shard contract forbids.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import schemas
from mer_data.shards.atomic import atomic_write_text
from mer_data.shards.layout import CARD_NAME


class InvalidCardError(ValueError):
    """The card breaks the schema or does not add up; `messages` lists every problem."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("invalid dataset card:\n  " + "\n  ".join(messages))


def card_problems(card: dict[str, Any]) -> list[str]:
    """Every way the card breaks the schema or does not add up (empty: valid)."""
    problems = schemas.errors("dataset", card)
    if problems:
        # The arithmetic below assumes the shapes the schema guarantees.
        return problems
    return _sum_problems(card)


def card_json(card: dict[str, Any]) -> str:
    """The card as written: sorted keys, 2-space indent, UTF-8 characters kept, final newline."""
    return json.dumps(card, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_dataset_card(card: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Validate `card` and write it as `out_dir/dataset.json`, atomically.

    Raises InvalidCardError with all problems at once, before anything is written.
    """
    problems = card_problems(card)
    if problems:
        raise InvalidCardError(problems)
    return atomic_write_text(Path(out_dir) / CARD_NAME, card_json(card))


def _sum_problems(card: dict[str, Any]) -> list[str]:
    problems = []
    counts = card["counts"]
    if sum(counts["per_split"].values()) != counts["total"]:
        problems.append(f"counts/total: {counts['total']} is not the sum of counts/per_split {counts['per_split']}")
    problems += _shard_problems(card["shards"], counts["per_split"])
    for part, breakdowns in (("errors", ("by_stage", "by_kind")), ("excluded", ("by_label",))):
        for breakdown in breakdowns:
            total = sum(card[part][breakdown].values())
            if total != card[part]["count"]:
                problems.append(f"{part}/{breakdown}: sums to {total}, but {part}/count is {card[part]['count']}")
    return problems


def _shard_problems(shards: list[dict[str, Any]], per_split: dict[str, int]) -> list[str]:
    problems = []
    names = Counter(shard["name"] for shard in shards)
    problems += [f"shards: {name} is listed {times} times" for name, times in sorted(names.items()) if times > 1]
    for number, shard in enumerate(shards):
        if not shard["name"].startswith(f"{shard['split']}-"):
            problems.append(f"shards/{number}/split: {shard['split']!r} does not match the name {shard['name']!r}")
    for split, expected in per_split.items():
        in_shards = sum(shard["count"] for shard in shards if shard["split"] == split)
        if in_shards != expected:
            problems.append(
                f"shards: the {split} shards hold {in_shards} samples, counts/per_split/{split} says {expected}"
            )
    return problems
