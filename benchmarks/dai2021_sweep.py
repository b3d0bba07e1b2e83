"""`sparse_vs_dense.py --preset dai2021`: the paper's sparsity sweep on the published networks.

See sparse_vs_dense.py's docstring for what is measured; this module holds the dai2021 part.
"""
from __future__ import annotations

import json
import math
import statistics

import torch
from torch import nn

from benchmarks.sparse_vs_dense import LABELS, extraction_step, synthetic_batch, time_interleaved
from mer_data.model.flops import feature_extraction_flops
from mer_data.model.architectures import build_model
from mer_data.model.text import load_tokenizer

# Dai et al. 2021, feature-extraction GFLOPs of MESM by top-p; FE2E's is 8.65.
PAPER_FE2E_GFLOPS = 8.65
PAPER_GFLOPS = {0.1: 2.93, 0.2: 3.23, 0.3: 3.58, 0.4: 3.94, 0.5: 4.34, 0.6: 4.71, 0.7: 5.18, 0.8: 5.66, 0.9: 6.47}
CALIBRATION_P = 0.7


class ShapedScores(nn.Module):
    """A level's attention with its scores' shape set: `sharpness` None leaves the scores as the
    attention computes them (flat when untrained); a number S standardises each image's scores and
    multiplies them by S, so the softmax over the image's sites is that of S x z-scores (peaked like a
    trained attention's for S of a few). The order of the sites stays the attention's."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention
        self.sharpness: float | None = None

    def forward(self, sites, text, image_index=None):
        scores = self.attention(sites, text, image_index)
        if self.sharpness is None:
            return scores
        if image_index is None:                                  # [n, L]: one row per image
            mean, std = scores.mean(dim=1, keepdim=True), scores.std(dim=1, keepdim=True)
            return (scores - mean) / std.clamp(min=1e-12) * self.sharpness
        n_images = int(image_index.max()) + 1                    # [N] sites of images by index
        counts = torch.bincount(image_index, minlength=n_images).clamp(min=1).to(scores.dtype)
        mean = scores.new_zeros(n_images).index_add(0, image_index, scores) / counts
        centred = scores - mean.index_select(0, image_index)
        variance = scores.new_zeros(n_images).index_add(0, image_index, centred.square()) / counts
        return centred / variance.sqrt().clamp(min=1e-12).index_select(0, image_index) * self.sharpness


def shape_attention(sparse) -> list[ShapedScores]:
    """Wrap every level's attention of every extractor of a dai2021 MESM; returns the wrappers."""
    wrappers = []
    for extractor in sparse.extractors.values():
        for index, attention in enumerate(extractor.attention):
            extractor.attention[index] = ShapedScores(attention)
            wrappers.append(extractor.attention[index])
    return wrappers


def set_sharpness(wrappers, sharpness: float | None) -> None:
    for wrapper in wrappers:
        wrapper.sharpness = sharpness


def share_published_weights(dense, sparse) -> None:
    """FE2E's weights into MESM; only MESM's attention is its own, only FE2E's level conv biases unused
    (SparseConvNet's convolutions have none)."""
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    missing = [key for key in missing if ".attention." not in key]
    unexpected = [key for key in unexpected if not (".levels." in key and key.endswith("bias") and ".conv" in key)]
    if missing or unexpected:
        raise RuntimeError(f"FE2E/MESM dai2021 weights do not line up: missing {missing}, unexpected {unexpected}")


def flops_ratio(sparse, batch, dense_total: int, p: float) -> tuple[float, dict]:
    sparse.top_p = p
    counted = feature_extraction_flops(sparse, batch, batch_statistics=True)   # as in the timed passes
    return counted["total"] / dense_total, counted


def calibrate_sharpness(sparse, wrappers, batch, dense_total: int, target: float) -> float:
    """S whose FLOPs ratio at CALIBRATION_P is `target` (bisection on log S; the ratio falls with S)."""
    low, high = math.log(0.05), math.log(50.0)
    for _ in range(14):
        middle = (low + high) / 2
        set_sharpness(wrappers, math.exp(middle))
        ratio, _ = flops_ratio(sparse, batch, dense_total, CALIBRATION_P)
        low, high = (middle, high) if ratio > target else (low, middle)
    return round(math.exp((low + high) / 2), 4)


def run_dai2021_sweep(args) -> dict:
    """The sweep of sparse_vs_dense.py --preset dai2021 (its docstring); returns the JSON's dict."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dense = build_model("fe2e", LABELS, "tav", args.text_encoder, arch="dai2021")
    sparse = build_model("mesm", LABELS, "tav", args.text_encoder, 0.5, arch="dai2021")
    share_published_weights(dense, sparse)
    wrappers = shape_attention(sparse)
    # the dai2021 inputs: 48x48 face crops and 128-band mel chunks
    batch = synthetic_batch(load_tokenizer(args.text_encoder), args.batch_size, args.seed, mel_bands=128)
    faces, chunks = batch.frames.shape[0], batch.mel_chunks.shape[0]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, dai2021 networks, batch"
          f" {len(batch)} utterances, {faces} face crops 3x48x48, {chunks} mel chunks 1x128x32")

    dense_flops = feature_extraction_flops(dense, batch)
    per_face, per_chunk = dense_flops["v"] / faces / 1e9, dense_flops["a"] / chunks / 1e9
    print(f"FE2E feature extraction: {dense_flops['total'] / 1e9:.2f} GFLOPs counted; per face {per_face:.3f},"
          f" per chunk {per_chunk:.3f} (official CNNs' convolutions: 0.956, 1.674; the flatten-MLP adds ~1%)")
    paper_at = {p: PAPER_GFLOPS.get(round(p, 1), float("nan")) / PAPER_FE2E_GFLOPS for p in args.p}
    target = PAPER_GFLOPS[CALIBRATION_P] / PAPER_FE2E_GFLOPS
    sharpness = calibrate_sharpness(sparse, wrappers, batch, dense_flops["total"], target)
    print(f"peaked attention: sharpness S = {sharpness} (softmax of S x each image's standardised scores),"
          f" fitted so that the FLOPs ratio at p = {CALIBRATION_P} is the paper's {target:.3f}")
    variants = {"flat": None, "peaked": sharpness}

    flops = {}
    for name, value in variants.items():
        set_sharpness(wrappers, value)
        for p in args.p:
            flops[name, p] = flops_ratio(sparse, batch, dense_flops["total"], p)[1]

    with torch.no_grad():
        text_vector = dense.encode_text(batch).detach().requires_grad_()
    dense.train()
    sparse.train()
    timed = [name for name in variants if args.attention in (name, "both")]
    kept = {}

    def mesm_step(name, p):
        set_sharpness(wrappers, variants[name])
        sparse.top_p = p
        extraction_step(sparse, batch, text_vector)
        kept[name, p] = sparse.active_fractions()

    runs = {"fe2e": lambda: extraction_step(dense, batch, text_vector)}
    for name in timed:
        for p in args.p:
            runs[f"mesm-{name}@{p}"] = lambda name=name, p=p: mesm_step(name, p)
    times = time_interleaved(runs, args.repeats, args.warmup)
    fe2e_wall = statistics.median(times["fe2e"]["wall"])
    fe2e_cpu = statistics.median(times["fe2e"]["cpu"])
    print(f"FE2E forward+backward: median {fe2e_wall:.2f} s wall, {fe2e_cpu:.2f} s CPU over {args.repeats} rounds")

    per_p = []
    for name in variants:
        for p in args.p:
            row = {"attention": name, "p": p,
                   "flops_ratio": round(flops[name, p]["total"] / dense_flops["total"], 4),
                   "paper_flops_ratio": round(paper_at[p], 4),
                   "flops_ratio_visual": round(flops[name, p]["v"] / dense_flops["v"], 4),
                   "flops_ratio_acoustic": round(flops[name, p]["a"] / dense_flops["a"], 4)}
            if name in timed:
                wall, cpu = times[f"mesm-{name}@{p}"]["wall"], times[f"mesm-{name}@{p}"]["cpu"]
                paired = statistics.median(s / d for s, d in zip(wall, times["fe2e"]["wall"]))
                row.update(time_ratio=round(statistics.median(wall) / fe2e_wall, 4),
                           paired_time_ratio=round(paired, 4),
                           cpu_time_ratio=round(statistics.median(cpu) / fe2e_cpu, 4),
                           kept={m: [round(f, 3) for f in levels] for m, levels in kept[name, p].items()})
            per_p.append(row)
            print(f"{name:6s} p={p}: flops_ratio {row['flops_ratio']:.3f} (paper {row['paper_flops_ratio']:.3f};"
                  f" visual {row['flops_ratio_visual']:.3f}, acoustic {row['flops_ratio_acoustic']:.3f})"
                  + (f", time_ratio {row['time_ratio']:.3f} (paired {row['paired_time_ratio']:.3f},"
                     f" CPU {row['cpu_time_ratio']:.3f}), kept per level {row['kept']}" if "time_ratio" in row else ""))

    def at_half(name):
        return next((row for row in per_p if row["attention"] == name and row["p"] == 0.5),
                    next(row for row in per_p if row["attention"] == name))

    head = at_half("flat" if "flat" in timed else timed[0])
    other = "peaked" if head["attention"] == "flat" else "flat"
    result = {"preset": "dai2021", "p": head["p"], "attention": head["attention"],
              "flops_ratio": head["flops_ratio"], "paper_flops_ratio": head["paper_flops_ratio"],
              "time_ratio": head.get("time_ratio"), "paired_time_ratio": head.get("paired_time_ratio"),
              "cpu_time_ratio": head.get("cpu_time_ratio"), "kept": head.get("kept"),
              "targets": {"flops_ratio_within": 0.05, "time_ratio_at_most_flops_ratio_times": 1.3},
              "gflops_per_face": round(per_face, 4), "gflops_per_chunk": round(per_chunk, 4),
              "fe2e_gflops": round(dense_flops["total"] / 1e9, 3), "fe2e_s": round(fe2e_wall, 3),
              "peaked_sharpness": sharpness, "calibrated_at_p": CALIBRATION_P,
              other: {k: v for k, v in at_half(other).items() if k != "attention"},
              "faces": faces, "chunks": chunks, "threads": torch.get_num_threads(), "repeats": args.repeats,
              "per_p": per_p}
    print(json.dumps(result))
    return result
