"""`--preset dai2021` and the options it brings for every model: what the preset resolves to, that explicit
options win, pos_weight from the training split, the optimizer's groups, old run configs, RNG on resume."""
from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_train import TINY_NETS, _config

PUBLISHED = dict(arch="dai2021", text_encoder="albert-base-v2", pos_weight="auto", optimizer="adam", weight_decay=0.0,
                 lr=5e-5, text_lr_factor=0.1, slow_text_head=True, epochs=40, patience=6, audio_frontend="dai2021",
                 face_normalisation="dai2021", frame_interval_ms=500, crop_size=48, amp=False, top_p_warmup=0)


def _resolved(model="fe2e", corpus="iemocap", label_task="one-vs-rest", overrides=(), **given):
    from mer_data.model.presets import resolve_preset, resolve_preset_for_data
    from mer_data.model.train import TrainConfig

    config = TrainConfig(shards=["shards"], model=model, preset="dai2021", preset_overrides=list(overrides), **given)
    config = resolve_preset(config)
    config.corpus, config.label_task = corpus, label_task
    return resolve_preset_for_data(config)


def test_the_preset_resolves_every_published_value():
    fe2e, mesm = _resolved("fe2e"), _resolved("mesm")
    for config in (fe2e, mesm):
        assert {name: getattr(config, name) for name in PUBLISHED} == PUBLISHED
    assert (fe2e.batch_size, mesm.batch_size) == (8, 2)
    assert mesm.top_p == 0.7 and _resolved("mesm", corpus="mosei").top_p == 0.5
    assert fe2e.top_p == 0.5   # FE2E has no nucleus: left as it was
    # No BCE, nothing to weigh: the single-label protocol and the sentiment task get pos_weight none.
    assert _resolved(label_task="single-label").pos_weight == "none"
    assert _resolved(corpus="mosei", task="sentiment").pos_weight == "none"


def test_explicit_options_win_over_the_preset():
    config = _resolved("mesm", overrides=["lr", "batch_size", "top_p", "arch", "pos_weight"],
                       lr=1e-4, batch_size=5, top_p=0.9, arch="compact", pos_weight="none")
    assert (config.lr, config.batch_size, config.top_p, config.arch, config.pos_weight) == (
        1e-4, 5, 0.9, "compact", "none")
    assert config.optimizer == "adam" and config.epochs == 40       # the rest is still the preset's


def test_the_preset_refuses_what_it_cannot_set():
    from mer_data.model.presets import resolve_preset
    from mer_data.model.train import TrainConfig

    with pytest.raises(ValueError, match="published FE2E/MESM setup; lf-rnn is a two-phase baseline"):
        resolve_preset(TrainConfig(shards=["f"], model="lf-rnn", preset="dai2021"))
    with pytest.raises(ValueError, match="unknown preset 'dai2020'"):
        resolve_preset(TrainConfig(shards=["f"], preset="dai2020"))
    with pytest.raises(ValueError, match="preset_overrides names no TrainConfig field: learning_rate"):
        resolve_preset(TrainConfig(shards=["f"], preset="dai2021", preset_overrides=["learning_rate"]))


def test_the_published_networks_refuse_the_compact_inputs():
    from mer_data.model.presets import check_inputs_fit_architecture
    from mer_data.model.train import TrainConfig

    with pytest.raises(ValueError, match="--arch dai2021 takes the official 128-band mel chunks"):
        check_inputs_fit_architecture(TrainConfig(shards=["s"], arch="dai2021"))
    with pytest.raises(ValueError, match="takes 48 x 48 faces, not --crop-size 64"):
        check_inputs_fit_architecture(TrainConfig(shards=["s"], arch="dai2021", audio_frontend="dai2021", crop_size=64))
    # without audio the front end does not matter; the compact nets take either front end (global pooling)
    check_inputs_fit_architecture(TrainConfig(shards=["s"], arch="dai2021", modalities="tv"))
    check_inputs_fit_architecture(TrainConfig(shards=["s"], audio_frontend="dai2021"))
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        check_inputs_fit_architecture(TrainConfig(shards=["s"], arch="vgg"))


def test_pos_weight_is_negatives_over_positives_per_class():
    from mer_data.model.pos_weight import pos_weight_from_targets

    targets = np.zeros((12, 3), dtype=np.float32)
    targets[:3, 0] = 1        # 3 positives, 9 negatives
    targets[3:9, 1] = 1       # 6 / 6
    targets[9:, 2] = 1        # 3 / 9
    targets[0, 2] = 1         # multi-hot: 4 / 8
    assert pos_weight_from_targets(targets, ["a", "b", "c"], "here") == pytest.approx([3.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="here: class 'c' has no positive sample"):
        pos_weight_from_targets(targets[1:9], ["a", "b", "c"], "here")
    with pytest.raises(ValueError, match="class 'a' has no negative sample"):
        pos_weight_from_targets(np.ones((4, 1)), ["a"], "here")


def test_pos_weight_weighs_the_positive_terms_of_the_loss():
    from mer_data.model.train import TrainConfig, label_loss

    logits, targets = torch.tensor([[0.3, -1.2], [2.0, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    config = TrainConfig(shards=["s"], pos_weight="auto", pos_weight_values=[4.0, 0.5])
    expected = -(torch.tensor([4.0, 0.5]) * targets * torch.nn.functional.logsigmoid(logits)
                 + (1 - targets) * torch.nn.functional.logsigmoid(-logits)).mean()
    torch.testing.assert_close(label_loss(config, logits, targets), expected)
    plain = TrainConfig(shards=["s"])
    torch.testing.assert_close(label_loss(plain, logits, targets),
                               torch.nn.functional.binary_cross_entropy_with_logits(logits, targets))


def _train_class_counts(shards) -> dict[str, int]:
    """An independent count: the index's class column over the train split."""
    index = pd.read_parquet(shards / "index.parquet")
    return index[index["split"] == "train"]["class"].value_counts().to_dict()


@pytest.fixture(scope="module")
def every_class_in_train(small_corpus, tmp_path_factory):
    """The small corpus split so that each of the six classes has a training sample (pos_weight is finite)."""
    from tests.conftest import convert

    root, _ = small_corpus
    out = tmp_path_factory.mktemp("shards-every-class")
    convert(root, out, split="random:2:0.6,0.2,0.2")
    counts = _train_class_counts(out)
    assert len(counts) == 6 and json.loads((out / "dataset.json").read_text())["counts"]["per_split"]["test"] > 0
    return out


def test_pos_weight_auto_reads_the_training_split(every_class_in_train, training_shards, tiny_text_encoder):
    from mer_data.model.pos_weight import resolve_pos_weight
    from mer_data.model.train import resolve_labels

    config = resolve_labels(_config(every_class_in_train, tiny_text_encoder, pos_weight="auto"))
    counts = _train_class_counts(every_class_in_train)
    total = sum(counts.values())
    resolve_pos_weight(config)
    assert config.pos_weight_values == pytest.approx([(total - counts[n]) / counts[n] for n in config.label_names])
    # The other fixture's training split has no sad utterance: an infinite weight is refused, by name.
    assert "sad" not in _train_class_counts(training_shards)
    with pytest.raises(ValueError, match="class 'sad' has no positive sample in the training split"):
        resolve_pos_weight(resolve_labels(_config(training_shards, tiny_text_encoder, pos_weight="auto")))
    # BCE only: a sentiment run cannot weigh positives.
    sentiment = _config(training_shards, tiny_text_encoder, pos_weight="auto", task="sentiment")
    with pytest.raises(ValueError, match="--pos-weight auto weighs the positives of one-vs-rest binary tasks"):
        resolve_pos_weight(sentiment)


def test_pos_weight_auto_reads_a_baselines_training_table(tmp_path):
    from mer_data.model.pos_weight import resolve_pos_weight
    from mer_data.model.train import TrainConfig, resolve_labels
    from tests.test_baselines import make_feats

    feats = make_feats(tmp_path / "feats")
    config = resolve_labels(TrainConfig(shards=[str(feats)], model="lf-rnn", pos_weight="auto"))
    table = pd.read_parquet(next((feats / "train").glob("*.parquet")), columns=["target"])
    targets = np.stack(table["target"].to_list())
    positives = targets.sum(axis=0)
    resolve_pos_weight(config)
    assert config.pos_weight_values == pytest.approx(list((len(targets) - positives) / positives))


def _module_of(name: str) -> str:
    """text_encoder, extractors, ... ; heads.t, heads.a, heads.v for the heads."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "heads" else parts[0]


def test_the_optimizer_has_the_weight_decay_and_the_slow_text_groups(tiny_text_encoder):
    from mer_data.model.architectures import build_model
    from mer_data.model.train import TrainConfig, make_optimizer

    model = build_model("fe2e", ("a", "b"), "tav", str(tiny_text_encoder), **TINY_NETS)
    names = {id(p): n for n, p in model.named_parameters()}

    def groups(**values):
        optimizer = make_optimizer(model, TrainConfig(shards=["s"], lr=1e-3, text_lr_factor=0.1, **values))
        return optimizer, [(g["lr"], g["weight_decay"], {_module_of(names[id(p)]) for p in g["params"]})
                           for g in optimizer.param_groups]

    optimizer, today = groups()            # today's behaviour: AdamW 0.01, only the encoder slowed down
    assert type(optimizer) is torch.optim.AdamW and len(today) == 2
    assert today[0][:2] == (1e-3, 0.01) and "heads.t" in today[0][2] and "text_encoder" not in today[0][2]
    assert today[1][:2] == pytest.approx((1e-4, 0.01)) and today[1][2] == {"text_encoder"}
    optimizer, published = groups(optimizer="adam", weight_decay=0.0, slow_text_head=True)
    assert type(optimizer) is torch.optim.Adam
    assert published[0][:2] == (1e-3, 0.0) and published[1][:2] == pytest.approx((1e-4, 0.0))
    assert published[1][2] == {"text_encoder", "heads.t"}
    assert published[0][2] == {"heads.a", "heads.v", "extractors", "temporal", "fusion_weights"}


def test_a_run_config_stored_before_the_preset_loads_with_todays_behaviour(tmp_path):
    from mer_data.model.train import TrainConfig, read_run_config

    old = {"shards": [str(tmp_path)], "model": "fe2e", "modalities": "tav", "top_p": 0.5, "epochs": 3, "lr": 3e-4,
           "weight_decay": 0.01, "batch_size": 8, "label_names": ["ang", "hap"], "corpus": "iemocap",
           "data_fingerprint": {}, "model_options": {}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = read_run_config(tmp_path, log=lambda m: None)
    defaults = TrainConfig(shards=["x"])
    assert (config.preset, config.arch, config.optimizer, config.pos_weight, config.pos_weight_values,
            config.slow_text_head, config.audio_frontend, config.face_normalisation) == (
        None, "compact", "adamw", "none", None, False, "logmel64", "imagenet")
    assert (defaults.arch, defaults.optimizer, defaults.weight_decay, defaults.audio_frontend) == (
        "compact", "adamw", 0.01, "logmel64")


def _scramble_generators():
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)


def test_resume_restores_every_random_generator(training_shards, tiny_text_encoder, tmp_path):
    from mer_data.model import checkpoint as ckpt
    from mer_data.model.train import build_or_restore, read_run_config, train

    run = tmp_path / "run"
    train(_config(training_shards, tiny_text_encoder, epochs=1), run, progress=False, log=lambda m: None)
    saved = ckpt.load_checkpoint(ckpt.checkpoint_path(run, 1))
    assert {"rng_cpu", "rng_cuda", "rng_numpy", "rng_python"} <= set(saved)
    _scramble_generators()
    build_or_restore(read_run_config(run, log=lambda m: None), run, ckpt.load_state(run), resume=True,
                     log=lambda m: None)
    assert torch.equal(torch.get_rng_state(), saved["rng_cpu"])
    kind, keys, position, has_gauss, gaussian = np.random.get_state()
    assert kind == saved["rng_numpy"]["kind"] and position == saved["rng_numpy"]["position"]
    np.testing.assert_array_equal(keys, saved["rng_numpy"]["keys"].numpy())
    assert random.getstate()[1] == tuple(saved["rng_python"]["state"])


def test_checkpoints_of_older_runs_restore_what_they_hold():
    from mer_data.model.checkpoint import restore_rng_states, rng_states

    state = rng_states()
    expected = torch.rand(3)
    _scramble_generators()
    python_before = random.getstate()
    notes = restore_rng_states({"rng_cpu": state["rng_cpu"], "rng_cuda": []})   # an older checkpoint
    assert torch.equal(torch.rand(3), expected)
    assert random.getstate() == python_before and notes == ([] if not torch.cuda.is_available() else notes)


SIZES = [arg for name, value in TINY_NETS.items() for arg in ("--model-option", f"{name}={json.dumps(value)}")]


def _cli(*args):
    from click.testing import CliRunner

    from mer_data.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_preset_trains_records_every_resolved_value_and_resumes(every_class_in_train, tiny_text_encoder, tmp_path):
    run = tmp_path / "mesm-preset"
    # --arch compact: the published networks are another change's; the rest of the preset applies.
    result = _cli("train", every_class_in_train, "--model", "mesm", "--preset", "dai2021", "--arch", "compact",
                  "--text-encoder", tiny_text_encoder, "--epochs", "1", "--workers", "0", "--lr", "1e-3",
                  "--out", run, "--evaluate-split", "test", "-q", *SIZES)
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    expected = {**PUBLISHED, "arch": "compact", "text_encoder": str(tiny_text_encoder), "epochs": 1, "lr": 1e-3,
                "preset": "dai2021", "batch_size": 2, "top_p": 0.7}
    assert {name: stored[name] for name in expected} == expected
    assert stored["preset_overrides"] == ["arch", "epochs", "lr", "text_encoder"]
    counts = _train_class_counts(every_class_in_train)
    total = sum(counts.values())
    expected_weights = [(total - counts[n]) / counts[n] for n in stored["label_names"]]
    assert stored["pos_weight_values"] == pytest.approx(expected_weights)
    assert "preset dai2021: arch compact" in result.output
    assert "given explicitly: arch, epochs, lr, text_encoder" in result.output
    assert (run / "eval-test" / "metrics.json").is_file()
    # --resume takes everything from config.json (the official inputs included) and goes on.
    resumed = _cli("train", "--resume", run, "--epochs", "2", "-q", "--evaluate-split", "")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2


# The temporal encoders of the published nets, shrunk (their CNNs and heads have no size options).
PUBLISHED_TINY_TEMPORAL = ["--model-option", "temporal_width=16", "--model-option", "temporal_heads=2",
                           "--model-option", "temporal_layers=1", "--model-option", "temporal_feedforward=32"]


def test_cli_preset_trains_the_published_networks_on_cpu(every_class_in_train, tiny_text_encoder, tmp_path):
    """`mer train --preset dai2021` as the docs give it (the published networks on the official inputs),
    one epoch on the small synthetic conversion, then the evaluation on test: the whole path, on the CPU."""
    from mer_data.model.dai2021 import Dai2021FE2E
    from mer_data.model.evaluate import load_run

    run = tmp_path / "fe2e-published"
    result = _cli("train", every_class_in_train, "--preset", "dai2021", "--text-encoder", tiny_text_encoder,
                  "--epochs", "1", "--workers", "0", "--out", run, "-q", *PUBLISHED_TINY_TEMPORAL)
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    expected = {**PUBLISHED, "text_encoder": str(tiny_text_encoder), "epochs": 1, "preset": "dai2021",
                "batch_size": 8, "model": "fe2e"}
    assert {name: stored[name] for name in expected} == expected
    assert stored["preset_overrides"] == ["epochs", "text_encoder"]
    assert "preset dai2021: arch dai2021" in result.output
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert metrics["split"] == "test" and set(metrics["per_class"]) == set(stored["label_names"])
    _, model, epoch = load_run(run)
    assert isinstance(model, Dai2021FE2E) and epoch == 1


def test_cli_options_for_every_model_and_old_configs(every_class_in_train, tiny_text_encoder, tmp_path):
    run = tmp_path / "fe2e"
    common = ["--text-encoder", tiny_text_encoder, "--workers", "0", "--batch-size", "4", "-q", *SIZES]
    result = _cli("train", every_class_in_train, "--epochs", "1", "--pos-weight", "auto", "--weight-decay", "0.05",
                  "--optimizer", "adam", "--out", run, *common)
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    assert (stored["preset"], stored["pos_weight"], stored["weight_decay"], stored["optimizer"]) == (
        None, "auto", 0.05, "adam")
    assert len(stored["pos_weight_values"]) == 6 and stored["audio_frontend"] == "logmel64"
    first = json.loads((run / "eval-test" / "metrics.json").read_text())
    # The same run as a version before these options would have stored it: it still evaluates, the same.
    for name in ("preset", "preset_overrides", "arch", "optimizer", "slow_text_head", "pos_weight",
                 "pos_weight_values", "audio_frontend", "face_normalisation"):
        stored.pop(name)
    (run / "config.json").write_text(json.dumps(stored))
    again = _cli("evaluate", run, "--split", "test", "-q")
    assert again.exit_code == 0, again.output
    second = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert second["per_class"] == first["per_class"] and second["mean"] == first["mean"]
    # The published networks on the compact inputs: refused before anything is read or written.
    refused = _cli("train", every_class_in_train, "--arch", "dai2021", "--out", tmp_path / "refused", *common)
    assert refused.exit_code == 1 and "--arch dai2021 takes the official 128-band mel chunks" in refused.output
    assert not (tmp_path / "refused").exists()
    bad = _cli("train", every_class_in_train, "--pos-weight", "sometimes", "--out", tmp_path / "bad", *common)
    assert bad.exit_code == 2 and "sometimes" in bad.output
