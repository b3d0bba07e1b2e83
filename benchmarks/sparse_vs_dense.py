"""MESM's sparse feature extraction against FE2E's dense one: counted FLOPs and CPU time, same batch.

    .venv/bin/python benchmarks/sparse_vs_dense.py                 # the benchmark (1 thread, ~1 min)
    .venv/bin/python benchmarks/sparse_vs_dense.py --threads 2     # both cores
    .venv/bin/python benchmarks/sparse_vs_dense.py --repeats 3     # quicker, noisier
    .venv/bin/python benchmarks/sparse_vs_dense.py --channels 32 64 128 256   # other CNN widths

FE2E and MESM are built with the same weights wherever they share parameters (MESM loads FE2E's
state_dict; only its cross-modal attention is its own). One fixed batch: 8 utterances with 4-8
face frames (3x48x48) and 7-13 log-mel chunks (1x64x32) each, seeded random tensors, and short
transcripts through the default text encoder (its CLS vector is computed once, outside the timing).

For each p in --p (default 0.3 0.5 0.7 0.9):
- flops_ratio: counted FLOPs (model/flops.py: FlopCounterMode, eval mode) of MESM's visual+acoustic
  extraction over FE2E's on the batch;
- time_ratio: median wall time of MESM's forward+backward of that extraction over FE2E's, on the
  CPU (train mode; backward from a scalar of the extracted vectors; weights' and text vector's
  gradients), measured interleaved (every round runs every model once, in a rotating order) after
  warm-up rounds, torch.set_num_threads fixed (--threads) and printed; paired_time_ratio: the median
  over rounds of the per-round ratio (robust to other load drifting across the run);
  cpu_time_ratio: the same with the process's CPU time (less sensitive to other processes);
- kept: the active share of positions at each resolution (per modality) of the timed passes;
- dense_efficiency_bound: the CPU-time ratio MESM would reach if each sparse block cost exactly its
  kept share of the dense block's time (FE2E's stem and blocks timed one by one) and the attention
  and selection were free: how far faster sparse kernels alone could take this model at this p.
The attention is untrained (near uniform over positions), so top-p keeps a share close to p.

The last line is one JSON object: the p=0.5 figures at the top level and every p under "per_p".
Targets at p=0.5: flops_ratio <= 0.55, time_ratio <= 0.7.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import Batch  # noqa: E402
from model.flops import feature_extraction_flops, text_encoder_flops  # noqa: E402
from model.nets import build_model  # noqa: E402
from model.text import load_tokenizer  # noqa: E402

LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")


def synthetic_batch(tokenizer, batch_size: int, seed: int) -> Batch:
    """Seeded random frames and mel chunks of the loader's shapes, short transcripts tokenized."""
    generator = torch.Generator().manual_seed(seed)
    frame_counts = torch.randint(4, 9, (batch_size,), generator=generator)
    chunk_counts = torch.randint(7, 14, (batch_size,), generator=generator)
    words = "i really do not know what you want me to say about it anymore".split()
    texts = [" ".join(words[: 4 + (3 * i) % 10]) for i in range(batch_size)]
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=100, return_tensors="pt")
    return Batch(
        ids=[f"synthetic-{i}" for i in range(batch_size)],
        frames=torch.randn(int(frame_counts.sum()), 3, 48, 48, generator=generator),
        frame_counts=frame_counts,
        mel_chunks=torch.randn(int(chunk_counts.sum()), 1, 64, 32, generator=generator),
        chunk_counts=chunk_counts,
        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
        targets=torch.zeros(batch_size, len(LABELS)), label_names=LABELS)


def extraction_step(model, batch, text_vector: torch.Tensor) -> None:
    """One forward+backward of the visual and acoustic feature extraction."""
    features = model.extract_features(batch, text_vector)
    loss = sum(f.square().mean() for f in features.values())
    loss.backward()
    model.zero_grad(set_to_none=True)
    text_vector.grad = None


def dense_part_times(model, batch, rounds: int) -> dict[str, dict[str, float]]:
    """{modality: {"stem": s, "block1": s, ...}}: median CPU time of forward+backward of each part of
    FE2E's extractors on its own (the stem on the batch's images, each block on its predecessor's output)."""
    from model.extractors import channels_last_strides

    def median_cpu(step) -> float:
        step()
        times = []
        for _ in range(rounds):
            started = time.process_time()
            step()
            times.append(time.process_time() - started)
        return statistics.median(times)

    parts = {}
    for modality, images in (("v", batch.frames), ("a", batch.mel_chunks)):
        extractor = model.extractors[modality]
        x = channels_last_strides(images)
        parts[modality] = {"stem": median_cpu(lambda: extractor.stem(x).square().mean().backward())}
        with torch.no_grad():
            x = extractor.stem(x)
        for index, block in enumerate(extractor.blocks, start=1):
            block_input = x.detach().requires_grad_()
            parts[modality][f"block{index}"] = median_cpu(lambda: block(block_input).square().mean().backward())
            with torch.no_grad():
                x = block(x)
    model.zero_grad(set_to_none=True)
    return parts


def dense_efficiency_bound(parts: dict[str, dict[str, float]], kept: dict[str, list[float]]) -> float:
    """Seconds MESM's extraction would take if each sparse block cost exactly its kept share of the dense
    block's time and the selection itself were free: the stems (dense in both) plus share x block."""
    total = 0.0
    for modality, times in parts.items():
        total += times["stem"]
        blocks = [name for name in times if name != "stem"]
        total += sum(kept[modality][index] * times[name] for index, name in enumerate(blocks))
    return total


def time_interleaved(runs: dict, rounds: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """{name: {"wall": [s], "cpu": [s]}} per round; each round runs every callable once, order rotating.

    cpu is this process's CPU time (all its threads): less sensitive than wall time to other
    processes on the same cores, but it also counts threads spinning at barriers.
    """
    names = list(runs)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if round_index >= warmup:
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--p", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared 2-core machine, 2 OpenMP threads stall"
                             " at every barrier whenever another process takes a core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-encoder", default=None, help="name or path (default: the bundled MiniLM)")
    parser.add_argument("--no-nucleus-per-level", action="store_true",
                        help="MESM without top-p after each sparse pooling (pooling alone decides)")
    parser.add_argument("--channels", type=int, nargs="+", default=None, metavar="WIDTH",
                        help="CNN widths of both extractors, stem first (default: model/nets.py Architecture's)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    options = {"nucleus_per_level": not args.no_nucleus_per_level}
    if args.channels:
        options.update(visual_channels=tuple(args.channels), acoustic_channels=tuple(args.channels))
    dense = build_model("fe2e", LABELS, "tav", args.text_encoder, **options)
    sparse = build_model("mesm", LABELS, "tav", args.text_encoder, 0.5, **options)
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    if unexpected or any(".attention." not in key for key in missing):
        raise RuntimeError(f"FE2E/MESM weights do not line up: missing {missing}, unexpected {unexpected}")
    batch = synthetic_batch(load_tokenizer(args.text_encoder), args.batch_size, args.seed)
    with torch.no_grad():
        text_vector = dense.encode_text(batch).detach().requires_grad_()
    dense.train()
    sparse.train()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {len(batch)} utterances,"
          f" {batch.frames.shape[0]} frames 3x48x48, {batch.mel_chunks.shape[0]} mel chunks 1x64x32,"
          f" nucleus_per_level={options['nucleus_per_level']}, CNN widths {dense.architecture.visual_channels}")

    dense_flops = feature_extraction_flops(dense, batch)
    print(f"FE2E feature extraction: {dense_flops['total'] / 1e9:.3f} GFLOPs counted"
          f" (visual {dense_flops['v'] / 1e9:.3f}, acoustic {dense_flops['a'] / 1e9:.3f});"
          f" text encoder (same in both, not included) {text_encoder_flops(dense, batch) / 1e9:.3f} GFLOPs")

    flops, kept = {}, {}
    runs = {"fe2e": lambda: extraction_step(dense, batch, text_vector)}
    for p in args.p:
        sparse.top_p = p
        flops[p] = feature_extraction_flops(sparse, batch)
        runs[f"mesm@{p}"] = lambda p=p: (setattr(sparse, "top_p", p), extraction_step(sparse, batch, text_vector),
                                         kept.__setitem__(p, sparse.active_fractions()))
    times = time_interleaved(runs, args.repeats, args.warmup)

    fe2e_wall = statistics.median(times["fe2e"]["wall"])
    fe2e_cpu = statistics.median(times["fe2e"]["cpu"])
    print(f"FE2E forward+backward: median {fe2e_wall * 1e3:.1f} ms wall, {fe2e_cpu * 1e3:.1f} ms CPU"
          f" over {args.repeats} rounds")
    parts = dense_part_times(dense, batch, args.repeats)
    parts_total = sum(sum(times.values()) for times in parts.values())
    stems = sum(times["stem"] for times in parts.values())
    print(f"FE2E's parts, each forward+backward on its own (CPU): {parts_total * 1e3:.1f} ms, of which the stems"
          f" (dense in MESM too) {stems * 1e3:.1f} ms; "
          + ", ".join(f"{m} {n} {t * 1e3:.1f}" for m, times in parts.items() for n, t in times.items()))
    per_p = []
    for p in args.p:
        wall, cpu = times[f"mesm@{p}"]["wall"], times[f"mesm@{p}"]["cpu"]
        row = {
            "p": p,
            "flops_ratio": round(flops[p]["total"] / dense_flops["total"], 4),
            "flops_ratio_visual": round(flops[p]["v"] / dense_flops["v"], 4),
            "flops_ratio_acoustic": round(flops[p]["a"] / dense_flops["a"], 4),
            "time_ratio": round(statistics.median(wall) / fe2e_wall, 4),
            "paired_time_ratio": round(statistics.median(s / d for s, d in zip(wall, times["fe2e"]["wall"])), 4),
            "cpu_time_ratio": round(statistics.median(cpu) / fe2e_cpu, 4),
            # What the CPU-time ratio would be with sparse blocks exactly as fast per kept site as the
            # dense ones and a free selection: how far kernels alone could take this model.
            "dense_efficiency_bound": round(dense_efficiency_bound(parts, kept[p]) / parts_total, 4),
            "mesm_gflops": round(flops[p]["total"] / 1e9, 4),
            "mesm_ms": round(statistics.median(wall) * 1e3, 1),
            "kept": {m: [round(f, 3) for f in fractions] for m, fractions in kept[p].items()},
        }
        per_p.append(row)
        print(f"p={p}: flops_ratio {row['flops_ratio']:.3f} (visual {row['flops_ratio_visual']:.3f},"
              f" acoustic {row['flops_ratio_acoustic']:.3f}), time_ratio {row['time_ratio']:.3f}"
              f" (paired {row['paired_time_ratio']:.3f}, CPU time {row['cpu_time_ratio']:.3f},"
              f" bound at dense efficiency {row['dense_efficiency_bound']:.3f};"
              f" {row['mesm_ms']:.1f} ms), kept per resolution {row['kept']}")
    at_half = next((row for row in per_p if row["p"] == 0.5), per_p[0])
    result = {"p": at_half["p"], "flops_ratio": at_half["flops_ratio"], "time_ratio": at_half["time_ratio"],
              "paired_time_ratio": at_half["paired_time_ratio"], "cpu_time_ratio": at_half["cpu_time_ratio"],
              "dense_efficiency_bound": at_half["dense_efficiency_bound"],
              "targets": {"flops_ratio": 0.55, "time_ratio": 0.7},
              "fe2e_gflops": round(dense_flops["total"] / 1e9, 4), "fe2e_ms": round(fe2e_wall * 1e3, 1),
              "threads": torch.get_num_threads(), "repeats": args.repeats,
              "nucleus_per_level": options["nucleus_per_level"],
              "channels": list(dense.architecture.visual_channels), "per_p": per_p}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
