"""A run's cost: parameters, counted FLOPs per sample, training time and throughput, in RUN/profile.json.

    profile = profile_run("runs/fe2e")            # measured once, then read from runs/fe2e/profile.json

What is measured, for any run `mer_data.model.evaluate.load_run` can rebuild (FE2E, MESM, the two-phase
baselines), with the weights of the run's best epoch:

- parameters: every parameter of the torch model (total, and those with requires_grad).
- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one whole forward pass in eval mode on the
  first batch of `split` (the run's own loader, batch size and order), divided by the batch's
  samples. FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), not
  element-wise work, pooling, gathers or indexing. MESM's count depends on what top-p kept on that
  batch. The per-child breakdown (e.g. text_encoder, extractors, temporal, heads) comes from the
  same count. End-to-end models also get model/flops.py's feature-extraction and text-encoder
  counts, on the same batch.
- training time: the sum over the epochs in state.json of `train_seconds` (the training pass) or,
  for runs written before that field existed, `seconds` (the whole epoch: training pass plus the
  validation pass); `training.seconds_source` says which. Train samples/s = training samples seen
  over those seconds (data loading and the backward pass included).
- evaluation samples/s: the same forward pass on the same batch, timed by the wall clock (the
  fastest of TIMED_REPEATS after one warm-up), model only: no data loading, no thresholding; on
  the CPU also the process's CPU seconds per sample, steadier on a shared machine.

Not counted, for the two-phase baselines: the offline feature extraction (openSMILE, HOG, the frozen
text encoder that made the text features). Their torch model starts from precomputed features, so
its FLOPs, parameters and training time are the second phase's only. The profile records the
feature folder the run read and what its card says about the extractors; the extraction timing
`mer features` records beside the card (FEATS/extraction.json) is copied, otherwise
`features.extraction_cost` is null (e.g. features imported from .csd files).

The cache is reused while the run's epochs, best epoch and the profiled split are unchanged;
`refresh=True` measures again.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mer_data.model import checkpoint as ckpt

PROFILE = "profile.json"
PROFILE_VERSION = 2
TIMED_REPEATS = 5

COUNTED = ("counted: matrix products and convolutions (torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per "
           "multiply-add) of one forward pass of the whole torch model in eval mode, per sample of the profiled "
           "batch; not counted: element-wise ops, pooling, gathers and indexing, the backward pass")
NOT_COUNTED_TWO_PHASE = ("two-phase run: the offline feature extraction that made its inputs (e.g. openSMILE, "
                         "HOG descriptors, the frozen text encoder) is not in these FLOPs, parameters or "
                         "training time")


def profile_run(run: Path | str, *, split: str = "valid", refresh: bool = False, device: str | None = None) -> dict:
    """The run's profile (see the module docstring); measured and written to RUN/profile.json unless cached."""
    run = Path(run)
    state = ckpt.load_state(run)
    path = run / PROFILE
    if not refresh and path.is_file():
        cached = ckpt.read_json(path)
        if _still_valid(cached, state, split):
            return cached
    profile = measure_profile(run, state, split=split, device=device)
    ckpt.write_json(path, profile)
    return profile


def _still_valid(cached: dict, state: ckpt.RunState, split: str) -> bool:
    return (cached.get("profile_version") == PROFILE_VERSION and cached.get("split") == split
            and cached.get("epochs_done") == state.epochs_done and cached.get("epoch") == state.best_epoch)


def measure_profile(run: Path, state: ckpt.RunState, *, split: str, device: str | None) -> dict:
    from mer_data.model.evaluate import load_run
    from mer_data.model.train import make_loader, tokenizer_for

    config, model, epoch = load_run(run, device=_usable_device(run, device), workers=0)
    model.eval()
    batch = _first_batch(make_loader(config, split, tokenizer_for(config), train=False), run, split)
    batch = batch.to(config.device)
    samples = len(batch)
    features = feature_folder_facts(config)
    return {
        "profile_version": PROFILE_VERSION,
        "run": str(run),
        "model": config.model,
        "modalities": config.modalities,
        "corpus": config.corpus,
        "epoch": epoch,
        "epochs_done": state.epochs_done,
        "split": split,
        "device": config.device,
        "threads": torch.get_num_threads(),
        "kind": "two-phase" if features else "end-to-end",
        "parameters": parameter_counts(model),
        "flops": flops_per_sample(model, batch, samples, end_to_end=not features),
        "batch": {"samples": samples, "ids": list(batch.ids)},
        "training": training_time(state),
        "evaluation": evaluation_throughput(model, batch, samples, config.device),
        "features": features,
        "counted": COUNTED,
        "not_counted": NOT_COUNTED_TWO_PHASE if features else
        "the data pipeline (video/audio decoding, face cropping, log-mel) before the model",
    }


def _usable_device(run: Path, device: str | None) -> str | None:
    """The requested device, else the run's own, else the CPU when the run's CUDA device is absent here."""
    if device:
        return device
    configured = ckpt.read_json(run / ckpt.CONFIG).get("device", "cpu") if (run / ckpt.CONFIG).is_file() else "cpu"
    if torch.device(configured).type == "cuda" and not torch.cuda.is_available():
        return "cpu"
    return None


def _first_batch(loader, run: Path, split: str):
    for batch in loader:
        return batch
    raise RuntimeError(f"{run}: the {split} split yielded no samples to profile (check the run's data paths)")


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    parameters = list(model.parameters())
    return {"total": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad)}


@torch.no_grad()
def flops_per_sample(model: torch.nn.Module, batch, samples: int, *, end_to_end: bool) -> dict[str, Any]:
    """Counted FLOPs of one forward pass per sample: the total, per child module, and for end-to-end
    models the feature extraction and text encoder (model/flops.py)."""
    with FlopCounterMode(display=False) as counter:
        model(batch)
    total = int(counter.get_total_flops())
    by_child = _flops_by_child(model, counter)
    by_child["other"] = total - sum(by_child.values())   # ops outside any child module (e.g. the fusion)
    result = {"forward_per_sample": total / samples, "forward_batch_total": total,
              "by_module_per_sample": {name: count / samples for name, count in by_child.items()}}
    if end_to_end and hasattr(model, "extractors") and hasattr(model, "extract"):
        from mer_data.model.flops import feature_extraction_flops, text_encoder_flops

        extraction = feature_extraction_flops(model, batch)
        result["feature_extraction_per_sample"] = {m: count / samples for m, count in extraction.items()}
        result["text_encoder_per_sample"] = text_encoder_flops(model, batch) / samples
    return result


def _flops_by_child(model: torch.nn.Module, counter: FlopCounterMode) -> dict[str, int]:
    """FLOPs under each direct child of the model, from FlopCounterMode's per-module totals.

    Those are keyed by module path ("FE2E.extractors.v") and include their submodules; a container
    that is never called itself (a ModuleDict) has no entry, so a child's FLOPs are the sum over the
    outermost called modules under it.
    """
    totals = {name: int(sum(by_op.values())) for name, by_op in counter.get_flop_counts().items()}
    root = type(model).__name__
    by_child = {}
    for child, _ in model.named_children():
        prefix = f"{root}.{child}"
        under = [name for name in totals if name == prefix or name.startswith(prefix + ".")]
        outermost = [name for name in under if not any(name.startswith(other + ".") for other in under)]
        by_child[child] = sum(totals[name] for name in outermost)
    return by_child


@torch.no_grad()
def evaluation_throughput(model: torch.nn.Module, batch, samples: int, device: str) -> dict[str, Any]:
    """Samples/s of the model's forward pass on the batch: one warm-up, the fastest of TIMED_REPEATS.

    The fastest, because on a shared machine other work only ever adds time. The process's CPU
    time is kept too: on a busy CPU it varies less than the wall clock.
    """
    def forward_seconds() -> tuple[float, float]:
        _synchronise(device)
        wall, cpu = time.perf_counter(), time.process_time()
        model(batch)
        _synchronise(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    forward_seconds()
    walls, cpus = zip(*(forward_seconds() for _ in range(TIMED_REPEATS)))
    best = min(walls)
    return {"samples_per_second": samples / best, "batch_samples": samples, "best_seconds": best,
            "median_seconds": statistics.median(walls), "repeats": TIMED_REPEATS,
            "cpu_seconds_per_sample": min(cpus) / samples if torch.device(device).type == "cpu" else None,
            "measures": "the model's forward pass only, in eval mode, without data loading; wall clock "
                        "(cpu_seconds_per_sample: the process's CPU time, all threads)"}


def _synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def training_time(state: ckpt.RunState) -> dict[str, Any]:
    """Training seconds and samples/s from state.json's history (see the module docstring)."""
    history = state.history
    with_train_seconds = [row for row in history if row.get("train_seconds") is not None]
    if history and len(with_train_seconds) == len(history):
        source = "train_seconds"
    elif with_train_seconds:
        source = "mixed"
    else:
        source = "seconds"
    seconds = sum(_epoch_train_seconds(row) for row in history)
    samples = sum(int(row.get("train_samples") or 0) for row in history)
    best_epoch_seconds = sum(_epoch_train_seconds(row) for row in history if row["epoch"] <= (state.best_epoch or 0))
    return {
        "seconds": seconds,
        "seconds_to_best_epoch": best_epoch_seconds,
        "epochs": len(history),
        "best_epoch": state.best_epoch,
        "train_samples": samples,
        "samples_per_second": samples / seconds if seconds > 0 else None,
        "seconds_source": source,
        "seconds_source_means": _SOURCE_MEANING[source],
    }


_SOURCE_MEANING = {
    "train_seconds": "the training passes only (state.json history train_seconds)",
    "seconds": "whole epochs: training pass plus validation pass (state.json history seconds; this run "
               "has no train_seconds), so samples/s is understated",
    "mixed": "train_seconds where the history has it, whole epochs (training plus validation) elsewhere",
}


def _epoch_train_seconds(row: dict) -> float:
    value = row.get("train_seconds")
    return float(row["seconds"] if value is None else value)


def feature_folder_facts(config) -> dict[str, Any] | None:
    """For a two-phase run: its feature folder, the extractors, and the extraction cost `mer features`
    recorded beside the card (FEATS/extraction.json; null where there is none, e.g. a .csd import);
    None for an end-to-end run."""
    from mer_data.model.features.table import CARD_NAME, EXTRACTION_TIMING_NAME
    from mer_data.model.kinds import is_feature_model

    if not is_feature_model(config.model):
        return None
    from mer_data.model.features.loader import local_copy
    from mer_data.model.shard_check import is_storage

    source = str(config.shards[0])   # a baseline reads one feature folder (model/features/loader.py)
    folder = local_copy(source) if is_storage(source) else Path(source)   # a bucket's: its local copy
    card = ckpt.read_json(folder / CARD_NAME)
    timing = folder / EXTRACTION_TIMING_NAME
    recorded = {"timing": ckpt.read_json(timing)} if timing.is_file() else None
    return {
        "path": source if is_storage(source) else str(folder),
        "source": card.get("source", {}).get("kind"),
        "modalities": {name: {"role": spec.get("role"), "extractor": spec.get("extractor"), "dim": spec.get("dim")}
                       for name, spec in card.get("modalities", {}).items()},
        "extraction_cost": recorded,
        "extraction_cost_note": (f"as recorded in {timing}" if recorded else
                                 f"{folder} records no extraction timing ({EXTRACTION_TIMING_NAME} is absent,"
                                 " e.g. a .csd import); not included"),
    }
