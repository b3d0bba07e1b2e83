"""Benchmark: object storage against local disk, on the same corpus, in the same run.

  conversion  `mer convert iemocap RAW OUT` with OUT a local folder and with OUT an s3:// bucket on a
              local S3 server (moto's server, a separate process on 127.0.0.1): wall seconds of the whole
              command. Target: the bucket within 1.2x of the local wall time.
  training    `mer train SHARDS` (FE2E with small nets and a tiny text encoder, so the data pipeline
              weighs as much as it can) streaming the same shards from the local folder and from the
              bucket: training samples/s of the epochs after the first (the first starts the loader's
              workers). Target: the bucket within 1.1x of the local throughput (local / bucket <= 1.1).

Each measurement runs `--repeats` times, local and bucket alternating, and the best of each is kept
(the machine may be shared with other work; the spread is printed). The S3 server is on this machine,
so the figures measure what object storage costs this code (uploads, requests, streaming through
fsspec), not a network; a real bucket adds its latency and bandwidth.

    .venv/bin/python benchmarks/object_storage.py               # ~10 min on 2 cores
    .venv/bin/python benchmarks/object_storage.py --quick       # smaller corpus, 1 repeat

The last line of the output is one JSON object with every figure. Scratch data goes to
bench-out/object_storage/ (git ignores bench-out/).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / "bench-out" / "object_storage"
MER = [sys.executable, "-m", "mer_data.cli"]
TINY_NETS = ["visual_channels=[4,8,8,8]", "acoustic_channels=[4,8,8,8]", "temporal_width=16", "temporal_layers=1",
             "temporal_heads=2"]
CONVERT_TARGET, TRAIN_TARGET = 1.2, 1.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_s3_server() -> tuple[subprocess.Popen, dict]:
    """moto's S3 server in its own process (so it does not share this process's interpreter lock)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, env
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the S3 server did not start") from None
            time.sleep(0.2)


def run(command: list[str], env: dict) -> float:
    """Wall seconds of `command`; raises with its stderr when it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def make_corpus(dialogs: int) -> Path:
    from mer_data.synth.iemocap import synth_iemocap

    out = SCRATCH / f"corpus-{dialogs}"
    if not (out / "synth_truth.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        synth_iemocap(out, sessions=(1, 2, 3), dialogs_per_session=dialogs, utterances_per_dialog=10, seed=5)
    from mer_data.corpora.iemocap import find_iemocap_root

    return find_iemocap_root(out)


def bench_conversion(raw: Path, env: dict, repeats: int, workers: int) -> dict:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="bench", secret="bench")
    fs.mkdir("bench")
    args = ["--split", "random:1:0.6,0.2,0.2", "--workers", str(workers), "--shard-max-count", "8", "--overwrite",
            "--quiet"]
    local, bucket = [], []
    for _ in range(repeats):
        local.append(run([*MER, "convert", "iemocap", str(raw), str(SCRATCH / "shards"), *args], env))
        bucket.append(run([*MER, "convert", "iemocap", str(raw), "s3://bench/shards", *args], env))
    return {"local_wall_s": local, "bucket_wall_s": bucket, "ratio": min(bucket) / min(local)}


def bench_training(env: dict, repeats: int, encoder: Path) -> dict:
    local, bucket = [], []
    for _ in range(repeats):
        for source, figures in ((str(SCRATCH / "shards"), local), ("s3://bench/shards", bucket)):
            out = SCRATCH / "run"
            shutil.rmtree(out, ignore_errors=True)
            options = [arg for option in TINY_NETS for arg in ("--model-option", option)]
            run([*MER, "train", source, "--out", str(out), "--epochs", "3", "--batch-size", "4", "--workers", "1",
                 "--text-encoder", str(encoder), "--evaluate-split", "", "-q", *options], env)
            epochs = [json.loads((out / "metrics" / f"epoch-{n:03d}.json").read_text()) for n in (2, 3)]
            figures.append(sum(e["train_samples"] for e in epochs) / sum(e["train_seconds"] for e in epochs))
    return {"local_samples_per_s": local, "bucket_samples_per_s": bucket, "ratio": max(local) / max(bucket)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller corpus and one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="measurements of each (default 2; quick: 1)")
    parser.add_argument("--workers", type=int, default=2, help="conversion workers")
    parser.add_argument("--dialogs", type=int, default=None,
                        help="dialogs per session, 3 sessions of 10 utterances each (default 2; quick: 1)")
    parser.add_argument("--skip-training", action="store_true", help="measure the conversion only")
    options = parser.parse_args()
    repeats = options.repeats or (1 if options.quick else 2)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from mer_data.model.text import write_tiny_text_encoder

    raw = make_corpus(options.dialogs or (1 if options.quick else 2))
    encoder = write_tiny_text_encoder(SCRATCH / "encoder")
    server, env = start_s3_server()
    try:
        conversion = bench_conversion(raw, env, repeats, options.workers)
        training = None if options.skip_training else bench_training(env, repeats, encoder)
    finally:
        server.terminate()
        server.wait()
    print(f"conversion wall s   local {min(conversion['local_wall_s']):7.1f}  bucket "
          f"{min(conversion['bucket_wall_s']):7.1f}  bucket/local {conversion['ratio']:.3f}  "
          f"{'PASS' if conversion['ratio'] <= CONVERT_TARGET else 'MISS'} (target <= {CONVERT_TARGET})")
    if training is not None:
        print(f"training samples/s  local {max(training['local_samples_per_s']):7.2f}  bucket "
              f"{max(training['bucket_samples_per_s']):7.2f}  local/bucket {training['ratio']:.3f}  "
              f"{'PASS' if training['ratio'] <= TRAIN_TARGET else 'MISS'} (target <= {TRAIN_TARGET})")
    print(json.dumps({"conversion": conversion, "training": training, "repeats": repeats, "dialogs_per_session": options.dialogs or (1 if options.quick else 2),
                      "cpus": os.cpu_count(), "quick": options.quick}))


if __name__ == "__main__":
    main()
