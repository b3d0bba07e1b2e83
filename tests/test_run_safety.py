"""Run folders and what a run reads: a stored config never runs a command, shard locations are absolute,
the shards are checked against their index and card, a failed start blocks nothing, a run is locked."""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_train import TINY_NETS

SIZES = [option for name, value in TINY_NETS.items()
         for option in ("--model-option", f"{name}={json.dumps(value)}")]


def _common(encoder) -> list[str]:
    return ["--text-encoder", str(encoder), "--workers", "0", "--batch-size", "4", "--epochs", "1", "-q", *SIZES]


def _mer(*args: str, cwd: Path | None = None):
    from mer_data.cli import main

    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(arg) for arg in args])
    finally:
        os.chdir(before)


def _one_error_line(result) -> str:
    """The failed command's output ends in one `Error:` line, with no traceback before it."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(scope="module")
def trained(training_shards, tiny_text_encoder, tmp_path_factory):
    """(run folder, the shard folder it was trained on): trained for one epoch from the shards' parent
    directory with the relative location `shards`."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    shutil.copytree(training_shards, data / "shards")
    result = _mer("train", "shards", "--out", root / "run", "--evaluate-split", "", *_common(tiny_text_encoder),
                  cwd=data)
    assert result.exit_code == 0, result.output
    return root / "run", data / "shards"


def _copy_run(trained, tmp_path) -> Path:
    """A copy of the trained run, without evaluations (so `mer compare` evaluates it)."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run, ignore=shutil.ignore_patterns("eval-*"))
    return run


def _rewrite_shard(path: Path, change) -> None:
    """Rewrite the tar `path` with its members passed through `change([(name, bytes)]) -> [(name, bytes)]`,
    and record the new size and SHA-256 in the folder's dataset.json (as a re-pack would)."""
    from mer_data.shards.hashing import sha256_file

    with tarfile.open(path) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in change(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    card_path = path.parent / "dataset.json"
    card = json.loads(card_path.read_text())
    record = next(shard for shard in card["shards"] if shard["name"] == path.name)
    record.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    card_path.write_text(json.dumps(card))


def _members_by_key(members):
    keys: dict[str, list] = {}
    for name, data in members:
        keys.setdefault(name.partition(".")[0], []).append((name, data))
    return keys


# --------------------------------------------------------------------------------------------
# Finding 1: a stored run config never runs a command


def test_a_pipe_url_in_a_stored_config_never_runs(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "marker"
    config = json.loads((run / "config.json").read_text())
    real = config["shards"][0]
    # Named like no shard (its last part is "valid-000000.tar; :"), so it is read for every split.
    config["shards"] = [f"pipe:touch {marker}; cat {real}/valid-000000.tar; :"]
    (run / "config.json").write_text(json.dumps(config))
    for command in (["evaluate", run, "--split", "test", "-q"], ["train", "--resume", run, "--epochs", "2", "-q"],
                    ["compare", run]):
        result = _mer(*command)
        assert not marker.exists(), command
        line = _one_error_line(result)
        assert "--allow-command-urls" in line and "never read from a run's config.json" in line, line
    # Even asked for: the flag covers locations typed on the command line only.
    refused = _mer("evaluate", run, "--split", "test", "--allow-command-urls", "-q")
    _one_error_line(refused)
    assert not marker.exists()
    # Typed on the command line behind the flag, the same URL is read (and runs its command).
    typed = _mer("evaluate", run, f"pipe:touch {marker}; cat {real}/test-000000.tar", f"{real}/valid-*.tar",
                 "--split", "test", "--allow-command-urls", "-q")
    assert typed.exit_code == 0, typed.output
    assert marker.exists()


def test_a_pipe_url_on_the_command_line_needs_the_flag(trained, tiny_text_encoder, tmp_path):
    marker = tmp_path / "marker"
    result = _mer("train", f"pipe:touch {marker}", "--out", tmp_path / "run", *_common(tiny_text_encoder))
    assert "--allow-command-urls" in _one_error_line(result)
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_a_feature_run_never_opens_a_url_as_its_feature_folder(tmp_path):
    from mer_data.model.features.loader import FeatureSelectionError
    from mer_data.model.train import TrainConfig, make_loader

    marker = tmp_path / "marker"
    config = TrainConfig(shards=[f"pipe:touch {marker}"], model="lf-rnn", label_names=["ang"])   # as stored
    with pytest.raises(FeatureSelectionError, match="FEATS is a local folder; a pipe: URL is never opened"):
        make_loader(config, "train", None, train=True)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Finding 9: absolute locations and a fingerprint


def test_evaluate_from_another_directory_reads_the_folder_the_run_trained_on(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    run_shards = trained[1]
    config = json.loads((run / "config.json").read_text())
    assert config["shards"] == [str(run_shards)]
    assert config["data_fingerprint"] == {str(run_shards / "dataset.json"): _sha256(run_shards / "dataset.json")}
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run_shards, elsewhere / "shards")
    (elsewhere / "shards" / "test-000000.tar").unlink()   # a different folder of the same relative name
    result = _mer("evaluate", run, "--split", "test", "-q", cwd=elsewhere)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    test_count = json.loads((run_shards / "dataset.json").read_text())["counts"]["per_split"]["test"]
    assert metrics["run"]["samples"] == metrics["run"]["samples_expected"] == test_count
    assert "changed since the run trained" not in result.output


def test_a_changed_data_folder_is_warned_about(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    card = Path(next(iter(config["data_fingerprint"])))
    config["data_fingerprint"] = {str(card): "0" * 64}   # as if the card had been another at training
    (run / "config.json").write_text(json.dumps(config))
    result = _mer("evaluate", run, "--split", "valid", "-q")
    assert result.exit_code == 0, result.output
    assert f"{card}: changed since the run trained" in result.output


def _sha256(path: Path) -> str:
    from mer_data.shards.hashing import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------------------------
# Finding 4: what a run reads is checked against the index and the card


def test_a_shard_cut_at_a_member_boundary_is_refused_or_reported(training_shards, tiny_text_encoder, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(training_shards, shards)
    shard = shards / "train-000000.tar"
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    keys = list(dict.fromkeys(member.name.partition(".")[0] for member in members))
    assert len(keys) >= 4, keys
    cut = next(member.offset for member in members if member.name.startswith(keys[len(keys) // 2] + "."))
    with open(shard, "r+b") as handle:
        handle.truncate(cut)   # ends cleanly before a sample's first member: the tar reader sees no error

    refused = _mer("train", shards, "--out", tmp_path / "run", *_common(tiny_text_encoder))
    line = _one_error_line(refused)
    assert "train-000000.tar" in line and "dataset.json says" in line and "--allow-partial" in line, line
    assert not (tmp_path / "run").exists()

    # Without the card, the shortfall is found at the end of the first pass, before its checkpoint.
    (shards / "dataset.json").unlink()
    short = _mer("train", shards, "--out", tmp_path / "run", *_common(tiny_text_encoder))
    line = _one_error_line(short)
    assert f"the train pass read {len(keys) // 2} samples, but index.parquet lists {len(keys)}" in line, line
    assert not (tmp_path / "run" / "config.json").exists()   # the failed start blocks no retry

    partial = _mer("train", shards, "--out", tmp_path / "run", "--allow-partial", "--evaluate-split", "",
                   *_common(tiny_text_encoder))
    assert partial.exit_code == 0, partial.output
    assert f"epoch 1 read {len(keys) // 2} of the {len(keys)} train samples" in partial.output
    epoch = json.loads((tmp_path / "run" / "metrics" / "epoch-001.json").read_text())
    assert (epoch["train_samples"], epoch["train_samples_expected"]) == (len(keys) // 2, len(keys))
    assert any("the train pass read" in note for note in epoch["data_notes"])


def _train_sample(shards: Path) -> tuple[str, list[tuple[str, bytes]]]:
    """(key, [(member name, bytes)]) of the first sample of the train shard."""
    with tarfile.open(shards / "train-000000.tar") as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar.getmembers()]
    return next(iter(_members_by_key(members).items()))


def test_members_with_a_path_trick_are_refused(trained, training_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(training_shards, shards)
    key, members = _train_sample(shards)
    _rewrite_shard(shards / "test-000000.tar", lambda own: own + [(f"../{name}", data) for name, data in members])
    run = _copy_run(trained, tmp_path)
    line = _one_error_line(_mer("evaluate", run, shards, "--split", "test", "-q"))
    assert f"../{key}.json" in line and "bad-member-name" in line, line

    partial = _mer("evaluate", run, shards, "--split", "test", "--allow-partial", "-q")
    assert partial.exit_code == 0, partial.output
    assert f"../{key}.json" in partial.output and "left out (test)" in partial.output
    facts = json.loads((run / "eval-test" / "metrics.json").read_text())["run"]
    test_count = json.loads((shards / "dataset.json").read_text())["counts"]["per_split"]["test"]
    assert facts["samples"] == facts["samples_expected"] == test_count


def test_a_train_sample_in_the_test_shard_is_refused(trained, training_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(training_shards, shards)
    key, copied = _train_sample(shards)
    _rewrite_shard(shards / "test-000000.tar", lambda members: members + copied)
    run = _copy_run(trained, tmp_path)
    # With a loader worker: its error reaches the command as the same one line.
    line = _one_error_line(_mer("evaluate", run, shards, "--split", "test", "--workers", "1", "-q"))
    assert f"sample {key} is not one index.parquet lists for test-000000.tar" in line, line

    # The index is no defence on its own: with the key listed there too, the metadata's split gives it away.
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = pq.read_table(shards / "index.parquet").to_pylist()
    row = next(row for row in index if row["key"] == key)
    index.append({**row, "shard": "test-000000.tar", "position": 10_000})
    pq.write_table(pa.Table.from_pylist(index), shards / "index.parquet")
    (shards / "dataset.json").unlink()
    line = _one_error_line(_mer("evaluate", run, shards, "--split", "test", "-q"))
    assert f"sample {key} is a train sample in a test shard" in line, line


# --------------------------------------------------------------------------------------------
# Finding 10: a failed start blocks nothing; errors are one line; a run is locked


def test_an_empty_validation_split_is_a_clear_error_that_blocks_no_retry(training_shards, tiny_text_encoder, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(training_shards, shards)
    for shard in shards.glob("valid-*.tar"):
        shard.unlink()
    run = tmp_path / "run"
    for _ in range(2):   # the same command again says the same, not "already holds a run"
        line = _one_error_line(_mer("train", shards, "--out", run, *_common(tiny_text_encoder)))
        assert "no valid shards" in line and "the valid split is empty" in line and "--split" in line, line
        assert not run.exists()
    run.mkdir()   # a folder the user made stays, empty of anything that blocks a retry
    _one_error_line(_mer("train", shards, "--out", run, *_common(tiny_text_encoder)))
    assert not (run / "config.json").exists()


def test_train_on_a_file_is_one_error_line(tiny_text_encoder, tmp_path):
    not_a_shard = tmp_path / "notes.txt"
    not_a_shard.write_text("not a tar\n")
    line = _one_error_line(_mer("train", not_a_shard, "--out", tmp_path / "run", *_common(tiny_text_encoder)))
    assert "notes.txt: not a tar archive" in line, line
    assert not (tmp_path / "run").exists()


def test_a_second_process_cannot_train_into_a_locked_run(trained, tmp_path):
    from mer_data.model.checkpoint import run_lock

    run = _copy_run(trained, tmp_path)
    with run_lock(run):   # as another process training or resuming it holds it
        line = _one_error_line(_mer("train", "--resume", run, "--epochs", "2", "-q"))
    assert "in use by another process training or resuming this run" in line, line
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 1
