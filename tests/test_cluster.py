"""pipelines/cluster.py: the local cluster leaves the calling process as it found it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os
if __name__ == "__main__":
    from pipelines.cluster import dask_client
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
