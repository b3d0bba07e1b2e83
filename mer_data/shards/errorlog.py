"""errors.jsonl: every utterance (or file) that did not become a sample, with the reason;
excluded.jsonl: every utterance left out on purpose (by the class filter).

errors.jsonl: one JSON object per line with the fields of Problem (file, line, reason, utterance,
stage), keys sorted. Lines are in Problem.sort_key order, so the file is the same whatever order
the workers reported the problems in.
excluded.jsonl: one JSON object per line ({"utterance", "label", "reason"}), keys sorted, by utterance.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from mer_data.records import Problem
from mer_data.shards.atomic import atomic_write_text
from mer_data.shards.layout import ERRORS_NAME, EXCLUDED_NAME


def write_errors(problems: Sequence[Problem], out_dir: str | os.PathLike[str], name: str = ERRORS_NAME) -> Path:
    """Write the problems, sorted, as `out_dir/name`, atomically (an empty file when there are none)."""
    lines = [
        json.dumps(problem.to_json(), sort_keys=True, ensure_ascii=False) + "\n"
        for problem in sorted(problems, key=Problem.sort_key)
    ]
    return atomic_write_text(Path(out_dir) / name, "".join(lines))


def read_errors(path: str | os.PathLike[str]) -> list[Problem]:
    """The problems in an errors.jsonl file, in file order."""
    with open(path, encoding="utf-8") as handle:
        return [Problem(**json.loads(line)) for line in handle if line.strip()]


def write_excluded(records: Sequence[dict], out_dir: str | os.PathLike[str]) -> Path:
    """Write the exclusion records, sorted by utterance, as `out_dir/excluded.jsonl`, atomically."""
    lines = [json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
             for record in sorted(records, key=lambda record: record["utterance"])]
    return atomic_write_text(Path(out_dir) / EXCLUDED_NAME, "".join(lines))
