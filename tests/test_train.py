"""Training end to end on a tiny synthetic corpus: it runs, lowers the loss, resumes exactly, evaluates."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

# Small nets and a tiny random text encoder: the point is the loop, not the accuracy.
TINY_NETS = dict(visual_channels=[4, 8, 8, 8], acoustic_channels=[4, 8, 8, 8], temporal_width=16,
                 temporal_layers=1, temporal_heads=2, dropout=0.1)


def _config(shards, encoder, **overrides):
    from mer_data.model.train import TrainConfig

    values = dict(shards=[str(shards)], model="fe2e", modalities="tav", epochs=4, batch_size=4, lr=3e-3,
                  text_lr_factor=1.0, patience=10, workers=0, text_encoder=str(encoder), model_options=TINY_NETS)
    values.update(overrides)
    return TrainConfig(**values)


def _weights(run, epoch):
    from mer_data.model.checkpoint import checkpoint_path, load_checkpoint

    return load_checkpoint(checkpoint_path(run, epoch))["model"]


def test_training_lowers_the_loss_and_resumes_exactly(training_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.train import train

    straight = train(_config(training_shards, tiny_text_encoder), tmp_path / "straight", progress=False, log=lambda m: None)
    losses = [row["train_loss"] for row in straight.history]
    assert straight.epochs_done == 4 and len(losses) == 4
    assert losses[-1] < losses[0], losses

    # The same run killed after epoch 2, then resumed with --resume (and a raised epoch budget).
    interrupted = tmp_path / "interrupted"
    train(_config(training_shards, tiny_text_encoder, epochs=2), interrupted, progress=False, log=lambda m: None)
    resumed = train(None, interrupted, resume=True, epochs=4, progress=False, log=lambda m: None)
    assert resumed.epochs_done == 4
    assert [row["train_loss"] for row in resumed.history] == pytest.approx(losses, rel=1e-5)
    final_straight, final_resumed = _weights(tmp_path / "straight", 4), _weights(interrupted, 4)
    for name, tensor in final_straight.items():
        torch.testing.assert_close(final_resumed[name], tensor, msg=name)

    # Only the best and the last checkpoints stay (the default); every epoch left its metrics, and the
    # run folder says what it was trained with.
    kept = sorted(p.name for p in (interrupted / "checkpoints").iterdir())
    assert kept == sorted({f"epoch-{resumed.best_epoch:03d}.pt", "epoch-004.pt"})
    for epoch in range(1, 5):
        metrics = json.loads((interrupted / "metrics" / f"epoch-{epoch:03d}.json").read_text())
        assert metrics["epoch"] == epoch and "mean" in metrics["valid"]
    config = json.loads((interrupted / "config.json").read_text())
    assert config["corpus"] == "iemocap" and config["label_names"] == ["ang", "exc", "fru", "hap", "neu", "sad"]


def test_a_new_run_refuses_an_existing_folder(training_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.train import train

    run = tmp_path / "run"
    train(_config(training_shards, tiny_text_encoder, epochs=1), run, progress=False, log=lambda m: None)
    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(training_shards, tiny_text_encoder, epochs=1), run, progress=False, log=lambda m: None)


def test_early_stopping_stops_after_patience():
    from mer_data.model.checkpoint import RunState
    from mer_data.model.train import EpochResult, update_state

    state = RunState()
    for epoch, f1 in enumerate([0.5, 0.6, 0.55, 0.58, 0.59], start=1):
        update_state(state, EpochResult(epoch, 1.0, 1.0, f1, 0.0, 8, {}), patience=3)
    assert state.best_epoch == 2 and state.stopped_early and state.epochs_without_improvement == 3


def test_warmup_epochs_can_neither_be_best_nor_use_up_patience():
    from mer_data.model.checkpoint import RunState
    from mer_data.model.train import EpochResult, update_state

    # A lucky early epoch (0.9) in the warm-up must not end the run before it trains at its own top-p.
    state = RunState()
    for epoch, f1 in enumerate([0.5, 0.9, 0.4, 0.6, 0.55], start=1):
        update_state(state, EpochResult(epoch, 1.0, 1.0, f1, 0.0, 8, {}), patience=2, eligible=epoch > 3)
    assert state.best_epoch == 4 and not state.stopped_early and state.epochs_without_improvement == 1
    assert state.epochs_done == 5 and len(state.history) == 5


def test_mesm_trains_and_evaluate_writes_named_metrics(training_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train

    run = tmp_path / "mesm"
    lines = []
    state = train(_config(training_shards, tiny_text_encoder, model="mesm", top_p=0.5, epochs=1), run,
                  progress=False, log=lines.append)
    metrics = evaluate(run, split="test", progress=False)
    index = __import__("pandas").read_parquet(training_shards / "index.parquet")
    assert metrics["run"]["samples"] == int((index["split"] == "test").sum())
    markdown = (run / "eval-test" / "metrics.md").read_text()
    assert "plain binary accuracy" in markdown and "F1" in markdown
    # The kept share of the positions is measured per split, modality and resolution (4 here).
    for kept in (state.history[0]["valid_kept_share"], metrics["run"]["kept_share"]):
        assert set(kept) == {"a", "v"} and all(len(levels) == 4 for levels in kept.values())
        assert all(0 < share < 1 for levels in kept.values() for share in levels)
    assert "kept a " in lines[0] and "Positions the sparse extractors kept" in markdown
    scores = __import__("pandas").read_parquet(run / "eval-test" / "scores.parquet")
    assert sorted(scores["id"]) == sorted(index.loc[index["split"] == "test", "key"])
    # The same weights at a larger nucleus mass keep more positions, in a folder of their own.
    denser = evaluate(run, split="test", progress=False, top_p=0.9)
    assert denser["run"]["top_p"] == 0.9 and denser["run"]["trained_top_p"] == 0.5
    for modality, levels in denser["run"]["kept_share"].items():
        assert levels[0] > metrics["run"]["kept_share"][modality][0]
    assert (run / "eval-test-p0.9" / "metrics.json").is_file()
    assert json.loads((run / "eval-test" / "metrics.json").read_text())["run"]["top_p"] == 0.5


def test_top_p_warmup_schedule():
    from mer_data.model.train import TrainConfig, training_top_p

    config = TrainConfig(shards=["x"], model="mesm", top_p=0.5, top_p_warmup=4)
    assert [training_top_p(config, epoch) for epoch in range(1, 7)] == [1.0, 0.875, 0.75, 0.625, 0.5, 0.5]
    assert [training_top_p(replace(config, top_p_warmup=0), epoch) for epoch in (1, 2)] == [0.5, 0.5]
    assert training_top_p(replace(config, model="fe2e"), 1) is None


def test_mesm_warmup_trains_sparser_each_epoch_but_validates_at_its_top_p(training_shards, tiny_text_encoder,
                                                                         tmp_path, monkeypatch):
    import mer_data.model.train as training

    seen = []   # (pass, the model's top-p during it)
    for name in ("train_one_epoch", "predict"):
        original = getattr(training, name)

        def spy(model, *args, _original=original, _name=name, **kwargs):
            seen.append((_name, model.top_p))
            return _original(model, *args, **kwargs)
        monkeypatch.setattr(training, name, spy)

    run = tmp_path / "warmup"
    config = _config(training_shards, tiny_text_encoder, model="mesm", top_p=0.5, top_p_warmup=2, epochs=3)
    state = training.train(config, run, progress=False, log=lambda m: None)
    assert seen == [("train_one_epoch", 1.0), ("predict", 0.5), ("train_one_epoch", 0.75), ("predict", 0.5),
                    ("train_one_epoch", 0.5), ("predict", 0.5)]
    assert [row["train_top_p"] for row in state.history] == [1.0, 0.75, 0.5]
    assert state.best_epoch == 3   # the only epoch trained at the run's own top-p
    # Resumed with a larger budget, the run goes on at its own top-p.
    state = training.train(None, run, resume=True, epochs=4, progress=False, log=lambda m: None)
    assert seen[-2:] == [("train_one_epoch", 0.5), ("predict", 0.5)] and state.history[-1]["train_top_p"] == 0.5
    metrics = json.loads((run / "metrics" / "epoch-001.json").read_text())
    assert metrics["train_top_p"] == 1.0

    with pytest.raises(ValueError, match="top-p-warmup"):
        training.train(_config(training_shards, tiny_text_encoder, top_p_warmup=2), tmp_path / "fe2e",
                       progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="no epoch at --top-p"):
        training.train(_config(training_shards, tiny_text_encoder, model="mesm", top_p_warmup=4, epochs=4),
                       tmp_path / "short", progress=False, log=lambda m: None)


def test_only_the_best_and_last_checkpoints_are_kept_unless_all_are_asked_for(tmp_path):
    from mer_data.model.checkpoint import RunState, checkpoint_path, load_checkpoint, prune_checkpoints

    run = tmp_path / "run"
    for epoch in range(1, 6):
        path = checkpoint_path(run, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": epoch}, path)
    removed = prune_checkpoints(run, RunState(epochs_done=5, best_epoch=2))
    assert [p.name for p in removed] == ["epoch-001.pt", "epoch-003.pt", "epoch-004.pt"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-002.pt", "epoch-005.pt"]
    with pytest.raises(FileNotFoundError, match="kept: epoch-002.pt, epoch-005.pt"):
        load_checkpoint(checkpoint_path(run, 3))
    # No best epoch yet (a warm-up): only the last stays.
    prune_checkpoints(run, RunState(epochs_done=5, best_epoch=None))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-005.pt"]


def test_checkpoints_refuse_pickled_objects(tmp_path):
    from mer_data.model.checkpoint import load_checkpoint

    from argparse import Namespace  # any class outside torch's allow-list: loading it would run its code

    path = tmp_path / "evil.pt"
    torch.save({"model": Namespace(payload=1)}, path)
    with pytest.raises(ValueError, match="not a loadable mer checkpoint"):
        load_checkpoint(path)


def test_cli_train_resume_and_evaluate(training_shards, tiny_text_encoder, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    run = tmp_path / "cli-run"
    common = ["--text-encoder", str(tiny_text_encoder), "--workers", "0", "--batch-size", "4", "-q"]
    sizes = ["--model-option", "acoustic_channels=[4, 8, 8, 8]", "--model-option", "temporal_width=16",
             "--model-option", "temporal_heads=2"]
    result = CliRunner().invoke(main, ["train", str(training_shards), "--modalities", "ta", "--epochs", "1",
                                       "--out", str(run), "--evaluate-split", "", *sizes, *common])
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())["model_options"]
    assert stored["acoustic_channels"] == [4, 8, 8, 8] and stored["temporal_width"] == 16
    assert stored["temporal_heads"] == 2 and stored["temporal_layers"] == 4   # the rest: defaults
    unknown = CliRunner().invoke(main, ["train", str(training_shards), "--out", str(tmp_path / "y"),
                                        "--model-option", "temporal_depth=2", *common])
    assert unknown.exit_code == 1 and "unknown model option(s) ['temporal_depth']" in unknown.output
    malformed = CliRunner().invoke(main, ["train", str(training_shards), "--out", str(tmp_path / "z"),
                                          "--model-option", "temporal_width", *common])
    assert malformed.exit_code == 2 and "NAME=VALUE" in malformed.output
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2
    result = CliRunner().invoke(main, ["evaluate", str(run), "--split", "test", "-q"])
    assert result.exit_code == 0, result.output
    assert "F1" in result.output and (run / "eval-test" / "metrics.json").is_file()
    fe2e_at_p = CliRunner().invoke(main, ["evaluate", str(run), "--top-p", "0.5", "-q"])
    assert fe2e_at_p.exit_code == 1 and "--top-p applies to MESM runs" in fe2e_at_p.output
    bad = CliRunner().invoke(main, ["train", str(training_shards), "--modalities", "tx", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "subset of t, a, v" in bad.output


def test_mesm_can_start_from_a_trained_fe2e(training_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.checkpoint import checkpoint_path, load_checkpoint
    from mer_data.model.train import initialise_from, make_model, resolve_labels, train

    fe2e = tmp_path / "fe2e"
    train(_config(training_shards, tiny_text_encoder, epochs=1), fe2e, progress=False, log=lambda m: None)
    mesm = make_model(resolve_labels(_config(training_shards, tiny_text_encoder, model="mesm")))
    message = initialise_from(mesm, fe2e, "cpu")
    trained = load_checkpoint(checkpoint_path(fe2e, 1))["model"]
    state = mesm.state_dict()
    shared = [k for k in trained if k in state]
    assert shared and all(torch.equal(state[k], trained[k]) for k in shared)
    fresh = set(state) - set(trained)
    assert fresh and all(".attention." in k for k in fresh)     # only MESM's cross-modal attention is new
    assert "fresh: " in message and "attention" in message
