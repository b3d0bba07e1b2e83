"""errors.jsonl: every utterance (or file) that did not become a sample, with the reason.

One JSON object per line with the fields of Problem (file, line, reason, utterance, stage),
keys sorted. Lines are sorted by (utterance or "", file, line or 0, reason), then stage, so the
file is the same whatever order the workers reported the problems in.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from mer_data.records import Problem
from mer_data.shards.atomic import atomic_write_text
from mer_data.shards.layout import ERRORS_NAME


def problem_sort_key(problem: Problem) -> tuple:
    # The trailing fields only break ties, so that equal-looking problems still get one order.
    line = problem.line or 0
    return (problem.utterance or "", problem.file, line, problem.reason, problem.stage, problem.line is None)


def write_errors(problems: Sequence[Problem], out_dir: str | os.PathLike[str], name: str = ERRORS_NAME) -> Path:
    """Write the problems, sorted, as `out_dir/name`, atomically (an empty file when there are none)."""
    lines = [
        json.dumps(problem.to_json(), sort_keys=True, ensure_ascii=False) + "\n"
        for problem in sorted(problems, key=problem_sort_key)
    ]
    return atomic_write_text(Path(out_dir) / name, "".join(lines))


def read_errors(path: str | os.PathLike[str]) -> list[Problem]:
    """The problems in an errors.jsonl file, in file order."""
    with open(path, encoding="utf-8") as handle:
        return [Problem(**json.loads(line)) for line in handle if line.strip()]
