"""The two-phase baselines on a tiny feature folder: selection by role, pooling, train-only
normalisation, missing modalities, learning, exact resume, evaluation, the CLI."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

LABELS = ["ang", "exc", "fru", "hap", "neu", "sad"]
ROWS = {"train": 60, "valid": 30, "test": 30}
TINY = dict(rnn_hidden=16, transformer_width=16, transformer_layers=1, transformer_heads=2, fusion_hidden=32,
            dropout=0.1)


def _modalities(with_visual: bool):
    from mer_data.model.features.table import ModalitySpec

    specs = {
        # eGeMAPS-like: 100 steps/s, far from zero mean and unit scale (the z-score has work to do)
        "audio": ModalitySpec(role="a", extractor="test-acoustic", names=[f"a{i}" for i in range(6)],
                              step_seconds=0.01),
        # a second acoustic modality (as a second CSD import): pure noise
        "COVAREP": ModalitySpec(role="a", extractor="csd:COVAREP", names=["c0", "c1", "c2"], step_seconds=0.01),
        "text": ModalitySpec(role="t", extractor="test-text", names=[f"t{i}" for i in range(8)], timed=False),
    }
    if with_visual:
        # one step per face every 0.5 s; about a third of the utterances have no face at all
        specs["visual"] = ModalitySpec(role="v", extractor="test-visual", names=[f"v{i}" for i in range(4)],
                                       step_seconds=0.5)
    # features.json is written with sorted keys and read_split checks the parts against the schema
    # of the card as read back, so the parts' columns must follow the sorted modality names.
    return dict(sorted(specs.items()))


def _row(rng, split: str, index: int, specs, patterns, shifts) -> dict:
    label = index % len(LABELS)
    row = {"id": f"{split}_{index:03d}", "key": f"{split}_{index:03d}", "split": split, "source": "test#0",
           "recording": None, "speaker": None, "start": None, "end": None,
           "target": np.eye(len(LABELS), dtype=np.float32)[label]}
    steps = {"audio": rng.integers(30, 121), "COVAREP": rng.integers(30, 121), "text": rng.integers(3, 13),
             "visual": rng.integers(0, 7) if rng.random() > 0.33 else 0}
    for name, spec in specs.items():
        count = int(steps[name])
        signal = patterns[name][label] if name in patterns else 0.0
        values = signal + rng.normal(0.0, 1.0, (count, spec.dim))
        if name == "audio":
            values = values * 10.0 + 50.0 + shifts.get(split, 0.0)
        row[name] = values.astype(np.float32)
        row[f"{name}_times"] = (np.arange(count) * spec.step_seconds).astype(np.float32) if spec.timed else None
    return row


def make_feats(folder, *, seed: int = 0, with_visual: bool = True, shifts: dict | None = None):
    """A FEATS folder whose audio, text and visual sequences carry the class (COVAREP is noise)."""
    from mer_data.model.features.table import SPLITS, arrow_schema, part_path, rows_to_table, write_card, write_part

    rng = np.random.default_rng(seed)
    specs = _modalities(with_visual)
    patterns = {name: rng.normal(0.0, 1.5, (len(LABELS), specs[name].dim)) for name in ("audio", "text", "visual")
                if name in specs}
    schema = arrow_schema(specs, len(LABELS))
    parts, empty = [], {name: 0 for name in specs}
    for split in SPLITS:
        rows = [_row(rng, split, i, specs, patterns, shifts or {}) for i in range(ROWS[split])]
        for row in rows:
            for name in specs:
                empty[name] += len(row[name]) == 0
        path = write_part(part_path(folder, split, 0), rows_to_table(rows, schema))
        parts.append({"split": split, "name": path.name, "rows": len(rows),
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    write_card(folder, {
        "schema_version": "1.0", "tool": {"name": "mer-data", "version": "test"}, "corpus": "iemocap",
        "label_names": LABELS, "source": {"kind": "shards", "path": "test"},
        "modalities": {name: spec.to_json() for name, spec in specs.items()}, "options": {},
        "counts": {"per_split": dict(ROWS), "total": sum(ROWS.values()), "empty_sequences": empty},
        "parts": parts, "errors": {"count": 0, "by_reason": {}},
    })
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These nets are tiny: with the CPU shared by other processes, OpenMP threads waiting for each
    other made each step up to 100x slower than one thread (measured on the 2-core dev machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    return make_feats(tmp_path_factory.mktemp("feats"))


def _config(feats, **overrides):
    from mer_data.model.train import TrainConfig

    values = dict(shards=[str(feats)], model="lf-rnn", modalities="tav", epochs=3, batch_size=8, lr=3e-3,
                  patience=10, workers=0, model_options=dict(TINY))
    values.update(overrides)
    return TrainConfig(**values)


def _quiet(message):
    pass


def _weights(run, epoch):
    from mer_data.model.checkpoint import checkpoint_path, load_checkpoint

    return load_checkpoint(checkpoint_path(run, epoch))["model"]


# --------------------------------------------------------------------------------------------
# Data


def test_modalities_are_selected_by_role(feats, tmp_path):
    from mer_data.model.features.loader import FeatureSelectionError, check_inputs, select_modalities

    assert select_modalities(feats, "a") == [("COVAREP", 3), ("audio", 6)]     # every modality of the role
    assert select_modalities(feats, "vt") == [("text", 8), ("visual", 4)]      # in t, a, v order
    no_visual = make_feats(tmp_path / "no-visual", with_visual=False)
    with pytest.raises(FeatureSelectionError) as error:
        select_modalities(no_visual, "tav")
    message = str(error.value)
    assert str(no_visual) in message and "role v" in message
    assert "audio (a" in message and "COVAREP (a" in message and "text (t" in message
    with pytest.raises(FeatureSelectionError, match="trained on modality 'visual'"):
        check_inputs(no_visual, [("text", 8), ("visual", 4)])
    with pytest.raises(FeatureSelectionError, match="has 8 dimensions"):
        check_inputs(no_visual, [("text", 5)])


def test_pooling_averages_blocks_then_caps_the_length():
    from mer_data.model.features.loader import Pooling, pool_sequence

    steps = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    pooled = pool_sequence(steps, 4, 500)
    np.testing.assert_allclose(pooled[:, 0], [1.5, 5.5, 8.5])                # blocks of 4, the last of 2
    capped = pool_sequence(steps, 1, 3)                   # 10 steps into 3 segments: 0-2, 3-5, 6-9
    np.testing.assert_allclose(capped[:, 0], [1.0, 4.0, 7.5])
    assert pool_sequence(np.zeros((0, 2), np.float32), 4, 3).shape == (0, 2)
    assert Pooling(0.04).factor(0.01) == 4 and Pooling(0.04).factor(0.5) == 1 and Pooling(0.04).factor(None) == 1
    assert Pooling(None).factor(0.01) == 1


def test_loader_batches_in_file_order_or_seeded_by_epoch(feats):
    from mer_data.model.features.loader import Pooling, make_feature_loader

    def loader(shuffle, epoch=1):
        return make_feature_loader(feats, "train", ["audio", "visual"], Pooling(), label_names=LABELS, batch_size=8,
                                   shuffle=shuffle, seed=5, epoch=epoch)

    in_order = [i for batch in loader(False) for i in batch.ids]
    assert in_order == [f"train_{i:03d}" for i in range(ROWS["train"])]
    training = loader(True)
    first, second = ([i for b in training for i in b.ids] for _ in range(2))
    assert sorted(first) == in_order and first != in_order and second != first      # a new order per epoch
    assert [i for b in loader(True, epoch=2) for i in b.ids] == second               # (seed, epoch) fixes it
    batch = next(iter(loader(False)))
    assert batch.sequences["audio"].dtype == torch.float32 and batch.lengths["audio"].dtype == torch.int64
    assert batch.sequences["audio"].shape[1] == int(batch.lengths["audio"].max())   # padded to the longest
    assert int(batch.lengths["audio"].max()) <= 31                                   # 100 steps/s pooled to 25
    assert batch.targets.shape == (8, len(LABELS)) and len(batch) == 8


def test_normalisation_uses_the_train_split_only(tmp_path):
    from mer_data.model.evaluate import load_run
    from mer_data.model.features.loader import Pooling, feature_statistics, load_split
    from mer_data.model.train import make_model, resolve_labels, train

    shifted = make_feats(tmp_path / "shifted", shifts={"valid": 100.0, "test": 100.0})
    train_steps = np.concatenate(load_split(shifted, "train", ["audio"], Pooling()).sequences["audio"])
    every_step = np.concatenate([train_steps] + [np.concatenate(load_split(shifted, s, ["audio"], Pooling())
                                                                .sequences["audio"]) for s in ("valid", "test")])
    mean, std = feature_statistics(shifted, ["audio"], Pooling())["audio"]
    np.testing.assert_allclose(mean, train_steps.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, train_steps.std(0), rtol=1e-4)
    assert np.all(np.abs(every_step.mean(0) - mean) > 10)      # valid/test would have moved it a lot

    config = resolve_labels(_config(shifted, modalities="a"))
    model = make_model(config)
    np.testing.assert_allclose(model.encoders[model.input_names.index("audio")].mean.numpy(), mean, rtol=1e-6)

    # Evaluating on another FEATS folder keeps the statistics the run was trained with.
    run = tmp_path / "run"
    train(_config(shifted, modalities="a", epochs=1), run, progress=False, log=_quiet)
    other = make_feats(tmp_path / "other", seed=1, shifts={"train": -40.0})
    _, loaded, _ = load_run(run, shards=[str(other)])
    np.testing.assert_allclose(loaded.encoders[loaded.input_names.index("audio")].mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(loaded.encoders[loaded.input_names.index("audio")].std.numpy(), std, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize("kind", ["lf-rnn", "lf-transformer"])
def test_missing_modalities_give_finite_outputs_that_ignore_padding(feats, kind):
    from mer_data.model.baselines import build_baseline
    from mer_data.model.features.loader import Pooling, collate, load_split

    data = load_split(feats, "train", ["text", "visual"], Pooling())
    model = build_baseline(kind, LABELS, "tv", [("text", 8), ("visual", 4)], architecture=TINY).eval()
    empty = [i for i, s in enumerate(data.sequences["visual"]) if len(s) == 0]
    present = [i for i, s in enumerate(data.sequences["visual"]) if len(s) > 0]
    assert empty and present
    batch = collate(data, [empty[0], present[0], empty[1]])
    logits = model(batch).logits
    assert torch.isfinite(logits).all()
    model(collate(data, empty[:3])).logits.sum().backward()           # a batch where nobody has a face
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.encoders[1].missing.grad is not None and model.encoders[1].missing.grad.abs().sum() > 0

    # Padding content never reaches the output: garbage past every length changes nothing.
    noisy = collate(data, [empty[0], present[0], empty[1]])
    for name, steps in noisy.sequences.items():
        past = torch.arange(steps.shape[1])[None, :] >= noisy.lengths[name][:, None]
        steps[past] = 1e3
    torch.testing.assert_close(model(noisy).logits, logits)


@pytest.mark.parametrize("kind", ["lf-rnn", "lf-transformer"])
def test_baseline_learns_and_resumes_exactly(feats, tmp_path, kind):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train

    straight = train(_config(feats, model=kind, epochs=4), tmp_path / "straight", progress=False, log=_quiet)
    losses = [row["train_loss"] for row in straight.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(row["train_seconds"] > 0 for row in straight.history)
    metrics = evaluate(tmp_path / "straight", split="valid", progress=False)
    assert metrics["mean"]["auc"] > 0.8, metrics["mean"]                  # chance: 0.5
    assert metrics["multiclass"]["acc_6way"] > 0.5, metrics["multiclass"]  # chance: 1/6

    # Killed after epoch 2, then resumed with a raised budget: the same weights as uninterrupted.
    interrupted = tmp_path / "interrupted"
    train(_config(feats, model=kind, epochs=2), interrupted, progress=False, log=_quiet)
    resumed = train(None, interrupted, resume=True, epochs=4, progress=False, log=_quiet)
    assert [row["train_loss"] for row in resumed.history] == pytest.approx(losses, rel=1e-5)
    final_straight, final_resumed = _weights(tmp_path / "straight", 4), _weights(interrupted, 4)
    assert final_straight.keys() == final_resumed.keys()
    for name, tensor in final_straight.items():
        torch.testing.assert_close(final_resumed[name], tensor, msg=name)


def test_evaluate_writes_the_named_metrics(feats, tmp_path):
    import pandas as pd

    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train

    run = tmp_path / "run"
    train(_config(feats, model="lf-transformer", modalities="a", epochs=1), run, progress=False, log=_quiet)
    config = json.loads((run / "config.json").read_text())
    assert config["model_options"]["inputs"] == [["COVAREP", 3], ["audio", 6]]
    assert config["corpus"] == "iemocap" and config["label_names"] == LABELS
    metrics = evaluate(run, split="test", progress=False)
    assert metrics["run"]["model"] == "lf-transformer" and metrics["run"]["features"] == "COVAREP, audio"
    assert metrics["run"]["samples"] == ROWS["test"] and set(metrics["mean"]) >= {"acc", "f1", "auc"}
    stored = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert stored["mean"] == metrics["mean"]
    markdown = (run / "eval-test" / "metrics.md").read_text()
    assert "plain binary accuracy" in markdown and "F1" in markdown and "LF-TRANSFORMER" in markdown
    # The paper's LF-Transformer row (on its precomputed SDK features) sits under ours.
    assert "| paper LF-Transformer (precomputed SDK features), Dai et al. 2021 | 81.9 |" in markdown
    scores = pd.read_parquet(run / "eval-test" / "scores.parquet")
    assert list(scores["id"]) == [f"test_{i:03d}" for i in range(ROWS["test"])]


def test_init_from_is_refused_for_baselines(feats, tmp_path):
    from mer_data.model.train import train

    with pytest.raises(ValueError, match="--init-from"):
        train(_config(feats, init_from=str(tmp_path)), tmp_path / "run", progress=False, log=_quiet)


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_trains_and_evaluates_a_baseline(feats, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    run = tmp_path / "cli-run"
    result = CliRunner().invoke(main, ["train", str(feats), "--model", "lf-rnn", "--modalities", "ta", "--epochs", "2",
                                       "--batch-size", "16", "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert "F1" in result.output and "AUC" in result.output          # the evaluation table of the best epoch
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2
    result = CliRunner().invoke(main, ["evaluate", str(run), str(feats), "--split", "valid", "-q"])
    assert result.exit_code == 0, result.output
    assert (run / "eval-valid" / "metrics.md").is_file()

    no_visual = make_feats(tmp_path / "no-visual", with_visual=False)
    bad = CliRunner().invoke(main, ["train", str(no_visual), "--model", "lf-transformer", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "no modality of role v" in bad.output and str(no_visual) in bad.output
