"""Every `mer` command, given wrong inputs, ends with one `Error:` line and a non-zero exit, never a traceback."""
from __future__ import annotations

import traceback

import pytest
from click.testing import CliRunner

from mer_data.cli import main


@pytest.fixture
def wrong(tmp_path):
    """Paths of each kind of wrong input: missing, a file for a folder, a folder that is no release, garbage."""
    file = tmp_path / "notes.txt"
    file.write_text("not what you think\n")
    folder = tmp_path / "some-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    run = tmp_path / "garbage-run"
    run.mkdir()
    (run / "config.json").write_text("{this is not json\n")
    csd = tmp_path / "garbage.csd"
    csd.write_text("not an HDF5 file\n")
    return {"missing": str(tmp_path / "missing"), "file": str(file), "folder": str(folder),
            "under-file": str(file / "sub"), "run": str(run), "csd": str(csd)}


# (command, wrong-input arguments with {placeholders} from `wrong`)
CASES = [
    ("synth iemocap", ["{file}"]),
    ("synth iemocap", ["{under-file}", "--sessions", "1", "--dialogs-per-session", "1"]),
    ("synth mosei", ["{file}"]),
    ("synth mosei", ["{under-file}", "--videos", "1"]),
    ("convert iemocap", ["{missing}", "{folder}/out"]),
    ("convert iemocap", ["{file}", "{folder}/out"]),
    ("convert iemocap", ["{folder}", "{folder}/out"]),
    ("convert iemocap", ["{folder}", "{file}"]),
    ("convert mosei", ["{missing}", "{folder}/out"]),
    ("convert mosei", ["{file}", "{folder}/out"]),
    ("convert mosei", ["{folder}", "{folder}/out"]),
    ("validate", ["{missing}"]),
    ("validate", ["{file}"]),
    ("validate", ["{folder}"]),
    ("features", ["{missing}", "{folder}/feats"]),
    ("features", ["{file}", "{folder}/feats"]),
    ("features", ["{folder}", "{folder}/feats"]),
    ("features import-csd", ["{missing}", "{folder}/feats", "--shards", "{folder}"]),
    ("features import-csd", ["{csd}", "{folder}/feats", "--shards", "{folder}"]),
    ("features import-csd", ["{csd}", "{folder}/feats", "--shards", "{file}"]),
    ("train", ["{missing}", "--out", "{folder}/run"]),
    ("train", ["{file}", "--out", "{folder}/run"]),
    ("train", ["{folder}", "--out", "{folder}/run"]),
    ("train", ["--resume", "{run}"]),
    ("train", ["--resume", "{folder}"]),
    ("evaluate", ["{missing}"]),
    ("evaluate", ["{file}"]),
    ("evaluate", ["{folder}"]),
    ("evaluate", ["{run}"]),
    ("compare", ["{missing}"]),
    ("compare", ["{file}"]),
    ("compare", ["{folder}"]),
    ("compare", ["{run}"]),
    ("demo", ["--out", "{file}"]),
    ("demo", ["--out", "{under-file}"]),
]


def _invoke(args):
    result = CliRunner().invoke(main, args)
    # CliRunner catches what would escape as a traceback: show it in the failure message
    escaped = "" if isinstance(result.exception, (SystemExit, type(None))) else "".join(
        traceback.format_exception(result.exception))
    return result, escaped


@pytest.mark.parametrize("command,arguments", CASES, ids=[f"{c}:{' '.join(a)}" for c, a in CASES])
def test_wrong_input_is_one_error_line(command, arguments, wrong):
    args = [*command.split(), *(a.format(**wrong) for a in arguments)]
    result, escaped = _invoke(args)
    assert not escaped, escaped
    assert result.exit_code != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.output


def test_every_command_is_walked():
    # A new command must get its wrong-input cases above.
    def leaves(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from leaves(command, (*prefix, name))
            else:
                yield " ".join((*prefix, name))

    walked = {"features extract" if command == "features" else command for command, _ in CASES}
    assert set(leaves(main)) == walked


def test_unexpected_errors_say_it_is_a_bug_and_debug_shows_the_traceback(monkeypatch, tmp_path):
    import mer_data.synth.iemocap as synth

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(synth, "synth_iemocap", broken)
    result, escaped = _invoke(["synth", "iemocap", str(tmp_path / "raw")])
    assert not escaped and result.exit_code == 1
    assert "Error: unexpected KeyError: 'surprise'" in result.stderr and "MER_DEBUG=1" in result.stderr

    for args, env in ((["--debug", "synth", "iemocap", str(tmp_path / "raw")], {}),
                      (["synth", "iemocap", str(tmp_path / "raw")], {"MER_DEBUG": "1"})):
        debugged = CliRunner().invoke(main, args, env=env)
        assert isinstance(debugged.exception, KeyError)   # left to Python, which prints the traceback


def test_os_errors_name_the_path_and_what_to_do(monkeypatch, tmp_path):
    import errno
    import os

    import mer_data.synth.iemocap as synth

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "raw" / "a.wav"))

    monkeypatch.setattr(synth, "synth_iemocap", disk_full)
    result, escaped = _invoke(["synth", "iemocap", str(tmp_path / "raw")])
    assert not escaped and result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {tmp_path / 'raw' / 'a.wav'}: No space left on device; free some space "
                                     "and run the same command again (finished work is kept)")


def test_a_damaged_run_config_names_the_file(wrong):
    result, escaped = _invoke(["evaluate", wrong["run"]])
    assert not escaped and result.exit_code == 1
    assert f"Error: {wrong['run']}/config.json: not valid JSON" in result.stderr


def test_an_output_under_a_file_in_a_conversion_is_one_error_line(small_corpus, wrong):
    root, _ = small_corpus
    result, escaped = _invoke(["convert", "iemocap", str(root), wrong["under-file"], "--split", "session:2",
                               "--workers", "1", "--quiet"])
    assert not escaped and result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")], result.stderr


def test_training_on_a_file_that_is_no_shard_names_it(wrong):
    result, escaped = _invoke(["train", wrong["file"], "--out", f"{wrong['folder']}/run"])
    assert not escaped and result.exit_code == 1
    assert f"Error: {wrong['file']}: not a tar archive (mer train reads a shard folder" in result.stderr
