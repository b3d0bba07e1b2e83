"""Write docs/cli.md from the `mer` command's own --help texts (so the two never disagree).

    .venv/bin/python scripts/cli_docs.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_docs.py --check  # exit 1 if docs/cli.md is out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from mer_data.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands(group: click.Group, path: list[str]):
    yield path, group
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from _commands(command, path + [name])
        else:
            yield path + [name], command


def render() -> str:
    parts = ["# `mer` command reference\n",
             "Generated from the commands' `--help` by `scripts/cli_docs.py`; do not edit by hand.\n"]
    for path, command in _commands(main, ["mer"]):
        with click.Context(command, info_name=" ".join(path), terminal_width=100) as ctx:
            text = command.get_help(ctx)
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            sys.exit(f"{DOC} is out of date: run python scripts/cli_docs.py")
    else:
        DOC.write_text(text, encoding="utf-8")
