"""MESM's sparse feature extraction against FE2E's dense one: counted FLOPs and CPU time, same batch.

    .venv/bin/python benchmarks/sparse_vs_dense.py                 # the benchmark (1 thread, ~1 min)
    .venv/bin/python benchmarks/sparse_vs_dense.py --threads 2     # both cores
    .venv/bin/python benchmarks/sparse_vs_dense.py --repeats 3     # quicker, noisier
    .venv/bin/python benchmarks/sparse_vs_dense.py --channels 32 64 128 256   # other CNN widths
    .venv/bin/python benchmarks/sparse_vs_dense.py --run runs/mesm    # a trained MESM on a real batch

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

With --run RUN/ (a MESM run of `mer train` on t, a, v), MESM has that run's best weights and FE2E the
same weights wherever the two share names (all but the cross-modal attention), and the batch is the
first --batch-size utterances of the run's shards' --split (test by default; --shards for others).
A trained attention is peaked, so top-p at p keeps fewer than p of the positions: this measures
what a trained model saves on real inputs, where the default measures the untrained worst case.

The last line is one JSON object: the p=0.5 figures at the top level and every p under "per_p".
Targets at p=0.5: flops_ratio <= 0.55, time_ratio <= 0.7.

    .venv/bin/python benchmarks/sparse_vs_dense.py --preset dai2021    # the published networks (~5 min)

--preset dai2021 runs the paper's sparsity sweep (p = 0.1 ... 0.9) on the published networks
(model/dai2021.py: FE2E's CNNs of 0.96/1.69 GFLOPs per face/chunk, MESM's three attended sparse
levels), with FE2E's weights in MESM wherever they share names. Batch: --batch-size utterances
(default 2, the paper's MESM batch) with 4-8 face crops 3x48x48 and 7-13 mel chunks 1x128x32 each.
Per p: the counted FLOPs ratio MESM/FE2E of feature extraction (FlopCounterMode, in train mode like
the timed passes: batch norm on the batch's statistics, so the untrained features are normalised as
a trained model's are) next to the paper's (its GFLOPs by p over FE2E's 8.65), and the measured
forward+backward time ratio on the same batch, for two kinds of attention maps:
- flat: the attention as built, untrained: close to uniform, so top-p keeps about p of the sites at
  each level. These are the paper's conditions: the official code never trains its attention (it is
  detached, one of the two defects model/dai2021.py fixes), so its sweep selected with untrained
  projections of trained features. The JSON's top level is flat at p = 0.5.
- peaked: like a trained attention's. Each image's scores are standardised and multiplied by one
  sharpness S (softmax of S x z-scores), S fitted by bisection so that the FLOPs ratio at p = 0.7
  equals the paper's 5.18/8.65 = 0.60; the other p are then predictions of the curve, not fitted.
--attention chooses which of the two are timed (FLOPs: both always). The last line is JSON: p = 0.5
(flat) at the top level, the peaked figures under "peaked", every p of both under "per_p". Targets at
p = 0.5: flops_ratio within 0.05 of the paper's 0.50, time_ratio <= 1.3 x flops_ratio.
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

from mer_data.model.data import Batch  # noqa: E402
from mer_data.model.flops import feature_extraction_flops, text_encoder_flops  # noqa: E402
from mer_data.model.architectures import build_model  # noqa: E402
from mer_data.model.text import load_tokenizer  # noqa: E402

LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")


def synthetic_batch(tokenizer, batch_size: int, seed: int, mel_bands: int = 64) -> Batch:
    """Seeded random 48x48 face crops and mel_bands x 32 mel chunks (64: the compact loader's log-mel;
    128: the dai2021 audio front end), short transcripts tokenized."""
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
        mel_chunks=torch.randn(int(chunk_counts.sum()), 1, mel_bands, 32, generator=generator),
        chunk_counts=chunk_counts,
        input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
        targets=torch.zeros(batch_size, len(LABELS)), label_names=LABELS)


def untrained_models_and_batch(args):
    """FE2E and MESM with the same fresh weights (MESM loads FE2E's), and the seeded synthetic batch."""
    options = {"nucleus_per_level": not args.no_nucleus_per_level}
    if args.channels:
        options.update(visual_channels=tuple(args.channels), acoustic_channels=tuple(args.channels))
    dense = build_model("fe2e", LABELS, "tav", args.text_encoder, **options)
    sparse = build_model("mesm", LABELS, "tav", args.text_encoder, 0.5, **options)
    share_weights(dense, sparse)
    return dense, sparse, synthetic_batch(load_tokenizer(args.text_encoder), args.batch_size, args.seed)


def trained_models_and_batch(args):
    """A trained MESM run's best weights (its attention decides what is kept), FE2E with those same
    weights where they share names, and the first batch of the run's shards' --split, in file order."""
    from dataclasses import replace

    from mer_data.model.evaluate import load_run
    from mer_data.model.train import make_loader, make_model, tokenizer_for

    config, sparse, epoch = load_run(Path(args.run), shards=args.shards, device="cpu", workers=0)
    if config.model != "mesm" or set(config.modalities) != set("tav"):
        raise SystemExit(f"{args.run}: --run needs a MESM run on all of t, a, v (it is {config.model},"
                         f" {config.modalities})")
    dense = make_model(replace(config, model="fe2e"))
    share_weights(dense, sparse, direction="from_sparse")
    batch = next(iter(make_loader(replace(config, batch_size=args.batch_size), args.split,
                                  tokenizer_for(config), train=False)))
    print(f"trained MESM: {args.run} epoch {epoch} (trained at top-p {config.top_p}); batch: the first"
          f" {len(batch)} utterances of the {args.split} split")
    return dense, sparse, batch


def share_weights(dense, sparse, direction: str = "from_dense") -> None:
    """Copy the parameters FE2E and MESM share (all but MESM's attention) from one into the other."""
    if direction == "from_dense":
        missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
        missing = [key for key in missing if not is_cross_modal_attention(key)]    # MESM's own
    else:
        shared = {key: value for key, value in sparse.state_dict().items() if not is_cross_modal_attention(key)}
        missing, unexpected = dense.load_state_dict(shared, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"FE2E/MESM weights do not line up: missing {missing}, unexpected {unexpected}")


def is_cross_modal_attention(key: str) -> bool:
    """A parameter of MESM's cross-modal attention (extractors.<m>.attention.*): MESM's own."""
    return key.startswith("extractors.") and ".attention." in key


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
    from mer_data.model.extractors import channels_last_strides

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
    parser.add_argument("--preset", choices=["compact", "dai2021"], default="compact",
                        help="dai2021: the published networks' sparsity sweep (see the docstring)")
    parser.add_argument("--attention", choices=["peaked", "flat", "both"], default="both",
                        help="with --preset dai2021: which attention maps to time (FLOPs: both always)")
    parser.add_argument("--p", type=float, nargs="+", default=None,
                        help="nucleus masses (default 0.3 0.5 0.7 0.9; with --preset dai2021 0.1 0.2 ... 0.9)")
    parser.add_argument("--batch-size", type=int, default=None, help="utterances (default 8; dai2021: 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed interleaved rounds (default 7; dai2021: 3)")
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
    parser.add_argument("--run", default=None, metavar="RUN",
                        help="a trained MESM run folder: time its best weights on a real batch of its shards"
                             " (FE2E gets the same weights), instead of fresh weights on synthetic tensors")
    parser.add_argument("--shards", nargs="+", default=None, help="with --run: shards other than the run's")
    parser.add_argument("--split", default="test", help="with --run: the split the batch comes from")
    args = parser.parse_args(argv)
    published = args.preset == "dai2021"
    args.p = args.p or ([round(0.1 * i, 1) for i in range(1, 10)] if published else [0.3, 0.5, 0.7, 0.9])
    args.batch_size = args.batch_size or (2 if published else 8)
    args.repeats = args.repeats or (3 if published else 7)
    if published:
        if args.run or args.channels or args.no_nucleus_per_level:
            parser.error("--preset dai2021 builds the published networks: drop --run, --channels and"
                         " --no-nucleus-per-level")
        from benchmarks.dai2021_sweep import run_dai2021_sweep

        return run_dai2021_sweep(args)
    if args.run and (args.channels or args.no_nucleus_per_level or args.text_encoder):
        parser.error("--run takes the sizes and text encoder of the run: drop --channels,"
                     " --no-nucleus-per-level and --text-encoder")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.run:
        dense, sparse, batch = trained_models_and_batch(args)
    else:
        dense, sparse, batch = untrained_models_and_batch(args)
    with torch.no_grad():
        text_vector = dense.encode_text(batch).detach().requires_grad_()
    dense.train()
    sparse.train()
    nucleus_per_level = sparse.architecture.nucleus_per_level
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {len(batch)} utterances,"
          f" {batch.frames.shape[0]} frames {'x'.join(map(str, batch.frames.shape[1:]))},"
          f" {batch.mel_chunks.shape[0]} mel chunks {'x'.join(map(str, batch.mel_chunks.shape[1:]))},"
          f" nucleus_per_level={nucleus_per_level}, CNN widths {dense.architecture.visual_channels}")

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
              "nucleus_per_level": nucleus_per_level, "trained_run": args.run,
              "channels": list(dense.architecture.visual_channels), "per_p": per_p}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
