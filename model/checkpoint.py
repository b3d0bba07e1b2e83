"""A training run's folder: its config, one checkpoint per epoch, metrics per epoch, and its state.

    RUN/
      config.json              what was trained on what, with which options (JSON, rebuilds the model);
                               the data as absolute locations, with the SHA-256 of each data folder's
                               dataset.json (model/shard_check.py: evaluate warns when it changed)
      .lock                    held (fcntl.flock) by the process training or resuming the run
      state.json               epochs done, best epoch and its score, epochs without improvement,
                               and the history (one summary per epoch, for plotting)
      checkpoints/epoch-NNN.pt weights, optimizer, the RNG states of torch's CPU generator, of every
                               CUDA device present, of numpy and of Python's random (rng_states;
                               tensors and plain values only); one is
                               written after every epoch, and by default only the best and the last
                               epoch's stay (--keep-checkpoints all keeps every one)
      metrics/epoch-NNN.json   train loss, valid loss and valid metrics of that epoch
      eval-<split>/            `mer evaluate` output (metrics.md, metrics.json, scores.parquet)
      eval-<split>-p<P>/       the same for an MESM run evaluated at another top-p (`--top-p P`)

Checkpoints are loaded with `torch.load(weights_only=True)`: a checkpoint file can only hold
tensors and plain Python values, so loading one never runs code from it (pickled objects are refused).
Every file is written atomically, so a run killed at any moment resumes from its last complete epoch.
A new run that fails before its first epoch is saved removes its config.json (and the folder, if it
made it), so the same command can simply be run again.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mer_data.folder_lock import LOCK_NAME as LOCK
from mer_data.folder_lock import folder_lock
from mer_data.shards.atomic import atomic_path

CONFIG = "config.json"
STATE = "state.json"


def run_lock(run: Path):
    """Hold RUN/.lock for the block (the same lock as a conversion's OUT: mer_data.folder_lock);
    FolderLocked when another process is training or resuming the run."""
    return folder_lock(run, what="process training or resuming this run",
                       advice="wait for it to finish, or train into another --out")


def remove_unfinished_start(run: Path) -> None:
    """Undo a new run's start that saved no epoch: its config.json (nothing else is written before)."""
    (Path(run) / CONFIG).unlink(missing_ok=True)


def remove_if_unused(run: Path) -> None:
    """Remove a run folder that holds nothing but its lock file (a start that failed in a folder it made)."""
    run = Path(run)
    if run.is_dir() and {path.name for path in run.iterdir()} <= {LOCK}:
        (run / LOCK).unlink(missing_ok=True)
        os.rmdir(run)


@dataclass
class RunState:
    """Where a run stands after its last complete epoch (early stopping included)."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_score: float | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path):
    """The JSON document in `path`; a damaged one raises DamagedJSON, which names the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DamagedJSON(exc.msg, exc.doc, exc.pos, Path(path)) from exc


class DamagedJSON(json.JSONDecodeError):
    """A JSONDecodeError (callers that catch that still do) whose message names the file."""

    def __init__(self, msg: str, doc: str, pos: int, path: Path):
        super().__init__(msg, doc, pos)
        self.path = path

    def __reduce__(self):   # so it crosses process boundaries with its path
        return type(self), (self.msg, self.doc, self.pos, self.path)

    def __str__(self) -> str:
        return (f"{self.path}: not valid JSON ({self.msg} at line {self.lineno} column {self.colno}): the file is "
                "damaged; restore it, or start over in a new folder")


def checkpoint_path(run: Path, epoch: int) -> Path:
    return Path(run) / "checkpoints" / f"epoch-{epoch:03d}.pt"


def evaluation_folder(run: Path, split: str, top_p: float | None = None) -> Path:
    """RUN/eval-<split>/, or RUN/eval-<split>-p<top_p>/ for an evaluation at another nucleus mass."""
    return Path(run) / (f"eval-{split}" if top_p is None else f"eval-{split}-p{top_p:g}")


def save_checkpoint(run: Path, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Path:
    path = checkpoint_path(run, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        **rng_states(),
    }
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def rng_states() -> dict:
    """Every random generator a training step may draw from, as tensors and plain values (weights_only loads them)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "rng_numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "rng_python": {"version": version, "state": list(python_state), "gauss": gauss},
    }


def restore_rng_states(saved: dict) -> list[str]:
    """Set the generators from a checkpoint's rng_states; returns notes on what could not be restored.

    Checkpoints of older runs hold only rng_cpu (and rng_cuda): the others are then left as they are.
    CUDA states are restored when the checkpoint holds one per device present; saved on another
    number of devices (or on a machine without CUDA), they are not, and a note says so."""
    notes = []
    torch.set_rng_state(saved["rng_cpu"].cpu())   # map_location may have put it on the GPU; it must be a CPU tensor
    cuda_states = [state.cpu() for state in saved.get("rng_cuda", [])]
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_states and len(cuda_states) == devices:
        torch.cuda.set_rng_state_all(cuda_states)
    elif cuda_states or devices:
        notes.append(f"the checkpoint holds the RNG states of {len(cuda_states)} CUDA devices, this machine has"
                     f" {devices}: CUDA generators not restored")
    numpy_state = saved.get("rng_numpy")
    if numpy_state is not None:
        np.random.set_state((numpy_state["kind"], numpy_state["keys"].cpu().numpy().astype(np.uint32),
                             numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = saved.get("rng_python")
    if python_state is not None:
        random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    return notes


KEEP_CHECKPOINTS = ("best-and-last", "all")


def prune_checkpoints(run: Path, state: RunState) -> list[Path]:
    """Delete the checkpoints of epochs that are neither the best nor the last; returns those deleted.

    With the MiniLM text encoder and AdamW's moments a checkpoint is ~280 MB: twenty epochs of every
    run kept would fill a disk. The last one is what --resume needs, the best one what evaluation uses.
    """
    keep = {checkpoint_path(run, epoch).name for epoch in (state.best_epoch, state.epochs_done) if epoch}
    removed = []
    for path in sorted((Path(run) / "checkpoints").glob("epoch-*.pt")):
        if path.name not in keep:
            path.unlink()
            removed.append(path)
    return removed


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint written by save_checkpoint; refuses anything but tensors and plain values."""
    path = Path(path)
    if not path.is_file():
        kept = sorted(p.name for p in path.parent.glob("epoch-*.pt"))
        raise FileNotFoundError(f"{path}: no such checkpoint (kept: {', '.join(kept) or 'none'}; a run keeps only its"
                                f" best and last epochs' unless trained with --keep-checkpoints all)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (and others) for unsafe or damaged files
        raise ValueError(f"{path}: not a loadable mer checkpoint ({type(exc).__name__}: {exc})") from exc


def save_state(run: Path, state: RunState) -> None:
    write_json(Path(run) / STATE, asdict(state))


def load_state(run: Path) -> RunState:
    path = Path(run) / STATE
    if not path.is_file():
        return RunState()
    return RunState(**read_json(path))
