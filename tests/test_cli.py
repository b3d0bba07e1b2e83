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


def _leaf_commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_command_has_quiet():
    commands = dict(_leaf_commands(main))
    assert len(commands) >= 10
    lacking = [name for name, command in commands.items()
               if not any(param.name == "quiet" and "-q" in param.opts for param in command.params)]
    assert lacking == []


def test_progress_bars_are_not_drawn_into_a_pipe(tmp_path):
    # CliRunner's stderr is not a terminal, like a pipe or a log file
    result = CliRunner().invoke(main, ["synth", "iemocap", str(tmp_path / "raw"), "--sessions", "1",
                                       "--dialogs-per-session", "1", "--utterances-per-dialog", "2",
                                       "--frame-size", "64x48", "--voice", "synth"])
    assert result.exit_code == 0, result.output
    assert "synthetic IEMOCAP release written to" in result.stdout
    assert "%|" not in result.stderr and "\r" not in result.stderr


def test_progress_is_shown_on_a_terminal_unless_quiet(monkeypatch):
    from mer_data import cli

    class Terminal:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stderr", Terminal(True))
    assert cli.show_progress(quiet=False) and not cli.show_progress(quiet=True)
    monkeypatch.setattr(sys, "stderr", Terminal(False))
    assert not cli.show_progress(quiet=False)


def test_validate_json_dash_writes_the_report_to_stdout(small_corpus, tmp_path, monkeypatch):
    import json

    root, _ = small_corpus
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(root), "--workers", "1", "--json", "-", "--quiet"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)              # stdout holds the JSON report alone
    assert report["target"]["kind"] == "raw-iemocap"
    assert "durations" in result.stderr             # the summary table moved to stderr
    assert not (tmp_path / "-").exists()
    both = CliRunner().invoke(main, ["validate", str(root), "--json", "-", "--html", "-"])
    assert both.exit_code == 2 and "only one of --json and --html" in both.output


def test_convert_prints_the_cards_empty_split_warnings():
    # The README tour once split two sessions with session:2: valid (session 3) was empty, and only
    # `mer train` said so, after the conversion. The card records the warning; the summary prints it.
    from types import SimpleNamespace

    from mer_data import cli

    def summary(per_split, warnings):
        card = {"counts": {"total": sum(per_split.values()), "per_split": per_split}, "shards": []}
        if warnings:
            card["warnings"] = warnings
        report = SimpleNamespace(problems=[], rejected=0, already_complete=False, resumed_recordings=0,
                                 out=Path("shards"), card=card)
        return CliRunner().invoke(click_command(cli._print_summary, report))

    empty_valid = summary({"train": 16, "test": 16}, ["the valid split is empty: because"])
    assert "warning: the valid split is empty: because" in empty_valid.stderr
    assert "warning" not in summary({"train": 16, "valid": 8, "test": 8}, []).stderr


def click_command(function, *args):
    import click

    return click.command()(lambda: function(*args))
