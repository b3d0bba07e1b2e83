"""IEMOCAP label protocols: --classes merges codes (iemocap4: hap+exc), the card, index and samples
record the classes, and training/evaluation of a single-label protocol report WA, UA and per-class F1."""
from __future__ import annotations

import json
import tarfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mer_data.corpora.label_protocol import ProtocolError, parse_classes
from tests.conftest import convert

FOUR = {"ang": ("ang",), "hap": ("hap", "exc"), "neu": ("neu",), "sad": ("sad",)}


def expected_counts(truth: dict) -> Counter:
    """Per iemocap4 class, the synthetic release's utterances of its codes (from synth_truth.json)."""
    class_of = {code: name for name, codes in FOUR.items() for code in codes}
    return Counter(class_of[u["category"]] for u in truth["utterances"] if u["category"] in class_of)


@pytest.fixture(scope="module")
def four_class_shards(small_corpus, tmp_path_factory):
    root, _ = small_corpus
    out = tmp_path_factory.mktemp("shards-iemocap4")
    report = convert(root, out, classes=parse_classes("iemocap4").spec, split="random:2:0.6,0.2,0.2")   # 5/2/2 utterances
    assert not report.problems, [p.format() for p in report.problems]
    counts = json.loads((out / "dataset.json").read_text())["counts"]["per_split"]
    assert all(counts[split] for split in ("train", "valid", "test")), counts
    return out


# --------------------------------------------------------------------------------------------
# The --classes syntax


def test_presets_and_the_merge_syntax_name_the_same_classes():
    four = parse_classes("iemocap4")
    assert four.classes == tuple(FOUR.items()) and four.names == ("ang", "hap", "neu", "sad")
    assert parse_classes("ang,hap+exc,neu,sad") == four and four.name == "iemocap4"
    assert four.task == "single-label" and four.class_of("exc") == "hap" and four.class_of("fru") is None
    named = parse_classes("ang, joy=hap+exc, neu, sad")
    assert named.names == ("ang", "joy", "neu", "sad") and named.name is None and named.class_of("hap") == "joy"
    six = parse_classes("iemocap6")
    assert six.spec == ("ang", "exc", "fru", "hap", "neu", "sad") == parse_classes("ang,exc,fru,hap,neu,sad").spec
    assert six.task == "one-vs-rest" and six.name == "iemocap6"
    assert parse_classes("all").spec == ("all",) and parse_classes("all").class_of("xxx") == "xxx"


@pytest.mark.parametrize("value, message", [
    ("ang,joy", "class 2 ('joy'): unknown category code 'joy'; known: neu, hap"),
    ("ang,hap+exc,exc", "category code 'exc' is in two classes ('hap' and 'exc')"),
    ("ang,,sad", "class 2 is empty"),
    ("", "no class given"),
    ("ang,hap+,sad", "class 2 ('hap+'): an empty code around '+'"),
    ("hap=hap,hap=exc", "class name 'hap' is given twice"),
    ("Joy=hap", "class name 'Joy' must be lower-case"),
])
def test_bad_class_lists_say_which_class_and_why(value, message):
    with pytest.raises(ProtocolError, match=None) as caught:
        parse_classes(value)
    assert message in str(caught.value)


def test_cli_refuses_a_bad_class_list_with_the_reason(small_corpus, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    root, _ = small_corpus
    result = CliRunner().invoke(main, ["convert", "iemocap", str(root), str(tmp_path / "o"),
                                       "--classes", "ang,hap+exc,exc"])
    assert result.exit_code == 2 and "'exc' is in two classes" in result.output
    assert not (tmp_path / "o" / "dataset.json").exists()


def test_default_conversion_keeps_its_options_and_classes():
    from mer_data.pipelines.options import ConvertOptions

    # The default class list is stored as before, so a default conversion's fingerprint is unchanged.
    assert ConvertOptions(corpus="iemocap").classes == parse_classes("iemocap6").spec
    assert ConvertOptions(corpus="iemocap").to_json()["classes"] == ["ang", "exc", "fru", "hap", "neu", "sad"]


# --------------------------------------------------------------------------------------------
# Conversion under iemocap4


def test_iemocap4_plan_keeps_exactly_the_expected_utterances(small_corpus):
    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions

    root, truth = small_corpus
    plan = plan_iemocap(root, ConvertOptions(corpus="iemocap", split="session:2", classes=("ang", "hap+exc", "neu",
                                                                                             "sad")))
    kept = [u for job in plan.jobs for u in job.utterances]
    assert Counter(u.label["class"] for u in kept) == expected_counts(truth)
    assert {u.label["category"] for u in kept if u.label["class"] == "hap"} == {"hap", "exc"}
    assert len(plan.excluded) == len(truth["utterances"]) - len(kept)
    assert {e["label"] for e in plan.excluded}.isdisjoint({"ang", "hap", "exc", "neu", "sad"})


def test_leave_one_session_out_under_iemocap4_keeps_speakers_apart(small_corpus):
    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions

    root, _ = small_corpus
    plan = plan_iemocap(root, ConvertOptions(corpus="iemocap", split="session:2", classes=parse_classes("iemocap4").spec))
    speakers: dict[str, set] = {}
    for job in plan.jobs:
        split_of = dict(job.splits)
        for utt in job.utterances:
            speakers.setdefault(split_of[utt.id], set()).add((utt.session, utt.speaker))
    assert speakers.get("test") and speakers.get("train")
    assert {session for session, _ in speakers["test"]} == {2}
    assert speakers["test"].isdisjoint(speakers["train"] | speakers.get("valid", set()))


def test_iemocap4_card_index_and_samples_record_the_classes(small_corpus, four_class_shards):
    from mer_data import schemas
    _, truth = small_corpus
    expected = expected_counts(truth)
    card = json.loads((four_class_shards / "dataset.json").read_text())
    protocol = card["label_protocol"]
    assert protocol["name"] == "iemocap4" and protocol["task"] == "single-label"
    assert protocol["classes"][1] == {"name": "hap", "codes": ["hap", "exc"]}
    assert protocol["counts"] == dict(expected) and card["counts"]["total"] == sum(expected.values())
    index = pd.read_parquet(four_class_shards / "index.parquet")
    assert Counter(index["class"]) == expected
    assert set(index.loc[index["class"] == "hap", "label"]) == {"hap", "exc"}
    samples = []
    for shard in sorted(four_class_shards.glob("*.tar")):
        with tarfile.open(shard) as tar:
            samples += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert Counter(s["label"]["class"] for s in samples) == expected
    truth_codes = {u["id"]: u["category"] for u in truth["utterances"]}
    for sample in samples:
        assert sample["label"]["category"] == truth_codes[sample["id"]]   # the corpus's own code stays
        assert not schemas.errors("sample", sample)


def test_a_1_1_iemocap_sample_without_its_class_breaks_the_schema(four_class_shards):
    from mer_data import schemas
    shard = sorted(four_class_shards.glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        meta = next(json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json"))
    del meta["label"]["class"]
    assert any("class" in error for error in schemas.errors("sample", meta))


def test_targets_follow_the_class_and_old_cards_keep_their_codes():
    from mer_data.shards.labels import label_names_from_card, label_task_from_card, targets

    meta = {"id": "u", "corpus": "iemocap", "label": {"category": "exc", "class": "hap"}}
    assert targets(meta, ("ang", "hap", "neu", "sad")).tolist() == [0, 1, 0, 0]
    card = {"corpus": "iemocap", "options": {"classes": ["ang", "hap+exc", "neu", "sad"]},
            "label_protocol": parse_classes("iemocap4").to_json()}
    assert label_names_from_card(card) == ("ang", "hap", "neu", "sad") and label_task_from_card(card) == "single-label"
    old = {"corpus": "iemocap", "options": {"classes": ["ang", "hap", "neu", "sad"]}}
    assert label_names_from_card(old) == ("ang", "hap", "neu", "sad") and label_task_from_card(old) == "one-vs-rest"
    assert targets({"id": "v", "corpus": "iemocap", "label": {"category": "neu"}}, ("ang", "neu")).tolist() == [0, 1]


# --------------------------------------------------------------------------------------------
# Metrics of a single-label protocol


def test_wa_ua_and_f1_equal_hand_computed_values():
    from mer_data.model.metrics import single_label_metrics

    names = ["ang", "hap", "neu", "sad"]
    actual = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3]
    predicted = [0, 1, 1, 1, 2, 2, 2, 0, 2, 2]
    scores = np.eye(4)[predicted] * 0.7 + 0.075
    metrics = single_label_metrics("iemocap", scores, np.eye(4)[actual], names)
    # confusion rows actual, columns predicted
    assert metrics["confusion_matrix"]["counts"] == [[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 3, 0], [0, 0, 1, 0]]
    overall = metrics["overall"]
    assert overall["wa"] == pytest.approx(6 / 10)
    assert overall["ua"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 0) / 4)
    # F1 = 2TP / (2TP + FP + FN): ang 2/(2+1+1), hap 4/(4+1+1), neu 6/(6+2+1), sad 0
    f1 = {"ang": 2 / 4, "hap": 4 / 6, "neu": 6 / 9, "sad": 0.0}
    assert {n: metrics["per_class"][n]["f1"] for n in names} == pytest.approx(f1)
    assert overall["macro_f1"] == pytest.approx(sum(f1.values()) / 4) == metrics["mean"]["f1"]
    assert metrics["mean"]["recall"] == overall["ua"] and metrics["per_class"]["neu"]["precision"] == 3 / 5
    assert set(metrics["definitions"]) >= {"wa", "ua", "f1", "macro_f1", "confusion_matrix"}


def test_ua_leaves_out_a_class_without_utterances_and_says_so():
    from mer_data.model.metrics import single_label_metrics

    metrics = single_label_metrics("iemocap", np.eye(3)[[0, 1, 1]], np.eye(3)[[0, 1, 0]], ["a", "b", "c"])
    assert metrics["overall"]["ua"] == pytest.approx((1 / 2 + 1) / 2)
    assert any("c: no utterances" in note for note in metrics["notes"])


# --------------------------------------------------------------------------------------------
# Training and evaluating a 4-class run


def test_four_class_run_trains_single_label_and_reports_wa_ua_f1(four_class_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.report import terminal_table
    from mer_data.model.train import TrainConfig, train

    tiny = dict(visual_channels=[4, 8, 8, 8], acoustic_channels=[4, 8, 8, 8], temporal_width=16,
                temporal_layers=1, temporal_heads=2, dropout=0.1)
    run = tmp_path / "four"
    config = TrainConfig(shards=[str(four_class_shards)], modalities="ta", epochs=1, batch_size=4, workers=0,
                         text_encoder=str(tiny_text_encoder), model_options=tiny)
    state = train(config, run, progress=False, log=lambda message: None)
    stored = json.loads((run / "config.json").read_text())
    assert stored["label_names"] == ["ang", "hap", "neu", "sad"] and stored["label_task"] == "single-label"
    assert state.epochs_done == 1 and np.isfinite(state.history[0]["train_loss"])
    valid = json.loads((run / "metrics" / "epoch-001.json").read_text())["valid"]
    assert valid["task"] == "single-label" and state.history[0]["valid_mean_f1"] == valid["overall"]["macro_f1"]
    metrics = evaluate(run, split="test", progress=False)
    index = pd.read_parquet(four_class_shards / "index.parquet")
    assert metrics["utterances"]["test"] == int((index["split"] == "test").sum())
    assert sum(map(sum, metrics["confusion_matrix"]["counts"])) == metrics["utterances"]["test"]
    assert set(metrics["overall"]) == {"wa", "ua", "macro_f1"} and "thresholds" not in metrics
    scores = pd.read_parquet(run / "eval-test" / "scores.parquet")
    assert np.allclose(scores[[f"score_{n}" for n in metrics["label_names"]]].sum(axis=1), 1.0, atol=1e-5)
    markdown = (run / "eval-test" / "metrics.md").read_text()
    assert "WA (overall accuracy)" in markdown and "Confusion matrix" in markdown
    assert "UA (mean per-class recall)" in terminal_table(metrics)


def test_feature_tables_take_the_shards_label_space_and_task(four_class_shards):
    """The baselines' feature tables are made from the shards: same classes, same task (features.json)."""
    from mer_data.pipelines.features import plan_features

    plan = plan_features(four_class_shards)
    assert plan.label_names == ("ang", "hap", "neu", "sad") and plan.label_task == "single-label"


def test_default_conversion_records_the_six_classes_one_vs_rest(small_shards):
    out, _ = small_shards
    card = json.loads((out / "dataset.json").read_text())
    assert card["options"]["classes"] == ["ang", "exc", "fru", "hap", "neu", "sad"]
    assert card["label_protocol"]["name"] == "iemocap6" and card["label_protocol"]["task"] == "one-vs-rest"
    index = pd.read_parquet(out / "index.parquet")
    assert len(index) and (index["class"] == index["label"]).all()


def test_compare_shows_wa_ua_macro_f1_of_single_label_runs_and_refuses_mixing():
    from mer_data.model.compare import Comparison, ComparisonRow, check_comparable
    from mer_data.model.metrics import evaluate_scores, single_label_metrics

    names = ["ang", "hap", "neu", "sad"]
    targets = np.eye(4)[[0, 1, 2, 3, 1, 2]]
    scores = np.eye(4)[[0, 1, 2, 2, 1, 0]]
    four = single_label_metrics("iemocap", scores, targets, names)
    rows = [ComparisonRow(label, label, "fe2e", "tav", None, four, None) for label in ("A", "B")]
    comparison = Comparison("iemocap", "test", names, list(four["headline_metrics"]), rows)
    summary = comparison.markdown.split("## Summary")[1].split("\n")[2]
    assert "WA (overall accuracy) %" in summary and "UA (mean per-class recall) %" in summary
    assert "macro F1 %" in summary and "| **66.7** |" in comparison.markdown   # WA = 4/6
    binary = evaluate_scores("iemocap", scores, targets, scores, targets, names)
    mixed = [rows[0], ComparisonRow("C", "C", "fe2e", "tav", None, binary, None)]
    with pytest.raises(ValueError, match="evaluated as one-vs-rest, but A as single-label"):
        check_comparable(mixed, "test")


def test_a_baseline_on_four_class_features_trains_single_label(four_class_shards, tiny_text_encoder, tmp_path):
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import TrainConfig, train
    from mer_data.pipelines.features import extract_features
    from mer_data.pipelines.options import FeatureOptions

    feats = tmp_path / "feats"
    report = extract_features(four_class_shards, feats, FeatureOptions(text_encoder=str(tiny_text_encoder)),
                              workers=1, progress=False)
    assert report.errors == []
    card = json.loads((feats / "features.json").read_text())
    assert card["label_names"] == ["ang", "hap", "neu", "sad"] and card["label_task"] == "single-label"
    run = tmp_path / "lf-rnn"
    train(TrainConfig(shards=[str(feats)], model="lf-rnn", epochs=1, batch_size=4), run, progress=False,
          log=lambda message: None)
    assert json.loads((run / "config.json").read_text())["label_task"] == "single-label"
    metrics = evaluate(run, split="test", progress=False)
    assert metrics["task"] == "single-label" and set(metrics["overall"]) == {"wa", "ua", "macro_f1"}
