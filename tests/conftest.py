"""Shared fixtures: a small synthetic IEMOCAP release and its conversion, built once per session."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SMALL = dict(sessions=(1, 2), dialogs_per_session=1, utterances_per_dialog=8, seed=3)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> tuple[Path, dict]:
    """(release root, synth truth) of a 2-dialog synthetic IEMOCAP release."""
    from mer_data.synth.iemocap import synth_iemocap

    out = tmp_path_factory.mktemp("synth-small")
    root = synth_iemocap(out, **SMALL)
    truth = json.loads((out / "synth_truth.json").read_text(encoding="utf-8"))
    return root, truth


def convert(root: Path, out: Path, *, workers: int = 1, scheduler: str | None = None, **option_values):
    """Plan and run a conversion through the Python API; returns the ConversionReport."""
    from mer_data.pipelines.convert import plan_iemocap, run_conversion
    from mer_data.pipelines.options import ConvertOptions

    option_values.setdefault("split", "session:2")
    options = ConvertOptions(corpus="iemocap", **option_values)
    plan = plan_iemocap(root, options)
    return run_conversion(plan, out, options, workers=workers, scheduler=scheduler, progress=False)


@pytest.fixture(scope="session")
def small_shards(small_corpus, tmp_path_factory):
    """(shard folder, report) of the small corpus converted with small shard caps."""
    root, _ = small_corpus
    out = tmp_path_factory.mktemp("shards-small")
    report = convert(root, out, shard_max_count=4)
    return out, report


@pytest.fixture(scope="session")
def training_shards(small_corpus, tmp_path_factory):
    """The small corpus split at random into train/valid/test (every split non-empty), for training."""
    root, _ = small_corpus
    out = tmp_path_factory.mktemp("shards-training")
    convert(root, out, split="random:1:0.6,0.2,0.2")
    counts = json.loads((out / "dataset.json").read_text())["counts"]["per_split"]
    assert all(counts.get(split, 0) > 0 for split in ("train", "valid", "test")), counts
    return out


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory):
    """A tiny random BERT with the MiniLM tokenizer, saved to a local folder (offline)."""
    from mer_data.model.text import write_tiny_text_encoder

    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@contextlib.contextmanager
def on_one_cpu() -> Iterator[None]:
    """Run the block, and every process it starts, on one CPU of those allowed: ffmpeg (and other
    tools) size their thread pools by the CPUs they may use, so this is another machine's count.
    Skips the test where fewer than 2 CPUs are allowed (nothing to compare with)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("CPU affinity cannot be set on this platform")
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("needs 2 CPUs to compare a run on all of them with a run on one")
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.fixture(scope="session", autouse=True)
def s3_server() -> Iterator[dict]:
    """A real S3 API (moto's server) on 127.0.0.1 at a free port, for the session: yields the
    environment a client needs (credentials and AWS_ENDPOINT_URL, which s3fs/botocore read); the
    fixture sets it in this process too, so child processes (`mer`, Dask workers) inherit it.
    Started before any test (autouse): DataLoader workers come from a forkserver that keeps the
    environment of its start, so one started by an earlier test would lack the credentials."""
    import logging

    import moto.server as server_module   # moto[server] and s3fs: the `test` extra

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def bucket(s3_server, request) -> str:
    """A fresh, empty bucket on the S3 server: its s3:// URL."""
    import re

    import s3fs

    name = "b-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    if fs.exists(name):
        fs.rm(name, recursive=True)
    fs.mkdir(name)
    return f"s3://{name}"
