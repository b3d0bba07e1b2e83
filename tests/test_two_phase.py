"""The two-phase side on real shards, end to end: shards -> `mer features` -> LF-RNN and
LF-Transformer (train, resume, evaluate) -> `mer compare` beside an end-to-end FE2E run.

tests/test_features.py, test_baselines.py and test_compare.py test each step on its own; this is
the path `mer demo` takes, on the small corpus split into train/valid/test.
"""
from __future__ import annotations

import json

import pytest
import torch

from tests.test_train import TINY_NETS

_quiet = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def feats(training_shards, tiny_text_encoder, tmp_path_factory):
    from mer_data.pipelines.features import extract_features
    from mer_data.pipelines.options import FeatureOptions

    out = tmp_path_factory.mktemp("feats")
    report = extract_features(training_shards, out, FeatureOptions(text_encoder=str(tiny_text_encoder)),
                              workers=1, progress=False)
    assert report.errors == []
    return out


def _baseline_config(feats, model, **overrides):
    from mer_data.model.train import TrainConfig

    values = dict(shards=[str(feats)], model=model, modalities="tav", epochs=3, batch_size=4, lr=3e-3, patience=10)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("model", ["lf-rnn", "lf-transformer"])
def test_baselines_train_resume_and_evaluate_on_extracted_features(feats, training_shards, model, tmp_path):
    from mer_data.model.checkpoint import checkpoint_path, load_checkpoint
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train

    straight = train(_baseline_config(feats, model), tmp_path / "straight", progress=False, log=_quiet)
    losses = [row["train_loss"] for row in straight.history]
    assert losses[-1] < losses[0], losses

    interrupted = tmp_path / "interrupted"
    train(_baseline_config(feats, model, epochs=2), interrupted, progress=False, log=_quiet)
    train(None, interrupted, resume=True, epochs=3, progress=False, log=_quiet)
    resumed = load_checkpoint(checkpoint_path(interrupted, 3))["model"]
    uninterrupted = load_checkpoint(checkpoint_path(tmp_path / "straight", 3))["model"]
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)

    metrics = evaluate(tmp_path / "straight", split="test", progress=False)
    index_test = json.loads((training_shards / "dataset.json").read_text())["counts"]["per_split"]["test"]
    assert metrics["run"]["samples"] == index_test
    assert set(metrics["mean"]) >= {"acc", "f1", "auc"}


def test_compare_puts_end_to_end_and_two_phase_runs_in_one_table(feats, training_shards, tiny_text_encoder,
                                                                 tmp_path):
    from mer_data.model.compare import compare_runs
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import TrainConfig, train

    fe2e = tmp_path / "fe2e"
    train(TrainConfig(shards=[str(training_shards)], model="fe2e", epochs=1, batch_size=4, workers=0,
                      text_encoder=str(tiny_text_encoder), model_options=TINY_NETS), fe2e, progress=False, log=_quiet)
    lf_rnn = tmp_path / "lf-rnn"
    train(_baseline_config(feats, "lf-rnn", epochs=1), lf_rnn, progress=False, log=_quiet)
    for run in (fe2e, lf_rnn):
        evaluate(run, split="test", progress=False)

    comparison = compare_runs([fe2e, lf_rnn], split="test", out=tmp_path / "compare")
    assert [row.label for row in comparison.rows] == ["FE2E (tav)", "LF-RNN (tav)"]
    for row, run in zip(comparison.rows, (fe2e, lf_rnn)):
        stored = json.loads((run / "eval-test" / "metrics.json").read_text())
        assert row.metrics["mean"]["f1"] == stored["mean"]["f1"]
    summary = comparison.markdown.split("## ")[1]
    assert "| FE2E (tav) |" in summary and "| LF-RNN (tav) |" in summary
    # The two-phase row names its first phase's measured cost (FEATS/extraction.json).
    assert "s/utterance on one thread" in comparison.markdown
    assert (tmp_path / "compare" / "compare.html").read_text().count("<svg") >= 2
