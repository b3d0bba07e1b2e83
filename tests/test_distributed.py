"""Training in several processes (model/distributed.py): every sample read once, the steps of one
process with the same global batch, rank 0 alone writing, and `mer train` under a real torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import convert


@pytest.fixture(scope="module")
def uneven_shards(small_corpus, tmp_path_factory):
    """The small corpus in shards of at most 3 samples: splits of several shards that do not divide
    evenly between 2 processes."""
    root, _ = small_corpus
    out = tmp_path_factory.mktemp("shards-uneven")
    convert(root, out, split="random:1:0.5,0.25,0.25", shard_max_count=3)
    return out


def _keys_read(shards, *, rank, world, worker=0, workers=1, shuffle, monkeypatch) -> list[str]:
    """The sample keys one reader (rank, DataLoader worker) of model/data.py's pipeline takes, before decoding."""
    import webdataset as wds

    from mer_data.model.data import _EpochClock, _SampleSplit, _ShardOrder, _ShardSplit

    for name, value in (("RANK", rank), ("WORLD_SIZE", world), ("WORKER", worker), ("NUM_WORKERS", workers)):
        monkeypatch.setenv(name, str(value))
    pipeline = wds.DataPipeline(wds.SimpleShardList(shards), _ShardOrder(_EpochClock(3), shuffle, 0),
                                _ShardSplit(len(shards)), wds.tarfile_to_samples(), _SampleSplit(len(shards)))
    return [sample["__key__"] for sample in pipeline]


@pytest.mark.parametrize("world, workers", [(2, 1), (3, 1), (2, 2), (4, 2)])
def test_every_sample_is_read_by_exactly_one_reader(uneven_shards, monkeypatch, world, workers):
    from mer_data.model.data import resolve_shards

    shards = resolve_shards(uneven_shards, "train")
    expected = pd.read_parquet(uneven_shards / "index.parquet").query("split == 'train'")["key"].tolist()
    # 3 shards: split by rank and worker (2x1, 3x1), by rank then every other sample (2x2: 4 readers),
    # every 8th sample of every shard (4x2)
    assert len(shards) == 3
    for shuffle in (False, True):
        read = [key for rank in range(world) for worker in range(workers)
                for key in _keys_read(shards, rank=rank, world=world, worker=worker, workers=workers,
                                      shuffle=shuffle, monkeypatch=monkeypatch)]
        assert Counter(read) == Counter(expected), (world, workers, shuffle)


# ------------------------------------------------------------------------------------------------
# Steps with uneven batch counts: two real processes (gloo, a file store: no network)

RANK_BATCHES = {0: [2, 3, 2], 1: [2]}   # rank 1 runs out after the first step


def _batches(rank: int) -> list[torch.Tensor]:
    """Rank `rank`'s batches: rows of 3 inputs and 1 target, the same in every process."""
    generator = torch.Generator().manual_seed(10 + rank)
    return [torch.randn(size, 4, generator=generator) for size in RANK_BATCHES[rank]]


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def _train_in_rank(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from mer_data.model import distributed

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    model = _small_net()
    trainer = distributed.data_parallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)   # not scale-invariant: a wrong weight shows
    samples, steps = 0, 0
    for step in distributed.training_steps(_batches(rank), trainer):
        assert trainer.training == (step.samples > 0)   # a stand-in step leaves the BatchNorm statistics alone
        loss = nn.functional.mse_loss(trainer(step.batch[:, :3]), step.batch[:, 3:])
        optimizer.zero_grad()
        (loss * step.weight).backward()
        optimizer.step()
        samples, steps = samples + step.samples, steps + 1
    torch.save({"state": model.state_dict(), "samples": samples, "steps": steps}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def _one_process_reference() -> dict:
    """The same steps in one process: each step's gradient is that of the mean loss over every sample of
    the step, each rank's batch normalised with its own statistics (no SyncBatchNorm), and rank 0's
    BatchNorm running statistics kept."""
    model = _small_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = {rank: _batches(rank) for rank in RANK_BATCHES}
    for index in range(max(len(b) for b in batches.values())):
        step = {rank: b[index] for rank, b in batches.items() if index < len(b)}
        total = sum(len(batch) for batch in step.values())
        optimizer.zero_grad()
        loss = 0.0
        for rank, batch in step.items():
            # The other ranks' forward passes update copies of the running statistics: rank 0's stay.
            state = {**dict(model.named_parameters()),
                     **{name: buffer if rank == 0 else buffer.clone() for name, buffer in model.named_buffers()}}
            predicted = torch.func.functional_call(model, state, (batch[:, :3],))
            loss = loss + nn.functional.mse_loss(predicted, batch[:, 3:], reduction="sum")
        (loss / total).backward()
        optimizer.step()
    return model.state_dict()


def test_uneven_batch_counts_step_together_as_one_process(tmp_path):
    """Rank 1 has 1 batch, rank 0 has 3: no hang, rank 1 stands in for 2 steps with weight 0, and the
    weights are those of one process taking each step's samples together."""
    torch.multiprocessing.spawn(_train_in_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert [r["samples"] for r in ranks] == [sum(RANK_BATCHES[0]), sum(RANK_BATCHES[1])]
    assert [r["steps"] for r in ranks] == [3, 3]
    for name, tensor in ranks[0]["state"].items():   # the same model everywhere, buffers included
        torch.testing.assert_close(ranks[1]["state"][name], tensor, rtol=0, atol=0, msg=name)
    reference = _one_process_reference()
    for name, tensor in reference.items():   # float sums in another order: 1e-6
        torch.testing.assert_close(ranks[0]["state"][name], tensor, rtol=1e-6, atol=1e-6, msg=name)


# ------------------------------------------------------------------------------------------------
# `mer train` under torchrun


@pytest.fixture(scope="module")
def encoder_without_dropout(tmp_path_factory):
    """The tiny text encoder with its dropout off: a text-only FE2E then has no randomness and no
    BatchNorm, so two processes can match one exactly (up to the order of float sums)."""
    from mer_data.model.text import write_tiny_text_encoder

    folder = write_tiny_text_encoder(tmp_path_factory.mktemp("encoder-no-dropout"))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# A global batch of 16 holds the whole train split (8 samples in shards of 3, 3 and 2: one process
# reads 6, the other 2 or 3), so every epoch is one step, the same step in one process and in two.
OPTIONS = dict(modalities="t", batch_size=16, lr=3e-3, text_lr_factor=1.0, workers=0, model_options={"dropout": 0.0})


def _torchrun(folder: Path, *arguments: str) -> str:
    """`mer ARGUMENTS` in 2 processes started by torchrun on this machine, each in its own working
    directory folder/rank<RANK> (a relative --out then shows where each process wrote); returns the output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
               "sh", "-c", 'mkdir -p "rank$RANK" && cd "rank$RANK" && exec "$0" -m mer_data.cli "$@"',
               sys.executable, *arguments]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _cli_options(shards: Path, encoder: Path) -> list[str]:
    return [str(shards), "--modalities", OPTIONS["modalities"], "--batch-size", str(OPTIONS["batch_size"]),
            "--lr", str(OPTIONS["lr"]), "--text-lr-factor", "1", "--workers", "0", "--text-encoder", str(encoder),
            "--model-option", "dropout=0.0", "-q"]


def test_torchrun_trains_and_resumes_as_one_process(uneven_shards, encoder_without_dropout, tmp_path):
    from mer_data.model.checkpoint import checkpoint_path, load_checkpoint, load_state
    from mer_data.model.train import TrainConfig, train

    first = _torchrun(tmp_path, "train", *_cli_options(uneven_shards, encoder_without_dropout), "--out", "run",
                      "--epochs", "1", "--evaluate-split", "")
    resumed = _torchrun(tmp_path, "train", "--resume", "run", "--epochs", "2", "--evaluate-split", "train", "-q")
    run = tmp_path / "rank0" / "run"

    # Rank 0 alone wrote and printed: the other process's working directory stayed empty (it never
    # needed the run folder, not even to resume), and each epoch was reported once.
    assert list((tmp_path / "rank1").iterdir()) == []
    assert first.count("epoch 1: train loss") == 1 and resumed.count("epoch 2: train loss") == 1
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*") if path.is_file()) == [
        "checkpoints/epoch-002.pt", "config.json", "eval-train/metrics.json", "eval-train/metrics.md",
        "eval-train/scores.parquet", "metrics/epoch-001.json", "metrics/epoch-002.json", "state.json"]

    # The evaluation gathered every train sample exactly once, from both processes' shards.
    index = pd.read_parquet(uneven_shards / "index.parquet")
    scored = pd.read_parquet(run / "eval-train" / "scores.parquet")["id"].tolist()
    assert Counter(scored) == Counter(index.query("split == 'train'")["key"])
    history = load_state(run).history
    assert [row["train_samples"] for row in history] == [8, 8]
    assert [row["valid_samples"] for row in history] == [(index["split"] == "valid").sum()] * 2

    # One process with the same global batch: the same losses and weights, up to the order of float
    # sums: losses within 1e-5 relative, weights within 1e-4 relative + 1e-6 absolute. Except BERT's
    # attention key biases: their exact gradient is 0 (adding the same q.b to every key's score leaves
    # the softmax unchanged), so what they get is float noise, which Adam scales up to steps of lr.
    config = TrainConfig(shards=[str(uneven_shards)], text_encoder=str(encoder_without_dropout), epochs=2, **OPTIONS)
    alone = train(config, tmp_path / "alone", progress=False, log=lambda message: None).history
    for key in ("train_loss", "valid_loss"):
        assert [row[key] for row in history] == pytest.approx([row[key] for row in alone], rel=1e-5), key
    together, single = (load_checkpoint(checkpoint_path(folder, 2))["model"] for folder in (run, tmp_path / "alone"))
    for name, tensor in single.items():
        if not name.endswith("attention.self.key.bias"):
            torch.testing.assert_close(together[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def test_several_processes_without_torchrun_is_a_clear_error(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    result = CliRunner().invoke(main, ["train", str(tmp_path / "shards"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "WORLD_SIZE=2, but MASTER_ADDR, MASTER_PORT not set" in result.output and "torchrun" in result.output
    assert not (tmp_path / "run").exists()


def test_the_global_batch_must_divide_among_the_processes(monkeypatch):
    from mer_data.model import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    assert distributed.per_rank_batch(12, train=True) == 4
    assert distributed.per_rank_batch(8, train=False) == 3   # evaluation: rounded up
    with pytest.raises(ValueError, match="--batch-size 8 is the global batch of the 3 processes: give a multiple of 3"):
        distributed.per_rank_batch(8, train=True)
