"""Repository hygiene that no other test sees: no machine-specific absolute paths in any tracked file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folders that name one machine's layout (a home, a scratch or build area); written in pieces so that
# this file does not match itself.
MACHINE_ROOTS = "|".join(("work", "home", "tmp", "root", "opt"))


def test_no_absolute_machine_paths_in_tracked_files():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist or an installed copy)")
    found = subprocess.run(["git", "grep", "-nE", f"/({MACHINE_ROOTS})/"], cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1, f"absolute machine paths (use relative paths or tempfile):\n{found.stdout}"
