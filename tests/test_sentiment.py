"""CMU-MOSEI sentiment (`mer train --task sentiment`): the metrics against hand-computed values, training on
a tiny synthetic MOSEI release, evaluate and compare, a baseline on a feature table, IEMOCAP refused."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

# Zeros and ties on purpose: target 0 (left out of non0, non-negative in has0), predictions of exactly
# 0 (non-negative in has0, negative in non0), values past +-3 (clipped by Acc-7), 0.5 (rounds to 0).
PREDICTIONS = [-1.2, 0.0, 0.0, 3.6, -4.0, 0.5, 2.6]
TARGETS = [-1.0, 0.0, 1.0, 3.0, -2.6, -0.4, 2.0]


def test_sentiment_metrics_equal_hand_computed_values():
    from mer_data.model.metrics import sentiment_metrics

    metrics = sentiment_metrics(PREDICTIONS, TARGETS, split="test")
    mean = metrics["mean"]
    assert mean["mae"] == pytest.approx((0.2 + 0 + 1.0 + 0.6 + 1.4 + 0.9 + 0.6) / 7)
    # has0: non-negative targets 0, 0, 1, 3, 2 (P=4 with the 0) against predictions >= 0: only -0.4 -> 0.5 is wrong.
    assert mean["acc2_has0"] == pytest.approx(6 / 7)
    # weighted F1: non-negative class F1 = 2*4/(2*4+1+0), negative class F1 = 2*2/(2*2+0+1), weighted 4:3
    assert mean["f1_has0"] == pytest.approx((4 * 8 / 9 + 3 * 4 / 5) / 7)
    # non0: the target 0 left out; 1.0 -> 0.0 (a zero prediction is negative) and -0.4 -> 0.5 are wrong.
    assert mean["acc2_non0"] == pytest.approx(4 / 6)
    assert mean["f1_non0"] == pytest.approx((3 * 4 / 6 + 3 * 4 / 6) / 6)
    # Acc-7: classes -1 0 0 3 -3 0 3 against -1 0 1 3 -3 0 2 (3.6 and -2.6, -4.0 clipped; 0.5 -> 0, -0.4 -> 0)
    assert mean["acc7"] == pytest.approx(5 / 7)
    # Acc-5: clipped to [-2, 2], so 2.6 and 2.0 agree
    assert mean["acc5"] == pytest.approx(6 / 7)
    x, y = np.array(PREDICTIONS), np.array(TARGETS)
    r = np.sum((x - x.mean()) * (y - y.mean())) / np.sqrt(np.sum((x - x.mean()) ** 2) * np.sum((y - y.mean()) ** 2))
    assert mean["pearson_r"] == pytest.approx(r)
    assert metrics["per_class"]["sentiment"] == {"utterances": 7, "nonzero": 6, **mean}
    assert metrics["task"] == "sentiment" and metrics["lower_is_better"] == ["mae"]
    assert set(metrics["definitions"]) == {"mae", "pearson_r", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
                                           "acc7", "acc5"}
    assert "average='weighted'" in metrics["definitions"]["f1_has0"]


def test_undefined_sentiment_figures_are_null_with_a_note():
    from mer_data.model.metrics import sentiment_metrics

    metrics = sentiment_metrics([0.5, 0.5, 0.5], [0.0, 0.0, 0.0], split="valid")
    assert metrics["mean"]["acc2_non0"] is None and metrics["mean"]["f1_non0"] is None
    assert metrics["mean"]["pearson_r"] is None and metrics["mean"]["acc2_has0"] == 1.0
    assert len(metrics["notes"]) == 2
    with pytest.raises(ValueError, match="non-finite prediction at row 1"):
        sentiment_metrics([0.0, float("nan")], [0.0, 1.0])


def test_selection_prefers_the_lower_validation_mae():
    from mer_data.model.checkpoint import RunState
    from mer_data.model.train import EpochResult, update_state

    state = RunState()
    for epoch, mae in enumerate([0.9, 0.7, 0.8], start=1):
        result = EpochResult(epoch=epoch, train_loss=1.0, valid_loss=mae, valid_mean_f1=None, seconds=0.0,
                             train_samples=1, metrics={}, valid_mae=mae)
        update_state(state, result, patience=5)
    assert state.best_epoch == 2 and state.epochs_without_improvement == 1


# --------------------------------------------------------------------------------------------
# End to end on a tiny synthetic MOSEI release


@pytest.fixture(scope="module")
def mosei_shards(tmp_path_factory):
    """A 4-video synthetic MOSEI release (no long video) converted with a random video-level split."""
    from mer_data.synth.mosei import synth_mosei
    from mer_data.pipelines.convert import plan_mosei, run_conversion
    from mer_data.pipelines.options import ConvertOptions

    raw = synth_mosei(tmp_path_factory.mktemp("synth-mosei"), videos=4, seed=1, long_video_minutes=0, voice="synth")
    out = tmp_path_factory.mktemp("shards-mosei")
    options = ConvertOptions(corpus="mosei", split="random:1:0.6,0.2,0.2")
    run_conversion(plan_mosei(raw, options), out, options, workers=1, progress=False)
    return out


def test_every_mosei_sample_and_index_row_holds_a_varying_sentiment(mosei_shards):
    from tests.test_convert_iemocap import read_samples

    samples = read_samples(mosei_shards)
    index = pd.read_parquet(mosei_shards / "index.parquet").set_index("key")
    assert set(samples) == set(index.index) != set()
    for key, sample in samples.items():
        sentiment = json.loads(sample["json"])["label"]["sentiment"]
        assert -3 <= sentiment <= 3 and index.loc[key, "sentiment"] == pytest.approx(sentiment)
    assert index["sentiment"].nunique() >= 5   # varies: something to learn


def test_sentiment_training_lowers_the_loss_and_evaluate_and_compare_name_the_metrics(
        mosei_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.compare import compare_runs
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train
    from tests.test_train import _config

    run = tmp_path / "sentiment"
    state = train(_config(mosei_shards, tiny_text_encoder, modalities="ta", task="sentiment", epochs=4),
                  run, progress=False, log=lambda m: None)
    losses = [row["train_loss"] for row in state.history]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["sentiment_loss"], config["label_names"]) == ("sentiment", "l1", ["sentiment"])
    epoch = json.loads((run / "metrics" / "epoch-001.json").read_text())
    assert epoch["valid_mae"] == epoch["valid"]["mean"]["mae"] and epoch["valid_mean_f1"] is None
    best = min(state.history, key=lambda row: row["valid_mae"])   # model selection: the lowest MAE
    assert state.best_epoch == best["epoch"]

    metrics = evaluate(run, split="valid", progress=False, log=lambda m: None)
    written = json.loads((run / "eval-valid" / "metrics.json").read_text())
    assert written == metrics and written["loss"] == "l1"
    assert set(written["mean"]) == {"mae", "pearson_r", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5"}
    markdown = (run / "eval-valid" / "metrics.md").read_text()
    for name in ("MAE", "Pearson r", "Acc-2 (has0", "Acc-2 (non0", "F1 (has0", "F1 (non0", "Acc-7"):
        assert name in markdown, name
    scores = pd.read_parquet(run / "eval-valid" / "scores.parquet")
    assert scores["target_sentiment"].dtype.kind == "f" and scores["target_sentiment"].nunique() > 2

    comparison = compare_runs([run], split="valid")
    assert comparison.metrics[0] == "mae" and "Acc-2 (non0" in comparison.markdown
    assert f"{metrics['mean']['mae']:.3f}" in comparison.markdown   # a number, not a percent
    assert 'id="fig-acc7"' in comparison.html and 'id="fig-mae"' not in comparison.html   # bars: fractions only


def test_sentiment_on_iemocap_shards_is_refused_with_one_error_line(tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    shards = tmp_path / "iemocap-shards"
    shards.mkdir()
    (shards / "dataset.json").write_text(json.dumps({"corpus": "iemocap", "options": {}}))
    result = CliRunner().invoke(main, ["train", str(shards), "--task", "sentiment", "--out", str(tmp_path / "run"),
                                       "-q"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--task sentiment needs CMU-MOSEI" in lines[0]
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# A baseline on a sentiment feature table


def make_sentiment_feats(folder):
    """test_baselines' feature table with sentiment targets (the class index, carried by the features)."""
    import hashlib

    from mer_data.model.features.table import SPLITS, arrow_schema, part_path, rows_to_table, write_card, write_part
    from tests.test_baselines import LABELS, ROWS, _modalities, _row

    rng = np.random.default_rng(0)
    specs = _modalities(False)
    patterns = {name: rng.normal(0.0, 1.5, (len(LABELS), specs[name].dim)) for name in ("audio", "text")}
    schema = arrow_schema(specs, 1)
    parts = []
    for split in SPLITS:
        rows = [_row(rng, split, i, specs, patterns, {}) for i in range(ROWS[split])]
        for row in rows:   # the class index of _row, as a sentiment in [-2.5, 2.5]
            row["target"] = np.array([int(np.argmax(row["target"])) - 2.5], dtype=np.float32)
        path = write_part(part_path(folder, split, 0), rows_to_table(rows, schema))
        parts.append({"split": split, "name": path.name, "rows": len(rows),
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    write_card(folder, {
        "schema_version": "1.0", "tool": {"name": "mer-data", "version": "test"}, "corpus": "mosei",
        "label_names": ["sentiment"], "source": {"kind": "shards", "path": "test"},
        "modalities": {name: spec.to_json() for name, spec in specs.items()}, "options": {},
        "counts": {"per_split": dict(ROWS), "total": sum(ROWS.values()), "empty_sequences": {n: 0 for n in specs}},
        "parts": parts, "errors": {"count": 0, "by_reason": {}},
    })
    return folder


@pytest.mark.parametrize("kind", ["lf-rnn", "lf-transformer"])
def test_baseline_trains_sentiment_on_a_feature_table(tmp_path, kind):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import train
    from tests.test_baselines import _config

    feats = make_sentiment_feats(tmp_path / "feats")
    run = tmp_path / kind
    state = train(_config(feats, model=kind, modalities="ta", task="sentiment", sentiment_loss="mse", epochs=4), run,
                  progress=False, log=lambda m: None)
    losses = [row["train_loss"] for row in state.history]
    assert losses[-1] < losses[0], losses
    metrics = evaluate(run, split="test", progress=False, log=lambda m: None)
    assert metrics["task"] == "sentiment" and metrics["loss"] == "mse" and metrics["mean"]["mae"] >= 0
    with pytest.raises(ValueError, match="holds sentiment targets, not those of --task emotion"):
        train(_config(feats, model=kind, modalities="ta"), tmp_path / "emotion", progress=False, log=lambda m: None)


def test_features_task_sentiment_stores_the_sentiment_as_target(mosei_shards, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main
    from mer_data.model.features.table import read_split

    feats = tmp_path / "feats"
    result = CliRunner().invoke(main, ["features", "extract", str(mosei_shards), str(feats), "--task", "sentiment",
                                       "--audio", "mfcc", "--visual", "none", "--text", "none", "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((feats / "features.json").read_text())["label_names"] == ["sentiment"]
    index = pd.read_parquet(mosei_shards / "index.parquet").set_index("key")["sentiment"]
    rows = read_split(feats, "train", columns=["key", "target"]).to_pylist()
    assert rows and all(row["target"] == [pytest.approx(index[row["key"]])] for row in rows)
