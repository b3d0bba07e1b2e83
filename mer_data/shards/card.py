"""dataset.json: the dataset card, built (dataset_card) and validated against schemas/dataset.schema.json.

Besides the schema, the card must add up: the per-split counts sum to the total and match the
shards, and the error and exclusion breakdowns sum to their counts. A card that does not add up
would claim samples that vanished, which the shard contract forbids.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import mer_data
from mer_data import schemas
from mer_data.corpora.splits import empty_split_warnings
from mer_data.corpora.wdseg import WORD_TIMING_STATUSES
from mer_data.records import Problem
from mer_data.shards.atomic import atomic_write_text
from mer_data.shards.layout import CARD_NAME, SPLITS
from mer_data.shards.packer import ShardInfo


class PlanFacts(Protocol):
    """What the card needs of a conversion plan (mer_data.pipelines.convert.ConversionPlan)."""

    corpus: str
    root: Path
    excluded: list[dict]
    split_report: dict
    reader_stats: dict

    @property
    def utterance_count(self) -> int: ...


class OptionFacts(Protocol):
    """What the card needs of the conversion options (mer_data.pipelines.options.ConvertOptions)."""

    classes: tuple[str, ...]

    def to_json(self) -> dict: ...

    def fingerprint(self) -> str: ...


class InvalidCardError(ValueError):
    """The card breaks the schema or does not add up; `messages` lists every problem."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("invalid dataset card:\n  " + "\n  ".join(messages))


def dataset_card(plan: PlanFacts, options: OptionFacts, rows: list[dict], shards: Sequence[ShardInfo],
                 problems: list[Problem], checksums: dict[str, str]) -> dict:
    """The dataset card: enough to know what is in OUT without opening a tar, and nothing
    run-dependent (no times, no host names) so that it is byte-identical across runs."""
    per_split = Counter(row["split"] for row in rows)
    per_split_label: dict[str, Counter] = {}
    for row in rows:
        per_split_label.setdefault(row["split"], Counter()).update(row_labels(row))
    card = {
        "schema_version": schemas.DATASET_SCHEMA_VERSION,
        "tool": {"name": "mer-data", "version": mer_data.__version__},
        "corpus": plan.corpus,
        "created_from": str(plan.root),
        "options": dict(options.to_json(), fingerprint=options.fingerprint()),
        "counts": {
            "total": len(rows),
            "per_split": {split: per_split.get(split, 0) for split in SPLITS},
            "per_split_label": {split: dict(sorted(c.items())) for split, c in sorted(per_split_label.items())},
            "planned": plan.utterance_count,
        },
        "shards": [shard.to_json() for shard in shards],
        "errors": {
            "count": len(problems),
            "by_stage": dict(sorted(Counter(p.stage for p in problems).items())),
            "by_kind": dict(sorted(Counter(problem_kind(p) for p in problems).items())),
        },
        "excluded": {"count": len(plan.excluded),
                     "by_label": dict(sorted(Counter(str(e["label"]) for e in plan.excluded).items()))},
        "split_report": plan.split_report,
        **label_protocol_entry(plan.corpus, options, rows),
        "reader_stats": plan.reader_stats,
        "checksums": checksums,
    }
    word_timings = Counter(row["word_timings"] for row in rows if row.get("word_timings"))
    if word_timings:  # corpora with word timings (IEMOCAP) only
        card["counts"]["word_timings"] = {status: word_timings.get(status, 0) for status in WORD_TIMING_STATUSES}
    warnings = empty_split_warnings(per_split, plan.split_report)
    if warnings:  # only then: the cards of conversions with nothing to warn about stay as they were
        card["warnings"] = warnings
    return card


def label_protocol_entry(corpus: str, options: OptionFacts, rows: list[dict]) -> dict:
    """IEMOCAP's `label_protocol` of the card: its classes, the codes each merges, the task it trains as,
    and the samples per class; nothing for MOSEI (its six emotions are fixed)."""
    if corpus != "iemocap":
        return {}
    from mer_data.corpora.label_protocol import parse_classes

    protocol = parse_classes(options.classes)
    per_class = Counter(row["class"] for row in rows)
    return {"label_protocol": {**protocol.to_json(), "counts": {name: per_class.get(name, 0)
                                                                for name in protocol.names}}}


def row_labels(row: dict) -> list[str]:
    """The labels an index row counts under: its IEMOCAP category, or each MOSEI emotion present."""
    if "label" in row:
        return [row["label"]]
    return [name[len("emo_"):] for name, value in sorted(row.items()) if name.startswith("emo_") and value > 0]


def problem_kind(problem: Problem) -> str:
    """A coarse kind for counting: the reason up to its first colon or parenthesis."""
    head = problem.reason.split(":")[0].split("(")[0].strip()
    return " ".join(head.split()[:6])


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
