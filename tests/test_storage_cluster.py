"""A conversion on a Dask cluster whose workers share no disk with each other or with the client: a
`dask scheduler` and two `dask worker` processes started separately, each worker with its own temporary
space, writing into a bucket on the S3 server (tests/conftest.py). RAW is readable by every worker (as a
release mounted read-only on each machine would be); OUT exists only in the bucket."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_convert_iemocap import sha256_of_outputs
from tests.test_convert_robustness import mer
from tests.test_storage import s3, sha256_of_bucket_outputs

REPO = Path(__file__).resolve().parents[1]
DASK = [sys.executable, "-c", "import sys; from distributed.cli.{0} import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(module: str, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    command = [DASK[0], DASK[1], DASK[2].format(module), *args]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def separate_cluster(s3_server, tmp_path):
    """(scheduler address, [worker temp dirs]): a plain tcp:// cluster on 127.0.0.1 (an external cluster's
    security is its own: docs/dask-cluster.md), two single-threaded workers with separate TMPDIRs."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    processes = [start("dask_scheduler", ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], env,
                       tmp_path / "scheduler.log")]
    temps = []
    try:
        for number in range(2):
            temp = tmp_path / f"worker-{number}"
            temp.mkdir()
            temps.append(temp)
            processes.append(start("dask_worker", [address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                                   "--local-directory", str(temp), "--name", f"w{number}"],
                                   {**env, "TMPDIR": str(temp)}, tmp_path / f"worker-{number}.log"))
        wait_for_workers(address, 2)
        yield address, temps
    finally:
        for process in reversed(processes):
            stop(process)


def wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    deadline = time.monotonic() + 120
    with Client(address, timeout=60) as client:
        while len(client.scheduler_info()["workers"]) < count:
            assert time.monotonic() < deadline, "the dask workers did not connect"
            time.sleep(0.2)


def test_workers_without_a_shared_disk_convert_into_the_bucket(small_corpus, small_shards, separate_cluster,
                                                              bucket, tmp_path):
    root, _ = small_corpus
    reference, _ = small_shards
    address, worker_temps = separate_cluster
    url = f"{bucket}/cluster"
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    result = mer("convert", "iemocap", root, url, "--split", "session:2", "--shard-max-count", "4", "--quiet",
                 "--scheduler", address, env={**os.environ, "TMPDIR": str(client_dir)})
    assert result.returncode == 0, result.stderr
    assert sha256_of_bucket_outputs(url) == sha256_of_outputs(reference)
    assert not s3().exists(f"{url.removeprefix('s3://')}/.staging")
    # Each worker staged in its own temporary space and cleaned it up; nothing was written next to RAW.
    for temp in worker_temps:
        assert not list(temp.glob("mer-stage-*")), f"staging left in {temp}"
    assert not list(client_dir.glob("mer-*")), "the client's temporary folder is removed"
