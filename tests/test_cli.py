"""The `mer` command's surface: help texts, docs/cli.md in sync, clear errors for bad options."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mer_data.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_docs_cli_md_is_generated_from_the_current_help():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    for args in (["synth", "iemocap"], ["convert", "iemocap"], ["demo"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage: " in result.output
    assert "Examples:" in runner.invoke(main, ["convert", "iemocap", "--help"]).output


def test_bad_options_are_clear_errors(tmp_path):
    runner = CliRunner()
    raw = tmp_path / "raw"
    raw.mkdir()
    unknown_class = runner.invoke(main, ["convert", "iemocap", str(raw), str(tmp_path / "o"), "--classes", "ang,joy"])
    assert unknown_class.exit_code == 2 and "joy" in unknown_class.output
    bad_size = runner.invoke(main, ["convert", "iemocap", str(raw), str(tmp_path / "o"), "--shard-max-bytes", "big"])
    assert bad_size.exit_code == 2 and "--shard-max-bytes" in bad_size.output
    not_a_release = runner.invoke(main, ["convert", "iemocap", str(raw), str(tmp_path / "o")])
    assert not_a_release.exit_code == 1 and "IEMOCAP" in not_a_release.output


def test_bad_split_spec_names_the_problem(small_corpus, tmp_path):
    root, _ = small_corpus
    result = CliRunner().invoke(main, ["convert", "iemocap", str(root), str(tmp_path / "o"), "--split", "fold:3"])
    assert result.exit_code == 1 and "fold:3" in result.output
