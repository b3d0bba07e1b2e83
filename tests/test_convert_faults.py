"""Faults of the machine, not of the data: a full disk, a missing ffmpeg, a killed worker, a
second conversion into the same OUT, an OUT that is a URL, an id that cannot be a tar key.

Environment faults fail the run (exit 1, one Error line), write no dataset.json and nothing final
in errors.jsonl, and a plain rerun converts everything, byte-identical to a clean run."""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_data.cli import main
from mer_data.faults import EnvironmentFault, environment_cause
from mer_data.folder_lock import LOCK_NAME, FolderLocked, folder_lock
from tests.conftest import convert
from tests.test_convert_iemocap import read_errors, read_samples, sha256_of_outputs
from tests.test_convert_robustness import mer

# The small_shards fixture's options, as command-line arguments.
SMALL_ARGS = ["--split", "session:2", "--shard-max-count", "4", "--workers", "1", "--quiet"]


def fake_tools(folder: Path, *, ffmpeg: str | None) -> str:
    """A PATH of one folder holding the real ffprobe and, unless None, an `ffmpeg` shell script."""
    folder.mkdir()
    os.symlink(shutil.which("ffprobe"), folder / "ffprobe")
    if ffmpeg is not None:
        script = folder / "ffmpeg"
        script.write_text("#!/bin/sh\n" + ffmpeg.replace("REAL_FFMPEG", shutil.which("ffmpeg")))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(folder)


def assert_nothing_final(out: Path) -> None:
    assert not (out / "dataset.json").exists(), "an environment fault must not write the finished card"
    assert not (out / "errors.jsonl").exists() or read_errors(out) == [], "an environment fault is not a rejection"
    staged = [json.loads(path.read_text()) for path in (out / ".staging").glob("*/_outcome.json")]
    assert all(outcome["problems"] == [] for outcome in staged), "a fault was staged as final"


def test_full_disk_while_staging_fails_the_run_and_a_rerun_converts_everything(small_corpus, small_shards,
                                                                                tmp_path):
    root, _ = small_corpus
    reference, _ = small_shards
    out = tmp_path / "out"
    # ffmpeg fails as on a full disk while cutting the session-2 dialog, and works for the other.
    path = fake_tools(tmp_path / "bin", ffmpeg='case "$*" in *Ses02*) '
                      'echo "av_interleaved_write_frame(): No space left on device" >&2; exit 1;; esac\n'
                      'exec REAL_FFMPEG "$@"\n')
    env = dict(os.environ, PATH=path)
    run = mer("convert", "iemocap", root, out, *SMALL_ARGS, env=env)
    assert run.returncode == 1, run.stderr
    assert "No space left on device" in run.stderr and "free disk space" in run.stderr and "rerun" in run.stderr
    assert "Traceback" not in run.stderr
    assert_nothing_final(out)
    assert len(list((out / ".staging").glob("*/_outcome.json"))) == 1, "the good dialog stays staged"

    rerun = mer("convert", "iemocap", root, out, *SMALL_ARGS)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed: 1 recordings reused" in rerun.stdout
    assert sha256_of_outputs(out) == sha256_of_outputs(reference)


def test_missing_ffmpeg_fails_the_run_before_any_work(small_corpus, tmp_path):
    root, _ = small_corpus
    out = tmp_path / "out"
    run = mer("convert", "iemocap", root, out, *SMALL_ARGS,
              env=dict(os.environ, PATH=fake_tools(tmp_path / "bin", ffmpeg=None)))
    assert run.returncode == 1, run.stderr
    assert "ffmpeg is not installed" in run.stderr and "install ffmpeg" in run.stderr
    assert_nothing_final(out)
    assert not list((out / ".staging").glob("*/_outcome.json"))


@pytest.mark.parametrize("tool", ["ffmpeg", "ffprobe"])
def test_a_task_without_its_tools_is_a_fault_not_a_rejection(small_corpus, tmp_path, monkeypatch, tool):
    """On a remote worker the conversion cannot check the tools beforehand: the task itself says so."""
    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions
    from mer_data.pipelines.recording_task import run_recording

    root, _ = small_corpus
    options = ConvertOptions(corpus="iemocap", split="session:2")
    job = plan_iemocap(root, options).jobs[0]
    bin_dir = tmp_path / "bin"
    fake_tools(bin_dir, ffmpeg='exec REAL_FFMPEG "$@"\n')
    (bin_dir / tool).unlink()
    monkeypatch.setenv("PATH", str(bin_dir))
    staging = tmp_path / "staging"
    outcome = run_recording(job, str(staging), options)
    assert outcome.fault.startswith(f"{tool} is not installed"), outcome
    assert (outcome.samples, outcome.problems) == ([], [])
    assert not list(staging.glob("*/_outcome.json")) and not list(staging.glob(".tmp-*"))


def test_a_flac_that_cannot_be_written_is_a_fault(small_corpus, tmp_path, monkeypatch):
    """libsndfile reports a full disk as "problem with initialization of the flac decoder"."""
    import soundfile

    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions
    from mer_data.pipelines.recording_task import run_recording

    root, _ = small_corpus
    options = ConvertOptions(corpus="iemocap", split="session:2")

    def full_disk(*args, **kwargs):
        raise soundfile.LibsndfileError(157, "")

    monkeypatch.setattr(soundfile, "write", full_disk)
    outcome = run_recording(plan_iemocap(root, options).jobs[0], str(tmp_path / "staging"), options)
    assert outcome.fault and "disk" in outcome.fault and outcome.problems == []


def run_tasks_in_this_process(patch, failure=None):
    """Replace the cluster by plain calls in this process; `failure(number, name)` may return a
    TaskFailure reason for a task, as distributed reports a task whose worker died."""
    import contextlib

    import mer_data.pipelines.runner as runner_module
    from mer_data.pipelines.cluster import TaskFailure

    def map_tasks(client, fn, items, *, names, progress, desc):
        reasons = [failure(number, name) if failure else None for number, name in enumerate(names)]
        return [TaskFailure(item, reason) if reason else fn(item) for item, reason in zip(items, reasons)]

    patch.setattr(runner_module, "dask_client", lambda *args: contextlib.nullcontext())
    patch.setattr(runner_module, "map_tasks", map_tasks)


def test_a_killed_worker_fails_the_run_and_a_rerun_converts_everything(small_corpus, small_shards, tmp_path,
                                                                       monkeypatch):
    root, _ = small_corpus
    reference, _ = small_shards
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        run_tasks_in_this_process(patch, lambda number, name: number and f"KilledWorker: ('{name}', <WorkerState>)")
        with pytest.raises(EnvironmentFault, match=r"1 of 2 recordings .*KilledWorker.*rerun"):
            convert(root, out, shard_max_count=4)
    assert_nothing_final(out)
    report = convert(root, out, shard_max_count=4)
    assert report.resumed_recordings == 1 and not report.already_complete
    assert sha256_of_outputs(out) == sha256_of_outputs(reference)


def test_free_space_is_checked_before_packing(small_corpus, tmp_path, monkeypatch):
    import mer_data.pipelines.convert as convert_module

    root, _ = small_corpus
    out = tmp_path / "out"
    checks = []

    def free_bytes(folder):
        checks.append(folder)
        return 10**12 if len(checks) == 1 else 1_000_000  # room to stage, not to pack

    with monkeypatch.context() as patch:
        run_tasks_in_this_process(patch)
        patch.setattr(convert_module, "free_bytes", free_bytes)
        with pytest.raises(EnvironmentFault, match=r"packing the shards: needs about [\d,]+ bytes, 1,000,000 avail"):
            convert(root, out)
    assert len(checks) == 2
    assert_nothing_final(out)
    assert len(list((out / ".staging").glob("*/_outcome.json"))) == 2, "the staged work is kept for the rerun"


def test_full_disk_while_packing_is_one_error_line_and_a_rerun_cleans_up(small_corpus, small_shards, tmp_path,
                                                                         monkeypatch):
    from mer_data.shards.hashing import HashingWriter

    root, _ = small_corpus
    reference, _ = small_shards
    out = tmp_path / "out"
    args = ["convert", "iemocap", str(root), str(out), *SMALL_ARGS]
    write = HashingWriter.write

    def fill_up(self, data):
        if self.bytes_written > 50_000:  # a shard or two in: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    with monkeypatch.context() as patch:
        patch.setattr(HashingWriter, "write", fill_up)
        failed = CliRunner().invoke(main, args)
    assert failed.exit_code == 1, failed.output
    assert failed.output.strip().splitlines()[-1].startswith("Error: packing the shards failed: No space left")
    assert "Traceback" not in failed.output and not isinstance(failed.exception, OSError)
    assert not (out / "dataset.json").exists() and not (out / "errors.jsonl").exists()
    # What a kill -9 while packing leaves: a temporary shard.
    (out / ".tmp-train-000001.tar.x1y2z3").write_bytes(b"half a shard")

    rerun = CliRunner().invoke(main, args)
    assert rerun.exit_code == 0, rerun.output
    assert "resumed: 2 recordings reused" in rerun.output
    assert sha256_of_outputs(out) == sha256_of_outputs(reference)
    assert sorted(path.name for path in out.iterdir()) == sorted(sha256_of_outputs(reference))


def test_free_space_is_checked_before_staging(small_corpus, tmp_path, monkeypatch):
    import mer_data.pipelines.convert as convert_module

    root, _ = small_corpus
    out = tmp_path / "out"
    monkeypatch.setattr(convert_module, "free_bytes", lambda folder: 1_000_000)
    with pytest.raises(EnvironmentFault, match=r"staging the media: needs about [\d,]+ bytes, 1,000,000 available"):
        convert(root, out)
    assert not (out / "dataset.json").exists() and not list(out.glob(".staging/*"))


def test_the_staging_estimate_covers_what_a_conversion_writes(small_corpus, small_shards):
    from mer_data.pipelines.convert import plan_iemocap, staging_bytes_needed
    from mer_data.pipelines.options import ConvertOptions

    root, _ = small_corpus
    reference, _ = small_shards
    shards = list(reference.glob("*.tar"))
    assert shards
    plan = plan_iemocap(root, ConvertOptions(corpus="iemocap", split="session:2"))
    # The shards hold the staged files (plus tar headers): the estimate must not fall short of them.
    assert staging_bytes_needed(plan.root, plan.jobs) > sum(path.stat().st_size for path in shards)


def test_a_second_conversion_into_a_locked_out_refuses_at_once(small_corpus, tmp_path):
    root, _ = small_corpus
    out = tmp_path / "out"
    with folder_lock(out):
        run = mer("convert", "iemocap", root, out, *SMALL_ARGS)
        assert (out / LOCK_NAME).is_file()
    assert run.returncode == 1, run.stderr
    assert f"is in use by another conversion (pid {os.getpid()})" in run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(path.name for path in out.iterdir()) == [], "the refused run must touch nothing"


def test_the_folder_lock_is_exclusive_and_released(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with folder_lock(tmp_path):  # free again
        pass


@pytest.mark.parametrize("url", ["http://host/x", "sftp://host/x"])
def test_an_output_url_that_is_no_object_store_is_refused(small_corpus, tmp_path, monkeypatch, url):
    root, _ = small_corpus
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["convert", "iemocap", str(root), url, "--quiet"])
    assert result.exit_code == 2, result.output   # a usage error: the argument's value
    assert f"{url}: {url.split(':')[0]}:// is not a storage location" in result.output
    assert list(tmp_path.iterdir()) == [], "nothing written to a local folder named like the URL"


@pytest.mark.parametrize("command", [["synth", "iemocap", "{url}"], ["synth", "mosei", "{url}"],
                                     ["train", "{shards}", "--out", "{url}"],
                                     ["compare", "{shards}", "--out", "{url}"], ["demo", "--out", "{url}"]])
def test_every_output_folder_refuses_a_url(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shards").mkdir()
    args = [arg.format(url="s3://bucket/x", shards=tmp_path / "shards") for arg in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "s3://bucket/x: s3:// output is not supported" in result.output
    assert not (tmp_path / "s3:").exists(), "nothing written to a local folder named like the URL"


def test_a_file_url_is_a_local_folder(tmp_path):
    from mer_data.locations import UnsupportedLocation, local_folder

    assert local_folder(f"file://{tmp_path}/a%20b") == tmp_path / "a b"
    assert local_folder(tmp_path / "plain") == tmp_path / "plain"
    assert local_folder("C:/data/out") == Path("C:/data/out")  # a drive letter is no scheme
    with pytest.raises(UnsupportedLocation):
        local_folder(Path("s3://bucket/x"))  # the Path form "s3:/bucket/x" too
    with pytest.raises(UnsupportedLocation):
        local_folder("file://elsewhere/x")


def test_environment_causes():
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert environment_cause(enospc) == "No space left on device"
    assert environment_cause(FileNotFoundError(errno.ENOENT, "No such file", "ffmpeg")) == "ffmpeg is not installed"
    try:
        try:
            raise enospc
        except OSError as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError as wrapped:
        assert environment_cause(wrapped) == "No space left on device"
    # Data errors stay data errors: a missing media file, a damaged stream asking for memory.
    assert environment_cause(FileNotFoundError(errno.ENOENT, "No such file", "Ses01F_impro01.avi")) is None
    assert environment_cause(ValueError("Invalid data found when processing input")) is None
    assert environment_cause(RuntimeError("Error while decoding stream: Cannot allocate memory")) is None


def test_an_id_that_cannot_be_a_tar_key_is_rejected_at_planning(tmp_path):
    """A MOSEI video id with a space: its utterances are rejected with file and line, the rest converts."""
    import h5py

    from tests.test_convert_mosei import _make_release

    raw = _make_release(tmp_path / "release")
    bad = "-vid A"
    for folder, suffix in (("Videos/Full/Combined", ".mp4"), ("Audio/Full/WAV_16000", ".wav"),
                           ("Transcript/Segmented/Combined", ".txt")):
        (raw / folder / f"-vidA{suffix}").rename(raw / folder / f"{bad}{suffix}")
    transcript = raw / "Transcript/Segmented/Combined" / f"{bad}.txt"
    transcript.write_text(transcript.read_text().replace("-vidA___", f"{bad}___"))
    with h5py.File(raw / "Labels" / "CMU_MOSEI_Labels.csd", "a") as csd:
        csd["All Labels/data"].move("-vidA", bad)

    out = tmp_path / "shards"
    run = mer("convert", "mosei", raw.parent, out, "--split", "random:1", "--workers", "1", "--quiet")
    assert run.returncode == 3, run.stderr
    errors = read_errors(out)
    assert [(e["utterance"], e["file"], e["line"], e["stage"]) for e in errors] == [
        (f"{bad}_0", f"Transcript/Segmented/Combined/{bad}.txt", 1, "read"),
        (f"{bad}_1", f"Transcript/Segmented/Combined/{bad}.txt", 2, "read")]
    assert all("cannot be a sample key" in e["reason"] and "whitespace" in e["reason"] for e in errors)
    assert set(read_samples(out)) == {"_vidB_0", "_vidB_1"}
