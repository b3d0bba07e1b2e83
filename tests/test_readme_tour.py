"""The README's five-minute tour runs as written: its commands are read from README.md and run in order.

The data steps (synth, convert, the Python snippets, validate) run in the default suite; the whole
tour with its training runs, features and comparison is `slow` (minutes).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tour_steps() -> list[str]:
    """The tour's code blocks in order, as bash: command lines as written, Python blocks run by python."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    steps = []
    for kind, body in re.findall(r"```(bash|python)\n(.*?)```", tour, flags=re.S):
        if kind == "python":
            steps.append(f"python - <<'PYTHON'\n{body}PYTHON")
        else:
            steps += [line.replace(".venv/bin/mer ", "mer ", 1) for line in body.splitlines() if line.strip()]
    return steps


def run_tour(steps: list[str], folder: Path) -> subprocess.CompletedProcess:
    bin_dir = folder / "bin"      # `mer` and `python` as the tour's .venv/bin would give them
    bin_dir.mkdir()
    (bin_dir / "mer").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mer_data.cli "$@"\n')
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for shim in ("mer", "python"):
        (bin_dir / shim).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    script = "set -euo pipefail\n" + "\n".join(steps) + "\n"
    return subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True)


def data_steps(steps: list[str]) -> list[str]:
    """The steps before the first training run."""
    first_training = next(i for i, step in enumerate(steps) if step.startswith("mer train"))
    return steps[:first_training]


def test_the_tour_is_read_from_the_readme():
    steps = tour_steps()
    commands = [step.split()[1] for step in steps if step.startswith("mer ")]
    assert commands[:3] == ["synth", "convert", "validate"] and {"train", "evaluate", "compare"} <= set(commands)
    assert any(step.startswith("python - <<") for step in data_steps(steps))


def test_the_tour_data_steps_run_as_written(tmp_path):
    result = run_tour(data_steps(tour_steps()), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = __import__("json").loads((tmp_path / "shards" / "dataset.json").read_text())["counts"]["per_split"]
    assert all(counts.get(split, 0) > 0 for split in ("train", "valid", "test")), counts   # mer train needs all three
    assert (tmp_path / "report.html").is_file()


@pytest.mark.slow
def test_the_whole_tour_runs_as_written(tmp_path):
    result = run_tour(tour_steps(), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "compare" / "compare.md").is_file()
