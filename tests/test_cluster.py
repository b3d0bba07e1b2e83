"""pipelines/cluster.py: the local cluster leaves the calling process as it found it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os
if __name__ == "__main__":
    from mer_data.pipelines.cluster import dask_client
    with dask_client(1) as client:
        inside = set(client.run(lambda: __import__("os").environ.get("OMP_NUM_THREADS")).values())
    import torch
    print(inside, os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())
"""


def test_a_local_cluster_does_not_leave_one_thread_settings_in_the_caller(tmp_path):
    # distributed's nannies write OMP_NUM_THREADS=1 into the environment of the process that starts
    # them; `mer demo` trains after converting in the same process, so torch would get one thread.
    script = tmp_path / "cluster_environment.py"
    script.write_text(SCRIPT)
    env = {name: value for name, value in os.environ.items() if not name.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    inside, outside, torch_threads = result.stdout.split()[-3:]
    assert inside == "{'1'}"          # the workers still run single-threaded, as meant
    assert outside == "None"          # the caller's environment is back as it was
    untouched = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                               capture_output=True, text=True, env=env, timeout=120)
    assert torch_threads == untouched.stdout.strip()   # torch's default thread count, as without a cluster


def _listening(process) -> list[tuple[str, int]]:
    """(host, port) of every listening TCP socket of `process` and its children."""
    processes = [process, *process.children(recursive=True)]
    return [conn.laddr[:2] for p in processes for conn in p.net_connections(kind="inet") if conn.status == "LISTEN"]


def _http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_local_cluster_is_private_to_its_process():
    # Finding: the dashboard listened on 0.0.0.0 and any local client could connect and run code
    # as the converting user. Now: loopback only, no dashboard, TLS with a temporary certificate.
    import psutil

    from mer_data.pipelines.cluster import dask_client

    with dask_client(1) as client:
        scheduler = client.scheduler.address
        workers = list(client.scheduler_info()["workers"])
        listening = _listening(psutil.Process())
        http_port = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port)
        pages = {page: _http_status(f"http://127.0.0.1:{http_port}/{page}") for page in ("health", "status", "info/main/workers.html")}
        # Another process (as another local user's would be), without the certificate or without TLS.
        refusals = [_intruder_refused(address) for address in (scheduler, scheduler.replace("tls://", "tcp://"))]
    assert scheduler.startswith("tls://127.0.0.1:")
    assert workers and all(address.startswith("tls://127.0.0.1:") for address in workers)
    assert listening and {host for host, _ in listening} == {"127.0.0.1"}, listening
    assert pages == {"health": 200, "status": 404, "info/main/workers.html": 404}   # no dashboard, no task lists
    assert refusals == [True, True], refusals


INTRUDER = """
import sys, dask
from mer_data.pipelines.cluster import SchedulerUnreachable, _connect
with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
    try:
        _connect(sys.argv[1]).close()
    except SchedulerUnreachable:
        sys.exit(0)
sys.exit(1)
"""


def _intruder_refused(address: str) -> bool:
    """Whether a client in a separate process, with dask's default (no) security, is refused."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", INTRUDER, address], capture_output=True, timeout=120).returncode == 0


def test_a_remote_scheduler_with_tls_is_reached_with_dask_tls_config(tmp_path):
    # --scheduler tls://... uses dask's standard distributed.comm.tls.* settings (what --tls-ca-file,
    # --tls-cert and --tls-key set), here the certificate of a private local cluster.
    import dask

    from mer_data.pipelines.cluster import dask_client

    with dask_client(1) as local:
        security = local.security
        files = {}
        for name, pem in (("ca", security.tls_ca_file), ("cert", security.tls_client_cert),
                          ("key", security.tls_client_key)):
            files[name] = tmp_path / f"{name}.pem"
            files[name].write_text(pem)
        tls = {"distributed.comm.tls.ca-file": str(files["ca"]), "distributed.comm.tls.client.cert": str(files["cert"]),
               "distributed.comm.tls.client.key": str(files["key"])}
        with dask.config.set(tls), dask_client(scheduler=local.scheduler.address) as remote:
            assert remote.submit(pow, 2, 10).result() == 1024


def test_an_unreachable_scheduler_is_one_error_line(small_corpus, tmp_path):
    import socket

    import dask
    from click.testing import CliRunner

    from mer_data.cli import main

    with socket.socket() as probe:       # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root, _ = small_corpus
    address = f"tcp://127.0.0.1:{port}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = CliRunner().invoke(main, ["convert", "iemocap", str(root), str(tmp_path / "out"), "--split",
                                           "session:2", "--scheduler", address, "--quiet"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"Dask scheduler at {address}" in errors[0] and "check that it is running" in errors[0]


def test_tls_options_set_dask_tls_config_for_the_scheduler_client(tmp_path):
    import copy

    import dask
    from click.testing import CliRunner

    from mer_data.cli import main

    pem = tmp_path / "x.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    before = copy.deepcopy(dask.config.config)
    try:
        for command in (["convert", "iemocap", str(tmp_path), str(tmp_path / "out")], ["validate", str(tmp_path)],
                        ["features", str(tmp_path), str(tmp_path / "feats")]):
            dask.config.refresh()
            CliRunner().invoke(main, [*command, "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", str(pem),
                                      "--tls-cert", str(pem), "--tls-key", str(pem)])
            assert [dask.config.get(f"distributed.comm.tls.{key}") for key in ("ca-file", "client.cert", "client.key")] \
                == [str(pem)] * 3, command
    finally:
        dask.config.config.clear()
        dask.config.config.update(before)
