"""Training and evaluating in several processes (`torchrun --nproc-per-node N mer train ...`).

torchrun starts N copies of the command with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in their environment; `start` joins them into one process group (gloo for CPU
tensors, and NCCL for CUDA tensors where there is a GPU). Without those variables, or with
WORLD_SIZE=1, every function here is the identity and a run is the one-process run.

What is split, and how:

- Data: each process reads its own shards (model/data.py: by rank, then by DataLoader worker;
  with fewer shards than readers, every k-th sample), so every sample is read by exactly one
  process per pass, also when the shards do not divide evenly. `--batch-size` is the GLOBAL batch:
  each process takes batch_size / WORLD_SIZE samples a step (`per_rank_batch`).
- Steps (`training_steps`): before each step the processes add up how many samples each holds
  (one all-reduce of a number). Each process weights its mean loss by local * world / total, so
  DistributedDataParallel's average of the gradients is the gradient of the mean loss over the
  union of the step's samples, exactly as one process with that batch would get, also for a
  short last batch. Processes get different numbers of batches when their shards hold different
  numbers of samples: a process that has run out takes part in the remaining steps with a
  zero-weighted forward and backward of its last batch in eval mode (no dropout, no change to
  the BatchNorm statistics), so every process runs the same collectives, nothing hangs and no
  sample is read twice. (torch's Join context does the same for DDP alone, but not for the
  count all-reduce this scheme needs.) The pass ends when no process has a batch left.
- Gradients: DistributedDataParallel (find_unused_parameters: which parameters get a gradient
  depends on the modalities, and the text encoder's pooler never does). BatchNorm is NOT
  synchronised: each process normalises with the statistics of its own samples' frames (hundreds
  per step), SyncBatchNorm runs on GPUs only and cannot replace the sparse BatchNorm of MESM.
  After each training pass every process takes rank 0's buffers (the running statistics the
  checkpoint holds), so validation is the same model everywhere.
- Evaluation: each process predicts its share; `gather_predictions` collects every sample's
  scores by id on every process (each process then computes the same metrics and early-stopping
  state) and refuses a sample predicted twice.
- Files: only rank 0 reads and writes the run folder and prints; it sends the config, the state and a
  resumed checkpoint to the others (`from_main`), which therefore need no access to the folder.
"""
from __future__ import annotations

import atexit
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a process waits for the others at a collective (one slow validation pass included).
TIMEOUT = timedelta(minutes=60)


class DistributedError(RuntimeError):
    """torchrun asked for several processes, but they cannot work together."""


def launched_size() -> int:
    """The WORLD_SIZE torchrun set (1 when started without it)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={value!r} in the environment is not a number of processes") from None


def active() -> bool:
    """Whether this process is one of several in a started process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that reads and writes the run folder and prints."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def start() -> None:
    """Join the process group torchrun's environment describes; nothing for one process, or when joined already."""
    size = launched_size()
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise DistributedError(f"WORLD_SIZE={size}, but this torch build has no torch.distributed")
    missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={size}, but {', '.join(missing)} not set: start several processes with"
                               f" torchrun (e.g. `torchrun --nproc-per-node {size} $(which mer) train ...`)")
    backend = _backend()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    try:
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    except Exception as error:
        raise DistributedError(f"rank {os.environ['RANK']} of {size}: the {backend} process group did not start at"
                               f" {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({type(error).__name__}:"
                               f" {error}); check that every process reaches that address (GLOO_SOCKET_IFNAME or"
                               f" NCCL_SOCKET_IFNAME name the network interface to use)") from error
    atexit.register(_stop)
    if dist.get_rank() != 0:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """No progress bars or info lines from Hugging Face in the processes other than rank 0 (it prints for all)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _backend() -> str:
    """gloo for CPU tensors (the counts, gathered predictions, CPU training); NCCL for CUDA tensors where it exists."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def _stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """The device of this process: under torchrun a CUDA device means the GPU of its LOCAL_RANK."""
    if not active() or torch.device(device).type != "cuda":
        return device
    visible = torch.cuda.device_count()
    if local_rank() >= visible:
        raise DistributedError(f"process LOCAL_RANK={local_rank()} has no GPU of its own ({visible} visible on this"
                               f" machine): start at most {visible} process(es) per machine with --device cuda")
    return f"cuda:{local_rank()}"


def per_rank_batch(batch_size: int, *, train: bool) -> int:
    """Each process's share of the global `batch_size`; training refuses a batch that does not divide evenly
    (the steps would not be those of one process); evaluation rounds up (batching changes nothing there)."""
    size = world_size()
    if size == 1:
        return batch_size
    if not train:
        return -(-batch_size // size)
    if batch_size % size:
        raise ValueError(f"--batch-size {batch_size} is the global batch of the {size} processes: give a multiple of"
                         f" {size} (each process takes batch-size / {size} samples a step)")
    return batch_size // size


def check_supported(model_kind: str, feature_model: bool) -> None:
    """The two-phase baselines' feature loaders read the whole split in every process: refused under torchrun."""
    if active() and feature_model:
        raise ValueError(f"{model_kind} trains in one process (its feature loader is not split between processes);"
                         f" run it without torchrun")


class MainProcessFailed(SystemExit):
    """Ends a process other than rank 0 quietly when rank 0 failed (rank 0 reports the error)."""

    def __init__(self) -> None:
        super().__init__(1)


def from_main(read: Callable[[], T]) -> T:
    """`read()` on rank 0, its result sent to every process (pickled: plain values and CPU tensors).

    When rank 0 fails it raises its error and the other processes end with MainProcessFailed
    (exit status 1, nothing printed), so none of them waits for a result that never comes."""
    if not active():
        return read()
    box: list[Any] = [None]
    failure = None
    if is_main():
        try:
            box[0] = ("ok", read())
        except BaseException as error:
            box[0], failure = ("failed", None), error
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    status, value = box[0]
    if status != "ok":
        raise MainProcessFailed()
    return value


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """The sums of `values` over the processes (the values themselves for one process)."""
    if not active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tuple(tensor.tolist())


def seed_rank(seed: int) -> None:
    """Give every process its own dropout and augmentation randomness (seeded from `seed` and the rank);
    rank 0, like one process, keeps the stream of `seed` (already seeded by the caller)."""
    if rank() == 0:
        return
    mixed = seed * 1_000_003 + rank()
    random.seed(mixed)
    np.random.seed(mixed % 2**32)
    torch.manual_seed(mixed)


def data_parallel(model: nn.Module) -> nn.Module:
    """The module the training pass calls: DistributedDataParallel over `model` (which keeps its own
    names: checkpoints save `model`, never the wrapper), or `model` itself in one process.
    Wrapping copies rank 0's parameters and buffers to every process."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=None, find_unused_parameters=True)


@dataclass
class Step:
    batch: Any
    weight: float    # multiplies the step's mean loss (see training_steps)
    samples: int     # this process's samples in the step (0 for a stand-in step)


def training_steps(batches: Iterable, model: nn.Module) -> Iterator[Step]:
    """The steps of one training pass over this process's `batches` (module doc: Steps).

    One process: every batch with weight 1. Several: a step while any process has a batch; this
    process's weight is local * world / total samples of the step, and once it has run out it
    stands in with its last batch, weight 0, `model` in eval mode for that step. After the pass
    every process takes rank 0's buffers."""
    if not active():
        for batch in batches:
            yield Step(batch, 1.0, len(batch))
        return
    size, batches, last = world_size(), iter(batches), None
    while True:
        batch = next(batches, None)
        local = 0 if batch is None else len(batch)
        (total,) = sum_over_ranks(local)
        if total == 0:
            break
        if batch is not None:
            last = batch
            yield Step(batch, local * size / total, local)
            continue
        if last is None:
            raise ValueError(f"process {rank()} of {size} got no training sample while the others did: the split"
                             f" has fewer samples than processes; train with fewer processes")
        training = model.training
        model.eval()
        try:
            yield Step(last, 0.0, 0)
        finally:
            model.train(training)
    sync_buffers(model)


def sync_buffers(model: nn.Module) -> None:
    """Every process takes rank 0's buffers (BatchNorm running statistics)."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_predictions(ids: list[str], scores: list[np.ndarray], targets: list[np.ndarray], loss_sum: float,
                       kept) -> tuple[list[str], list[np.ndarray], list[np.ndarray], float, Any]:
    """Every process's predictions of a split on every process, ordered by sample id (one process: as given).

    `scores`/`targets`: per-batch arrays in `ids` order; `kept`: a train.KeptShare (merged). Raises
    ValueError naming a sample that two processes predicted (the split of the shards went wrong)."""
    if not active():
        return ids, scores, targets, loss_sum, kept
    parts: list[Any] = [None] * world_size()
    mine = (ids, np.concatenate(scores) if scores else None, np.concatenate(targets) if targets else None,
            loss_sum, kept)
    dist.all_gather_object(parts, mine)
    owner: dict[str, int] = {}
    rows = []
    for part_rank, (part_ids, part_scores, part_targets, _, _) in enumerate(parts):
        for row, sample in enumerate(part_ids):
            if sample in owner:
                raise ValueError(f"sample {sample} was predicted by processes {owner[sample]} and {part_rank}: each"
                                 f" sample must be read by one process only")
            owner[sample] = part_rank
            rows.append((sample, part_scores[row], part_targets[row]))
    rows.sort(key=lambda row: row[0])
    merged_kept = parts[0][4]
    for part in parts[1:]:
        merged_kept.merge(part[4])
    return ([sample for sample, _, _ in rows], [np.stack([row[1] for row in rows])] if rows else [],
            [np.stack([row[2] for row in rows])] if rows else [], sum(part[3] for part in parts), merged_kept)
