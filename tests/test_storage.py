"""Object storage: conversion into a bucket and every reader reading from one, against a real S3 API
(moto's server on 127.0.0.1, tests/conftest.py's s3_server), and the location rules on memory://."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from mer_data.cli import main
from mer_data.locations import UnsupportedLocation
from tests.conftest import convert
from tests.test_convert_iemocap import sha256_of_outputs
from tests.test_convert_robustness import MER, mer

CONVERT_ARGS = ["--split", "session:2", "--shard-max-count", "4", "--workers", "1", "--quiet"]


def s3():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def sha256_of_bucket_outputs(url: str) -> dict[str, str]:
    """{name: SHA-256} of the finished outputs in a bucket folder (the local sha256_of_outputs's twin)."""
    fs = s3()
    root = url.removeprefix("s3://")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if not p.rsplit("/", 1)[-1].startswith("."))
    return {name: hashlib.sha256(fs.cat_file(f"{root}/{name}")).hexdigest() for name in names}


# --------------------------------------------------------------------------------------------
# Locations


@pytest.mark.parametrize("url, message", [("ftp://host/x", "ftp:// is not a storage location"),
                                          ("http://host/x", "http:// is not a storage location"),
                                          ("s3:/bucket/x", "not a URL")])
def test_an_unknown_scheme_is_one_clear_error(small_corpus, tmp_path, monkeypatch, url, message):
    root, _ = small_corpus
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["convert", "iemocap", str(root), url, "--quiet"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == [], "nothing written to a local folder named like the URL"


def test_a_missing_fsspec_package_is_one_clear_error(monkeypatch):
    import fsspec.core

    from mer_data.storage import filesystem

    def no_gcsfs(*args, **kwargs):
        raise ImportError("Install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_gcsfs)
    with pytest.raises(UnsupportedLocation, match=r"gs://bucket/x: gs:// needs the gcsfs package.*pip install gcsfs"):
        filesystem("gs://bucket/x")


def test_storage_options_parse_json_values_and_nested_keys():
    from mer_data.storage import parse_storage_options

    options = parse_storage_options(["anon=true", "client_kwargs.endpoint_url=http://127.0.0.1:9000",
                                     "client_kwargs.region_name=eu-west-1", "default_block_size=1048576"])
    assert options == {"anon": True, "default_block_size": 1048576,
                       "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_storage_options(["anon"])


def test_folders_download_from_memory_storage_and_urls_join(tmp_path):
    import fsspec

    from mer_data.storage import download_folder, filesystem, is_storage_url, join

    fs = fsspec.filesystem("memory")
    fs.pipe({"/mat/shards/dataset.json": b"{}", "/mat/shards/sub/x": b"x"})
    memory, path = filesystem("memory://mat/shards")
    assert download_folder(memory, path, tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "x").read_bytes() == b"x" and (tmp_path / "copy" / "dataset.json").is_file()
    assert not download_folder(memory, "/mat/none", tmp_path / "none")
    assert join("memory://mat/shards/", "index.parquet") == "memory://mat/shards/index.parquet"
    assert is_storage_url("memory://mat") and not is_storage_url(tmp_path) and not is_storage_url("file:///x")


# --------------------------------------------------------------------------------------------
# Conversion into a bucket


@pytest.fixture(scope="module")
def bucket_shards(small_corpus, s3_server, tmp_path_factory):
    """The small corpus converted into a bucket through the `mer` command (the twin of small_shards)."""
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("converted")
    root, _ = small_corpus
    url = "s3://converted/small"
    result = mer("convert", "iemocap", root, url, *CONVERT_ARGS)
    assert result.returncode == 0, result.stderr
    assert f"at {url}" in result.stdout
    return url


def test_a_bucket_conversion_has_the_bytes_of_a_local_one(bucket_shards, small_shards):
    reference, _ = small_shards
    assert sha256_of_bucket_outputs(bucket_shards) == sha256_of_outputs(reference)
    assert not s3().exists("converted/small/.staging"), "the staging is removed once the card is written"


def test_a_rerun_into_the_bucket_reports_it_complete(small_corpus, bucket_shards):
    root, _ = small_corpus
    result = mer("convert", "iemocap", root, bucket_shards, *CONVERT_ARGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("already complete")


def test_a_killed_bucket_conversion_resumes_from_the_bucket(small_corpus, small_shards, bucket):
    root, _ = small_corpus
    reference, _ = small_shards
    url = f"{bucket}/killed"
    process = subprocess.Popen([*MER, "convert", "iemocap", str(root), url, *CONVERT_ARGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    fs, staged = s3(), f"{url.removeprefix('s3://')}/.staging"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        fs.invalidate_cache()
        if fs.glob(f"{staged}/*/_outcome.json"):
            break
        time.sleep(0.1)
    assert process.poll() is None, "the conversion finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    fs.invalidate_cache()
    assert not fs.exists(f"{url.removeprefix('s3://')}/dataset.json")
    assert len(fs.glob(f"{staged}/*/_outcome.json")) == 1

    resumed = mer("convert", "iemocap", root, url, *CONVERT_ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed: 1 recordings reused" in resumed.stdout
    assert sha256_of_bucket_outputs(url) == sha256_of_outputs(reference)


def test_storage_options_reach_the_filesystem(small_corpus, s3_server, tmp_path, monkeypatch):
    """The endpoint given as --storage-option, not by the environment: without it the default AWS
    endpoint would be asked (and this machine has no network), so the conversion succeeding shows it arrived."""
    root, _ = small_corpus
    endpoint = s3_server["AWS_ENDPOINT_URL"]
    env = {name: value for name, value in os.environ.items() if name != "AWS_ENDPOINT_URL"}
    s3().mkdir("withoptions")
    result = mer("convert", "iemocap", root, "s3://withoptions/out", *CONVERT_ARGS,
                 "--storage-option", f"endpoint_url={endpoint}", env=env)
    assert result.returncode == 0, result.stderr
    assert s3().exists("withoptions/out/dataset.json")


def test_overwrite_replaces_a_bucket_conversion_made_with_other_options(small_corpus, bucket):
    root, _ = small_corpus
    url = f"{bucket}/other"
    first = convert(root, url, shard_max_count=2)
    assert len(first.card["shards"]) > 2
    refused = mer("convert", "iemocap", root, url, *CONVERT_ARGS)
    assert refused.returncode == 1 and "holds a finished conversion made with other options" in refused.stderr
    replaced = mer("convert", "iemocap", root, url, *CONVERT_ARGS, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    names = {p.rsplit("/", 1)[-1] for p in s3().ls(url.removeprefix("s3://"), detail=False)}
    assert {name for name in names if name.endswith(".tar")} == {s["name"] for s in replaced_card(url)["shards"]}


def replaced_card(url: str) -> dict:
    import json

    return json.loads(s3().cat_file(f"{url.removeprefix('s3://')}/dataset.json"))


# --------------------------------------------------------------------------------------------
# Reading from a bucket

TINY_NETS = dict(visual_channels=[4, 8, 8, 8], acoustic_channels=[4, 8, 8, 8], temporal_width=16,
                 temporal_layers=1, temporal_heads=2, dropout=0.1)


def upload_folder(local, url: str) -> str:
    fs = s3()
    for path in sorted(local.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            fs.put_file(str(path), f"{url.removeprefix('s3://')}/{path.name}")
    return url


@pytest.fixture(scope="module")
def bucket_training_shards(training_shards, s3_server):
    s3().mkdir("training")
    return upload_folder(training_shards, "s3://training/shards")


def test_bucket_locations_open_with_fsspec_and_command_urls_stay_refused():
    from mer_data.model.shard_check import UnsafeShardSource, absolute_sources, check_source_safety, command_scheme

    assert command_scheme("s3://b/x") is None and command_scheme("memory://b/x") is None
    assert absolute_sources(["s3://b/x"]) == ["s3://b/x"]
    for url in ("pipe:cat x.tar", "http://host/x.tar", "s3:/b/x.tar"):   # s3:/ (one slash) is no bucket URL
        with pytest.raises(UnsafeShardSource):
            check_source_safety([url], allow_command_urls=False)


def test_the_loader_streams_a_bucket_folder_as_it_reads_a_local_one(training_shards, bucket_training_shards,
                                                                    tiny_text_encoder, s3_server):
    from mer_data.model.data import make_loader, resolve_shards
    from mer_data.model.text import load_tokenizer

    remote = resolve_shards(bucket_training_shards, "train")
    local = resolve_shards(str(training_shards), "train")
    assert [url.rsplit("/", 1)[-1] for url in remote] == [os.path.basename(path) for path in local]
    tokenizer = load_tokenizer(str(tiny_text_encoder))

    def ids(source, workers):
        loader = make_loader(source, "valid", tokenizer=tokenizer, batch_size=3, workers=workers, shuffle=False)
        return [key for batch in loader for key in batch.ids], loader.expectation

    # A DataLoader worker process opens the bucket. Its credentials and endpoint are given as storage
    # options, which travel with the pipeline: the worker comes from a forkserver that an earlier test
    # may have started before the S3 fixture set its environment, so the environment is not enough.
    from mer_data.storage import default_options, set_default_options

    saved = default_options()
    set_default_options({"key": s3_server["AWS_ACCESS_KEY_ID"], "secret": s3_server["AWS_SECRET_ACCESS_KEY"],
                         "endpoint_url": s3_server["AWS_ENDPOINT_URL"]})
    try:
        remote_ids, expectation = ids(bucket_training_shards, 1)
    finally:
        set_default_options(saved)
    assert remote_ids == ids(str(training_shards), 0)[0]
    assert expectation.samples == len(remote_ids) and not expectation.unverified


def test_a_shard_cut_short_in_the_bucket_is_refused(training_shards, s3_server, tiny_text_encoder):
    from mer_data.model.data import make_loader
    from mer_data.model.shard_check import ShardCheckError
    from mer_data.model.text import load_tokenizer

    s3().mkdir("damaged")
    url = upload_folder(training_shards, "s3://damaged/shards")
    shard = sorted(p for p in s3().ls("damaged/shards", detail=False) if "/valid-" in p)[0]
    s3().pipe_file(shard, s3().cat_file(shard)[:-1024])
    with pytest.raises(ShardCheckError, match="the shard was cut short"):
        make_loader(url, "valid", tokenizer=load_tokenizer(str(tiny_text_encoder)), batch_size=3, workers=0,
                    shuffle=False)


def test_train_evaluate_and_compare_a_run_streamed_from_the_bucket(bucket_training_shards, tiny_text_encoder,
                                                                   tmp_path):
    from mer_data.model.compare import compare_runs
    from mer_data.model.train import TrainConfig, train

    config = TrainConfig(shards=[bucket_training_shards], model="fe2e", modalities="tav", epochs=1, batch_size=4,
                         workers=1, text_encoder=str(tiny_text_encoder), model_options=TINY_NETS)
    run = tmp_path / "run"
    train(config, run, progress=False, log=lambda message: None)
    stored = json.loads((run / "config.json").read_text())
    assert stored["shards"] == [bucket_training_shards]
    assert list(stored["data_fingerprint"]) == [f"{bucket_training_shards}/dataset.json"]
    comparison = compare_runs([str(run)], split="test")   # evaluates the run first, from its stored bucket URL
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    tests = json.loads(s3().cat_file("training/shards/dataset.json"))["counts"]["per_split"]["test"]
    assert metrics["run"]["samples"] == tests
    assert f"1 runs; {tests} test utterances" in comparison.markdown and not comparison.notes


def test_validate_a_bucket_folder_names_the_bucket(bucket_shards, small_shards):
    """The same audit as of the local folder; a damaged shard in the bucket is found and named by its URL."""
    from mer_data.validation import ValidateOptions
    from mer_data.pipelines.validate import validate

    options = ValidateOptions(av_sync=False)
    report = validate(bucket_shards, options, in_process=True, progress=False)
    local = validate(small_shards[0], options, in_process=True, progress=False)
    assert report.ok and report.path == bucket_shards
    assert [f.kind for f in report.findings] == [f.kind for f in local.findings]

    s3().mkdir("validated")
    url = upload_folder(small_shards[0], "s3://validated/shards")
    s3().pipe_file("validated/shards/train-000000.tar", s3().cat_file("validated/shards/train-000000.tar")[:-512])
    damaged = CliRunner().invoke(main, ["validate", url, "--no-av-sync", "--workers", "1", "--quiet"])
    assert damaged.exit_code == 1, damaged.output
    assert f"shards at {url} " in damaged.output
    assert re.search(r"checksum-mismatch  train-000000\.tar: \d+ bytes", damaged.output), damaged.output


def test_features_from_a_bucket_into_a_bucket_equal_a_local_extraction(bucket_shards, small_shards, tmp_path):
    mfcc_only = ["--audio", "mfcc", "--visual", "none", "--text", "none", "--workers", "1", "-q"]
    feats = "s3://converted/feats"
    result = CliRunner().invoke(main, ["features", bucket_shards, feats, *mfcc_only])
    assert result.exit_code == 0, result.output
    assert f"in {feats}" in result.output
    local = CliRunner().invoke(main, ["features", str(small_shards[0]), str(tmp_path / "feats"), *mfcc_only])
    assert local.exit_code == 0, local.output
    card = json.loads(s3().cat_file("converted/feats/features.json"))
    assert card["source"]["path"] == bucket_shards
    local_card = json.loads((tmp_path / "feats" / "features.json").read_text())
    assert [part["sha256"] for part in card["parts"]] == [part["sha256"] for part in local_card["parts"]]
    again = CliRunner().invoke(main, ["features", bucket_shards, feats, *mfcc_only])
    assert again.exit_code == 0 and "already complete" in again.output, again.output


# --------------------------------------------------------------------------------------------
# The bucket output's pieces, on memory:// (fast)


def test_outputs_go_up_shards_first_and_the_card_last_and_stale_shards_leave(tmp_path, monkeypatch):
    import fsspec

    from mer_data.pipelines.bucket_output import SIDE_FILES_LAST, BucketFolder, upload_outputs

    fs = fsspec.filesystem("memory")
    fs.pipe({"/order/out/train-000009.tar": b"stale", "/order/out/dataset.json": b"{}"})
    packed = tmp_path / "packed"
    packed.mkdir()
    names = ["train-000000.tar", "test-000000.tar"]
    for name in [*names, *SIDE_FILES_LAST]:
        (packed / name).write_bytes(name.encode())
    folder = BucketFolder("memory://order/out", {})
    events = []
    monkeypatch.setattr(type(fs), "put_file", lambda self, local, path, **kw: (
        events.append(("put", path.rsplit("/", 1)[-1])), self.pipe_file(path, open(local, "rb").read()))[-1])
    monkeypatch.setattr(type(fs), "rm", lambda self, path, recursive=False, **kw: (
        events.append(("rm", path.rsplit("/", 1)[-1])), self.rm_file(path))[-1])
    assert upload_outputs(packed, folder, names) == ["train-000009.tar"]
    assert events == [("put", "train-000000.tar"), ("put", "test-000000.tar"), ("rm", "train-000009.tar"),
                      *[("put", name) for name in SIDE_FILES_LAST]]
    assert events[-1] == ("put", "dataset.json")


def test_a_recording_cut_but_not_in_the_bucket_is_a_fault_not_a_loss():
    from mer_data.records import Problem, Utterance
    from mer_data.pipelines.bucket_output import unaccounted
    from mer_data.pipelines.recording_task import RecordingJob, RecordingOutcome

    utterances = tuple(Utterance(id=f"u{i}", corpus="iemocap", recording="r", speaker="M", gender="M", start=0.0,
                                 end=1.0, label={}, text="", video_region="full", audio_channel=None, sources={})
                       for i in range(2))
    job = RecordingJob("r", "/raw", "v.avi", "a.wav", utterances, (("u0", "train"), ("u1", "train")))
    crashed = RecordingOutcome("r", [], [Problem(file="v.avi", line=None, reason="task failed", utterance=u.id,
                                                 stage="media") for u in utterances])
    assert not unaccounted(job, crashed)
    assert unaccounted(job, RecordingOutcome("r", [], crashed.problems[:1]))


def test_a_baseline_trains_and_evaluates_on_a_feature_folder_in_the_bucket(s3_server, tmp_path):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train
    from tests.test_baselines import _config, make_feats

    feats = make_feats(tmp_path / "feats")
    fs = s3()
    fs.mkdir("features")
    for path in sorted(p for p in feats.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"features/feats/{path.relative_to(feats).as_posix()}")
    run = tmp_path / "run"
    train(_config("s3://features/feats", epochs=1), run, progress=False, log=lambda message: None)
    stored = json.loads((run / "config.json").read_text())
    assert stored["shards"] == ["s3://features/feats"]
    assert list(stored["data_fingerprint"]) == ["s3://features/feats/features.json"]
    metrics = evaluate(run, split="test", progress=False, log=lambda message: None)
    assert metrics["run"]["samples"] == json.loads((feats / "features.json").read_text())["counts"]["per_split"]["test"]


def test_raw_in_a_bucket_is_refused_with_the_reason(tmp_path):
    result = CliRunner().invoke(main, ["convert", "iemocap", "s3://bucket/IEMOCAP_full_release", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "the raw release must be a local or mounted folder" in result.output
