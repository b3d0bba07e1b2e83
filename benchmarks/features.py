"""Benchmark: `mer features` in utterances/s with 1 and 2 workers, and each extractor's cost per utterance.

    .venv/bin/python benchmarks/features.py                          # demo shards, 2 rounds, ~6 min on 2 shared cores
    .venv/bin/python benchmarks/features.py --shards SHARDS/ --rounds 3
    .venv/bin/python benchmarks/features.py --audio mfcc --text none # other extractors in the timed runs

Shards: --shards, else demo-out/shards (what `mer demo` writes), else the demo's corpus (`mer demo`: 5 sessions x 2
dialogs x 24 synthetic utterances, leave-session-5-out split) generated once into
bench-out/features/ and reused.

1. Per extractor, in this process on one thread (torch, OpenCV, BLAS), over the first
   --extractor-samples samples: the load time (first call: model loading, numba compilation,
   openSMILE start) and then the seconds per utterance of eGeMAPS and MFCC + prosody (FLAC
   decoding included), appearance (MP4 decoding of the face frames included) and the text encoder
   (tokenizing included): the figures behind the cost of a `mer features` run.
2. The real command, `mer features SHARDS OUT --workers N --overwrite -q` (CLI start-up, the Dask
   cluster, each worker's model loading, the card: everything a user waits for), with N = 1 and
   N = 2 in the same run, --rounds rounds in alternating order; medians of utterances per wall
   second and per CPU-second of the process tree. The 2-worker/1-worker ratio is judged against
   its bound on these shards: one task per shard, so the run takes at least as long as its largest
   shard (bound = samples / samples of the largest shard; 1.66 on the demo shards, 116 of 192).

The machine may be shared: each timed part waits (up to --idle-wait s) for other work to stop,
and reports the cores other processes used meanwhile. Last line of the output: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # the per-extractor figures are one-thread figures, as in a worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_busy_seconds, wait_until_idle  # noqa: E402

DEFAULT_SHARDS = REPO / "demo-out" / "shards"   # what `mer demo` writes
WORK = REPO / "bench-out" / "features"
MER = [sys.executable, "-m", "mer_data.cli"]
WORKER_COUNTS = (1, 2)


# --------------------------------------------------------------------------------------------
# Shards


def ensure_shards(given: str | None) -> Path:
    """--shards, else the default demo shards, else the demo corpus generated (once) under bench-out/."""
    if given:
        path = Path(given)
        if not path.is_dir():
            raise SystemExit(f"{path}: no such shard folder")
        return path
    if DEFAULT_SHARDS.is_dir():
        return DEFAULT_SHARDS
    shards = WORK / "corpus" / "shards"
    if (shards / "dataset.json").is_file():
        return shards
    from mer_data.synth.iemocap import synth_iemocap
    from mer_data.pipelines.convert import plan_iemocap, run_conversion
    from mer_data.pipelines.options import ConvertOptions

    print(f"{DEFAULT_SHARDS} is absent: generating the demo corpus in {WORK / 'corpus'} ...", flush=True)
    raw = synth_iemocap(WORK / "corpus" / "raw", seed=0, progress=False)
    options = ConvertOptions(corpus="iemocap", split="session:5")
    run_conversion(plan_iemocap(raw, options), shards, options, workers=os.cpu_count(), overwrite=True,
                   progress=False)
    return shards


def shard_sizes(shards: Path) -> dict[str, int]:
    """Samples per shard, from the tar member names (json members: one per sample)."""
    sizes = {}
    for tar in sorted(shards.glob("*.tar")):
        with tarfile.open(tar) as archive:
            sizes[tar.name] = sum(name.endswith(".json") for name in archive.getnames())
    return sizes


# --------------------------------------------------------------------------------------------
# 1. Each extractor alone


def extractor_costs(shards: Path, count: int, idle_wait: float) -> dict[str, dict]:
    from types import SimpleNamespace

    import cv2
    import torch
    import webdataset as wds

    from mer_data.model.features.registry import MODALITIES, extractor_names, make_extractor

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tars = [str(tar) for tar in sorted(shards.glob("*.tar"))]
    samples = []
    for sample in wds.DataPipeline(wds.SimpleShardList(tars), wds.tarfile_to_samples()):
        # As the extraction task sees a sample: its members by extension, and its parsed metadata.
        members = {name: value for name, value in sample.items() if not name.startswith("__")}
        samples.append((SimpleNamespace(key=sample["__key__"], members=members), json.loads(sample["json"])))
        if len(samples) == count:
            break
    # Every registered extractor (model/features/registry.py), with its default settings.
    extractors = {f"{modality} {name}": make_extractor(modality, name)
                  for modality in MODALITIES for name in extractor_names(modality)}
    costs = {}
    for name, extractor in extractors.items():
        load = wait_until_idle(idle_wait)
        began = time.perf_counter()
        extractor.extract(*samples[0])  # the first call loads models / compiles: timed apart
        first = time.perf_counter() - began
        busy, cpu, began = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for sample, meta in samples:
            extractor.extract(sample, meta)
        wall = time.perf_counter() - began
        used = time.process_time() - cpu
        other = max(0.0, machine_busy_seconds() - busy - used) / wall
        costs[name] = {"first_call_s": first, "s_per_utterance": wall / len(samples),
                       "cpu_s_per_utterance": used / len(samples), "utterances": len(samples),
                       "other_cores": other, "other_cores_before": load}
        print(f"  {name:18s} {wall / len(samples) * 1000:7.1f} ms/utterance ({used / len(samples) * 1000:.1f} ms CPU); "
              f"first call {first:.2f} s; other cores {other:.2f}", flush=True)
    return costs


# --------------------------------------------------------------------------------------------
# 2. The command


def run_command(shards: Path, out: Path, workers: int, modality_args: list[str]) -> dict:
    """`mer features` in a subprocess: wall, CPU of the whole tree (workers are reaped by their
    parent, so RUSAGE_CHILDREN counts them), the other processes' load, the card's counts."""
    command = [*MER, "features", str(shards), str(out), "--workers", str(workers), "--overwrite", "-q",
               *modality_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds()
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    card = json.loads((out / "features.json").read_text(encoding="utf-8"))
    utterances = card["counts"]["total"] + card["errors"]["count"]
    return {"workers": workers, "wall_s": wall, "cpu_s": cpu, "utterances": utterances,
            "rejected": card["errors"]["count"], "utterances_per_s": utterances / wall,
            "utterances_per_cpu_s": utterances / cpu,
            "other_cores": max(0.0, machine_busy_seconds() - busy - cpu) / wall}


def timed_runs(shards: Path, rounds: int, idle_wait: float, modality_args: list[str]) -> list[dict]:
    runs = []
    for round_index in range(rounds):
        order = WORKER_COUNTS if round_index % 2 == 0 else tuple(reversed(WORKER_COUNTS))
        for workers in order:
            wait_until_idle(idle_wait)
            run = run_command(shards, WORK / f"feats-w{workers}", workers, modality_args)
            runs.append(run)
            print(f"  round {round_index + 1}, {workers} worker(s): {run['wall_s']:.1f} s, "
                  f"{run['utterances_per_s']:.2f} utterances/s, {run['utterances_per_cpu_s']:.2f} per CPU-s; "
                  f"other cores {run['other_cores']:.2f}", flush=True)
    return runs


def medians(runs: list[dict]) -> dict[int, dict]:
    return {workers: {key: statistics.median(run[key] for run in runs if run["workers"] == workers)
                      for key in ("wall_s", "cpu_s", "utterances_per_s", "utterances_per_cpu_s", "other_cores")}
            for workers in WORKER_COUNTS}


def main() -> None:
    from mer_data.model.features.registry import extractor_choices

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=None, help=f"shard folder [default: {DEFAULT_SHARDS}, else generated]")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the 1- and 2-worker runs (default 2)")
    parser.add_argument("--extractor-samples", type=int, default=40, help="samples per extractor timing (default 40)")
    parser.add_argument("--idle-wait", type=float, default=30.0, help="seconds to wait for other work before a part")
    parser.add_argument("--audio", default="egemaps", choices=extractor_choices("audio"))
    parser.add_argument("--visual", default="appearance", choices=extractor_choices("visual"))
    parser.add_argument("--text", default="encoder", choices=extractor_choices("text"))
    args = parser.parse_args()
    modality_args = ["--audio", args.audio, "--visual", args.visual, "--text", args.text]

    shards = ensure_shards(args.shards)
    sizes = shard_sizes(shards)
    total, largest = sum(sizes.values()), max(sizes.values())
    bound = total / largest
    print(f"shards: {shards} ({len(sizes)} shards, {total} samples, largest {largest}); "
          f"2-worker bound {bound:.2f}; {os.cpu_count()} CPUs", flush=True)
    print(f"per extractor, one thread, {min(args.extractor_samples, total)} utterances:", flush=True)
    costs = extractor_costs(shards, args.extractor_samples, args.idle_wait)
    print(f"mer features {' '.join(modality_args)}, {args.rounds} rounds:", flush=True)
    runs = timed_runs(shards, args.rounds, args.idle_wait, modality_args)
    figures = medians(runs)
    ratio = figures[2]["utterances_per_s"] / figures[1]["utterances_per_s"]
    for workers, values in figures.items():
        print(f"  {workers} worker(s), median: {values['utterances_per_s']:.2f} utterances/s "
              f"({values['wall_s']:.1f} s), {values['utterances_per_cpu_s']:.2f} per CPU-s; "
              f"other cores {values['other_cores']:.2f}")
    print(f"  2 workers / 1 worker: {ratio:.2f}x (bound on these shards: {bound:.2f}x; of the bound: "
          f"{ratio / bound:.0%})")
    print(json.dumps({
        "shards": str(shards), "samples": total, "shard_samples": sizes, "cpus": os.cpu_count(),
        "modalities": {"audio": args.audio, "visual": args.visual, "text": args.text},
        "utterances_per_s": {str(w): figures[w]["utterances_per_s"] for w in WORKER_COUNTS},
        "utterances_per_cpu_s": {str(w): figures[w]["utterances_per_cpu_s"] for w in WORKER_COUNTS},
        "wall_s": {str(w): figures[w]["wall_s"] for w in WORKER_COUNTS},
        "ratio_2_over_1": ratio, "ratio_bound": bound,
        "extractor_s_per_utterance": {name: cost["s_per_utterance"] for name, cost in costs.items()},
        "extractors": costs, "other_cores_median": {str(w): figures[w]["other_cores"] for w in WORKER_COUNTS},
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
