"""Metrics and their reports: every figure against values worked out by hand on small fixed arrays."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mer_data.model.metrics import (
    ConfusionCounts, accuracy, average_ranks, confusion_counts, evaluate_scores, f1_score, iemocap_metrics,
    mosei_metrics, precision, recall, roc_auc, tune_threshold, tune_thresholds, weighted_accuracy,
)
from mer_data.model.report import METRICS_JSON, METRICS_MARKDOWN, render_markdown, terminal_table, write_report

IEMOCAP_NAMES = ["ang", "exc", "fru", "hap", "neu", "sad"]
MOSEI_NAMES = ["happy", "sad", "anger", "surprise", "disgust", "fear"]

# Example A: 3 positives, 5 negatives. At threshold 0.5 the predicted positives are 0.9, 0.8 (both
# positive) and 0.7, 0.6 (both negative): TP = 2, FP = 2, FN = 1 (0.35), TN = 3 (0.3, 0.2, 0.1).
SCORES_A = [0.9, 0.8, 0.35, 0.7, 0.6, 0.3, 0.2, 0.1]
TARGETS_A = [1, 1, 1, 0, 0, 0, 0, 0]


def row_cells(markdown: str, row_label: str) -> list[str]:
    """The cells after the label of the Markdown table row that starts with `row_label` (first match)."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {row_label}"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def section(markdown: str, heading_start: str) -> str:
    """The text of the Markdown section whose heading starts with `heading_start`, up to the next heading."""
    start = markdown.index(f"## {heading_start}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end != -1 else None]


# --------------------------------------------------------------------------------------------
# Binary building blocks


def test_confusion_counts_and_binary_metrics_by_hand():
    counts = confusion_counts(SCORES_A, TARGETS_A, 0.5)
    assert counts == ConfusionCounts(tp=2, fp=2, tn=3, fn=1)
    assert (counts.positives, counts.negatives, counts.total) == (3, 5, 8)
    assert accuracy(counts) == pytest.approx(5 / 8)           # (TP + TN) / 8
    assert precision(counts) == pytest.approx(2 / 4)          # TP / (TP + FP)
    assert recall(counts) == pytest.approx(2 / 3)             # TP / P
    assert f1_score(counts) == pytest.approx(4 / 7)           # 2*2 / (2*2 + 2 + 1)
    # (TP*N/P + TN) / (2N) = (2*5/3 + 3) / 10 = 19/30, the same as (TPR + TNR)/2 = (2/3 + 3/5)/2.
    assert weighted_accuracy(counts) == pytest.approx(19 / 30)


def test_a_score_equal_to_the_threshold_is_predicted_positive():
    assert confusion_counts([0.5, 0.4], [1, 0], 0.5) == ConfusionCounts(tp=1, fp=0, tn=1, fn=0)


def test_weighted_and_plain_accuracy_differ_on_an_imbalanced_class():
    # 1 positive, 9 negatives, nothing predicted positive: plain accuracy rewards predicting the
    # majority (9/10), WAcc = (0*9/1 + 9) / (2*9) = 0.5 does not.
    scores, targets = [0.2] * 10, [1] + [0] * 9
    counts = confusion_counts(scores, targets, 0.5)
    assert accuracy(counts) == pytest.approx(0.9)
    assert weighted_accuracy(counts) == pytest.approx(0.5)
    # The positive found and one false alarm: TP=1, FP=1, TN=8: Acc = 9/10, WAcc = (1*9/1 + 8)/18 = 17/18.
    counts = confusion_counts([0.9, 0.9] + [0.1] * 8, targets, 0.5)
    assert accuracy(counts) == pytest.approx(0.9)
    assert weighted_accuracy(counts) == pytest.approx(17 / 18)


def test_edge_cases_without_positives_or_without_negatives():
    no_positives = confusion_counts([0.9, 0.1, 0.2], [0, 0, 0], 0.5)   # TP=0, FP=1, TN=2, FN=0
    assert no_positives == ConfusionCounts(tp=0, fp=1, tn=2, fn=0)
    assert recall(no_positives) == 0.0 and f1_score(no_positives) == 0.0
    assert accuracy(no_positives) == pytest.approx(2 / 3)
    assert math.isnan(weighted_accuracy(no_positives))               # N/P with P = 0
    assert math.isnan(roc_auc([0.9, 0.1, 0.2], [0, 0, 0]))

    all_positive = confusion_counts([0.9, 0.1, 0.2], [1, 1, 1], 0.5)  # TP=1, FN=2
    assert f1_score(all_positive) == pytest.approx(2 / 4) and precision(all_positive) == 1.0
    assert math.isnan(weighted_accuracy(all_positive))               # / (2N) with N = 0
    assert math.isnan(roc_auc([0.9, 0.1, 0.2], [1, 1, 1]))

    nothing_predicted = confusion_counts([0.1, 0.2], [1, 0], 0.5)
    assert precision(nothing_predicted) == 0.0 and f1_score(nothing_predicted) == 0.0
    # No positives and no positive predictions: F1 = 0 by the TP = 0 convention, accuracy is perfect.
    empty_task = confusion_counts([0.1, 0.2], [0, 0], 0.5)
    assert f1_score(empty_task) == 0.0 and accuracy(empty_task) == 1.0


def test_roc_auc_by_the_rank_formula():
    # Positives 0.9, 0.8, 0.35 against negatives 0.7, 0.6, 0.3, 0.2, 0.1: 0.9 and 0.8 beat all five,
    # 0.35 beats three: 13 of 15 pairs. Ranks: positives at 8, 7, 4: (19 - 3*4/2) / 15 = 13/15.
    assert roc_auc(SCORES_A, TARGETS_A) == pytest.approx(13 / 15)
    # Reversing the scores turns every won pair into a lost one.
    assert roc_auc(-np.array(SCORES_A), TARGETS_A) == pytest.approx(2 / 15)


def test_roc_auc_counts_ties_as_half():
    # Positives 0.5 and 0.8, negatives 0.2, 0.5, 0.5. Pairs: 0.5 beats 0.2 (1) and ties two (1/2 each): 2;
    # 0.8 beats all three: 3. AUC = 5/6. Ranks 1, (2+3+4)/3 = 3 three times, 5: (3 + 5 - 3) / 6 = 5/6.
    assert roc_auc([0.2, 0.5, 0.5, 0.5, 0.8], [0, 1, 0, 0, 1]) == pytest.approx(5 / 6)
    assert roc_auc([0.4] * 5, [1, 0, 1, 0, 0]) == pytest.approx(0.5)


def test_average_ranks_share_ties():
    assert average_ranks(np.array([0.5, 0.2, 0.5, 0.9])).tolist() == [2.5, 1.0, 2.5, 4.0]


# --------------------------------------------------------------------------------------------
# Threshold tuning


def test_tune_threshold_picks_the_f1_maximising_midpoint():
    # Distinct scores 0.1, 0.35, 0.4, 0.8; positives are 0.35 and 0.8. Candidates and F1:
    #   0.1 (all positive): TP2 FP2 FN0 -> 4/6;  0.225: TP2 FP1 -> 4/5;  0.375: TP1 FP1 FN1 -> 2/4;
    #   0.6: TP1 FN1 -> 2/3;  above 0.8: TP0 -> 0.  Best: 0.225, the midpoint of 0.1 and 0.35.
    assert tune_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.225)


def test_tune_threshold_breaks_an_f1_tie_by_accuracy():
    # Scores 0.1 (pos), 0.3, 0.5 (neg), 0.9 (pos). "All positive" (0.1): TP2 FP2 FN0, F1 = 4/6, 2 correct;
    # 0.7: TP1 FP0 FN1, F1 = 2/3 too, but 3 correct. The tie goes to the higher accuracy: 0.7.
    assert tune_threshold([0.1, 0.3, 0.5, 0.9], [1, 0, 0, 1]) == pytest.approx(0.7)


def test_tune_threshold_edge_cases():
    # No positives: F1 is 0 everywhere; the most accurate threshold predicts nothing positive.
    no_positives = tune_threshold([0.1, 0.3, 0.3], [0, 0, 0])
    assert no_positives > 0.3 and confusion_counts([0.1, 0.3, 0.3], [0, 0, 0], no_positives).fp == 0
    # All positive: predicting everything positive gives F1 = 1: the lowest score.
    assert tune_threshold([0.2, 0.6, 0.3], [1, 1, 1]) == pytest.approx(0.2)
    # One score repeated: the only choices are all or nothing.
    assert tune_threshold([0.4, 0.4, 0.4], [1, 0, 0]) == pytest.approx(0.4)


@pytest.mark.parametrize("low", [0.3, 0.5])   # their float midpoints round up and down respectively
def test_tune_threshold_separates_adjacent_floats(low):
    high = float(np.nextafter(low, 1.0))   # no float lies between them: no true midpoint exists
    threshold = tune_threshold([low, high], [0, 1])
    assert confusion_counts([low, high], [0, 1], threshold) == ConfusionCounts(tp=1, fp=0, tn=1, fn=0)


def test_tuned_threshold_reaches_the_best_f1_of_every_cut():
    # Cross-check against brute force: the best F1 over every cut "score >= s" (s each distinct score)
    # and "nothing positive" must equal the F1 at the tuned threshold, on data full of ties.
    rng = np.random.default_rng(7)
    for _ in range(20):
        scores = np.round(rng.random(40), 1)
        targets = (rng.random(40) < 0.3).astype(int)
        cuts = [*np.unique(scores), math.inf]
        best = max(f1_score(confusion_counts(scores, targets, cut)) for cut in cuts)
        assert f1_score(confusion_counts(scores, targets, tune_threshold(scores, targets))) == best


def test_tune_thresholds_works_per_column():
    scores = np.array([[0.1, 0.1], [0.4, 0.3], [0.35, 0.5], [0.8, 0.9]])
    targets = np.array([[0, 1], [0, 0], [1, 0], [1, 1]])
    # Column 0 is the midpoint example above (0.225). Column 1: positives 0.1 and 0.9: everything positive
    # (0.1) gives TP2 FP2, F1 4/6, 2 correct; 0.7 gives TP1 FN1, F1 2/3, 3 correct: 0.7.
    assert tune_thresholds(scores, targets) == pytest.approx([0.225, 0.7])


# --------------------------------------------------------------------------------------------
# Per-corpus figures

# Three classes a, b, c; true classes a, a, a, b, c; thresholds 0.5.
SCORES_3 = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
TARGETS_3 = np.eye(3)[[0, 0, 0, 1, 2]]
TWO_LABELS_IN_ROW_1 = TARGETS_3 + np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_iemocap_metrics_by_hand():
    result = iemocap_metrics(SCORES_3, TARGETS_3, [0.5, 0.5, 0.5], ["a", "b", "c"])
    a, b, c = (result["per_class"][name] for name in "abc")
    # a: scores .8 .6 .3 | .2 .5 -> predicted rows 0, 1, 4: TP2 FP1 TN1 FN1 (P=3, N=2).
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (2, 1, 1, 1)
    assert a["acc"] == pytest.approx(3 / 5) and a["f1"] == pytest.approx(4 / 6)
    assert a["wacc"] == pytest.approx(7 / 12)      # (2*2/3 + 1) / 4
    assert a["auc"] == pytest.approx(5 / 6)        # .8, .6 beat .2 and .5; .3 beats .2: 5 of 6 pairs
    # b: predicted rows 2 (.6) and 3 (.7, the positive): TP1 FP1 TN3: Acc 4/5, F1 2/3, WAcc (1*4 + 3)/8.
    assert (b["acc"], b["f1"], b["wacc"], b["auc"]) == pytest.approx((4 / 5, 2 / 3, 7 / 8, 1.0))
    # c: its positive scores 0.4 < 0.5: TP0 FN1 TN4: Acc 4/5, F1 0, WAcc (0 + 4)/8, AUC 1 (0.4 beats 0.1s).
    assert (c["acc"], c["f1"], c["wacc"], c["auc"]) == pytest.approx((4 / 5, 0.0, 0.5, 1.0))
    assert result["mean"]["acc"] == pytest.approx(11 / 15)     # (3/5 + 4/5 + 4/5) / 3
    assert result["mean"]["f1"] == pytest.approx(4 / 9)        # (2/3 + 2/3 + 0) / 3
    assert result["mean"]["wacc"] == pytest.approx(47 / 72)    # (7/12 + 7/8 + 1/2) / 3
    assert result["mean"]["auc"] == pytest.approx(17 / 18)     # (5/6 + 1 + 1) / 3
    # argmax: rows 0, 1, 3 right; row 2 (a) goes to b, row 4 (c) to a. Acc 3/5; recalls 2/3, 1, 0: UAR 5/9.
    assert result["multiclass"]["acc_6way"] == pytest.approx(3 / 5)
    assert result["multiclass"]["uar_6way"] == pytest.approx(5 / 9)
    assert result["notes"] == []


def test_mosei_metrics_by_hand_on_multi_hot_targets():
    scores = np.array([[0.9, 0.1], [0.7, 0.8], [0.2, 0.3], [0.4, 0.45], [0.6, 0.2]])
    targets = np.array([[1, 0], [1, 1], [0, 0], [0, 1], [0, 0]])   # one utterance has both, two neither
    result = mosei_metrics(scores, targets, [0.5, 0.5], ["happy", "sad"])
    happy, sad = result["per_class"]["happy"], result["per_class"]["sad"]
    # happy: predicted .9 .7 (positives) and .6: TP2 FP1 TN2 FN0, P=2 N=3: WAcc (2*3/2 + 2)/6 = 5/6.
    assert (happy["wacc"], happy["acc"], happy["f1"], happy["auc"]) == pytest.approx((5 / 6, 4 / 5, 4 / 5, 1.0))
    # sad: predicted .8 only: TP1 FN1 (0.45) TN3, P=2 N=3: WAcc (1*3/2 + 3)/6 = 3/4, F1 2/3.
    assert (sad["wacc"], sad["acc"], sad["f1"], sad["auc"]) == pytest.approx((3 / 4, 4 / 5, 2 / 3, 1.0))
    assert result["mean"]["wacc"] == pytest.approx(19 / 24)
    assert result["mean"]["f1"] == pytest.approx(11 / 15)
    assert "multiclass" not in result


@pytest.mark.parametrize("call, message", [
    (lambda: iemocap_metrics(SCORES_3, TWO_LABELS_IN_ROW_1, [0.5] * 3, "abc"), "must be one-hot .* row 1 has 2"),
    (lambda: iemocap_metrics(SCORES_3, TARGETS_3, [0.5] * 3, ["a", "b"]), "3 score columns for 2 labels"),
    (lambda: mosei_metrics(SCORES_3, TARGETS_3[:4], [0.5] * 3, "abc"), "expected scores and targets of one shape"),
    (lambda: mosei_metrics(np.where(SCORES_3 == 0.7, np.nan, SCORES_3), TARGETS_3, [0.5] * 3, "abc"),
     r"non-finite score \(NaN or inf\) at row 3"),
    (lambda: mosei_metrics(SCORES_3, TARGETS_3 * 2, [0.5] * 3, "abc"),
     r"test split: targets must be 0 or 1; row 0 holds \[2.0, 0.0, 0.0\]"),
    (lambda: mosei_metrics(SCORES_3, TARGETS_3, [0.5] * 2, "abc"), "2 thresholds for 3 labels"),
    (lambda: roc_auc([], []), "no utterances"),
    (lambda: evaluate_scores("meld", SCORES_3, TARGETS_3, SCORES_3, TARGETS_3, "abc"), "unknown corpus 'meld'"),
])
def test_bad_input_fails_with_the_reason(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------------
# The protocol: thresholds from validation, figures on the evaluated split


def iemocap_example():
    """Six one-hot utterances per split. Valid: each class's own utterance scores 0.6, the rest 0.4, so
    every tuned threshold is 0.5 (F1 1 there). Test: each utterance scores 0.9 for its class and 0.1
    elsewhere, except the sad one, which scores sad 0.3 and neu 0.6.

    At 0.5: ang..hap are perfect. neu: TP1 FP1 (the sad utterance) TN4: Acc 5/6, F1 2/3, WAcc
    (1*5/1 + 4)/10 = 0.9, AUC 1. sad: TP0 FN1 TN5: Acc 5/6, F1 0, WAcc (0 + 5)/10 = 0.5, AUC 1 (0.3 >
    0.1). Means: Acc (4 + 10/6)/6 = 94.4%, F1 (4 + 2/3)/6 = 77.8%, WAcc 5.4/6 = 90.0%. Argmax: five
    of six right: 83.3%.
    """
    valid = np.full((6, 6), 0.4)
    np.fill_diagonal(valid, 0.6)
    test = np.full((6, 6), 0.1)
    np.fill_diagonal(test, 0.9)
    test[5, 5], test[5, 4] = 0.3, 0.6
    return evaluate_scores("iemocap", valid, np.eye(6), test, np.eye(6), IEMOCAP_NAMES)


def mosei_example():
    """Valid: per emotion one negative at 0.4 and one positive at 0.6 (threshold 0.5). Test: example A
    in every column, except that no utterance shows fear (so its AUC and WAcc are undefined)."""
    valid_scores = np.repeat([[0.4], [0.6]], 6, axis=1)
    valid_targets = np.repeat([[0], [1]], 6, axis=1)
    test_scores = np.repeat(np.array(SCORES_A)[:, None], 6, axis=1)
    test_targets = np.repeat(np.array(TARGETS_A)[:, None], 6, axis=1)
    test_targets[:, MOSEI_NAMES.index("fear")] = 0
    return evaluate_scores("mosei", valid_scores, valid_targets, test_scores, test_targets, MOSEI_NAMES)


def python_types_only(value) -> bool:
    """True when the structure holds only JSON's Python types (no numpy scalars that json would reject)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and python_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(python_types_only(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_evaluate_scores_tunes_on_valid_and_applies_to_test():
    metrics = iemocap_example()
    assert metrics["thresholds"] == pytest.approx(dict.fromkeys(IEMOCAP_NAMES, 0.5))
    assert metrics["utterances"] == {"valid": 6, "test": 6}
    assert metrics["headline_metrics"] == ["acc", "f1", "auc"]
    assert metrics["mean"]["acc"] == pytest.approx(34 / 36) and metrics["mean"]["f1"] == pytest.approx(14 / 18)
    assert metrics["mean"]["wacc"] == pytest.approx(0.9) and metrics["multiclass"]["acc_6way"] == pytest.approx(5 / 6)
    assert "(TP*N/P + TN) / (2N)" in metrics["definitions"]["wacc"]
    assert "plain binary accuracy" in metrics["definitions"]["acc"]
    assert python_types_only(metrics)
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics


def test_evaluate_scores_marks_undefined_figures_and_leaves_them_out_of_means():
    metrics = mosei_example()
    fear = metrics["per_class"]["fear"]
    assert fear["auc"] is None and fear["wacc"] is None and fear["f1"] == 0.0
    assert fear["acc"] == pytest.approx(4 / 8)    # predicted 0.9 0.8 0.7 0.6, all wrong: 4 of 8 right
    # WAcc and AUC means over the five defined emotions (all example A); F1 and Acc over all six.
    assert metrics["mean"]["wacc"] == pytest.approx(19 / 30) and metrics["mean"]["auc"] == pytest.approx(13 / 15)
    assert metrics["mean"]["f1"] == pytest.approx((5 * 4 / 7) / 6)
    assert metrics["mean"]["acc"] == pytest.approx((5 * 5 / 8 + 4 / 8) / 6)
    assert any(note.startswith("fear: only negative utterances in the test split") for note in metrics["notes"])
    assert "mean wacc: over 5 of 6 classes" in metrics["notes"]
    assert python_types_only(metrics)
    json.dumps(metrics, allow_nan=False)   # strict JSON: undefined figures are null, not NaN


def test_a_class_without_valid_positives_gets_a_predict_nothing_threshold():
    valid_scores = np.array([[0.9, 0.2], [0.1, 0.8], [0.3, 0.4]])
    valid_targets = np.array([[1, 0], [1, 0], [1, 0]])   # class y has no positive in valid
    metrics = evaluate_scores("mosei", valid_scores, valid_targets, valid_scores, valid_targets, ["x", "y"])
    assert metrics["thresholds"]["y"] > 0.8 and metrics["per_class"]["y"]["fp"] == 0
    assert metrics["notes"][0].startswith("y: no positive utterances in the valid split")


# --------------------------------------------------------------------------------------------
# Reports


def test_markdown_report_names_every_metric_and_shows_the_numbers():
    metrics = iemocap_example()
    metrics["run"] = {"model": "fe2e", "modalities": "tav", "top_p": None, "epoch": 3, "split": "test"}
    markdown = render_markdown(metrics)
    acc = section(markdown, "Acc (plain binary accuracy, threshold tuned on valid F1), %")
    assert row_cells(acc, "this run") == ["100.0"] * 4 + ["83.3", "83.3", "94.4"]
    # The paper's FE2E row (Dai et al. 2021, IEMOCAP table) under ours.
    assert row_cells(acc, "paper FE2E") == ["88.7", "89.1", "71.2", "90.0", "79.1", "89.1", "84.5"]
    f1 = section(markdown, "F1 (positive class, threshold tuned on valid F1), %")
    assert row_cells(f1, "this run") == ["100.0"] * 4 + ["66.7", "0.0", "77.8"]
    assert row_cells(f1, "paper FE2E") == ["63.9", "61.9", "57.8", "44.8", "58.4", "65.7", "58.8"]
    auc = section(markdown, "AUC (ROC area of the scores, threshold-free), %")
    assert row_cells(auc, "this run") == ["100.0"] * 7 and "paper" not in auc    # the paper has no AUC
    wacc = section(markdown, "Secondary: WAcc = (TP·N/P + TN)/(2N)")
    assert row_cells(wacc, "this run") == ["100.0"] * 4 + ["90.0", "50.0", "90.0"]
    six_way = section(markdown, "Secondary: 6-way classification")
    assert row_cells(six_way, "this run") == ["83.3", "83.3"]
    assert row_cells(markdown, "sad") == ["0.5000", "1", "5", "0", "0", "5", "1", "0.0", "0.0"]
    assert markdown.index("## Acc") < markdown.index("## F1") < markdown.index("## Secondary: WAcc")


def test_mosei_report_leads_with_weighted_accuracy_and_aligns_the_paper_by_label():
    metrics = mosei_example()
    metrics["run"] = {"model": "mesm", "top_p": 0.5}
    markdown = render_markdown(metrics)
    assert markdown.index("## WAcc = (TP·N/P + TN)/(2N)") < markdown.index("## Secondary: Acc (plain binary")
    wacc = section(markdown, "WAcc")
    # Example A: (TP*N/P + TN)/(2N) = 19/30 = 63.3%; fear has no positives: n/a; mean over five: 63.3.
    assert row_cells(wacc, "this run") == ["63.3"] * 5 + ["n/a", "63.3"]
    # Paper columns are anger disgust fear happy sad surprise; ours happy sad anger surprise disgust fear.
    assert row_cells(wacc, "paper MESM (p=0.5)") == ["64.1", "63.0", "66.8", "65.7", "75.6", "65.8", "66.8"]
    # F1 4/7 = 57.1% five times and 0 for fear: mean 20/42 = 47.6%. Acc 62.5% and 50%: mean 60.4%.
    assert row_cells(section(markdown, "F1"), "this run") == ["57.1"] * 5 + ["0.0", "47.6"]
    assert row_cells(section(markdown, "Secondary: Acc"), "this run") == ["62.5"] * 5 + ["50.0", "60.4"]
    assert row_cells(section(markdown, "AUC"), "this run") == ["86.7"] * 5 + ["n/a", "86.7"]
    assert "fear: only negative utterances in the test split" in section(markdown, "Notes")


def test_paper_row_shows_its_mean_only_for_the_same_classes():
    metrics = evaluate_scores("iemocap", np.eye(2) * 0.5 + 0.2, np.eye(2), np.eye(2) * 0.5 + 0.2, np.eye(2),
                              ["ang", "calm"])
    metrics["run"] = {"model": "FE2E"}
    assert row_cells(section(render_markdown(metrics), "Acc"), "paper FE2E") == ["88.7", "–", "–"]


def test_no_paper_row_without_a_known_model():
    markdown = render_markdown(iemocap_example())
    assert "paper" not in section(markdown, "Acc") and "| this run |" in markdown


def test_terminal_table_is_plain_text_with_named_rows():
    metrics = mosei_example()
    metrics["run"] = {"model": "fe2e"}
    lines = terminal_table(metrics).splitlines()
    assert lines[0].startswith("CMU-MOSEI, test split: 8 utterances; thresholds tuned per class on valid F1")
    assert lines[1].split() == [*MOSEI_NAMES, "mean"]
    assert lines[2].startswith("WAcc (TP*N/P+TN)/2N") and lines[2].split()[-7:] == ["63.3"] * 5 + ["n/a", "63.3"]
    paper_wacc = next(line for line in lines if line.startswith("paper FE2E WAcc"))
    assert paper_wacc.split()[-7:] == ["65.4", "65.2", "67.0", "66.7", "77.7", "63.8", "67.6"]
    assert all(line.isascii() for line in lines)
    assert len({len(line) for line in lines[1:8]}) == 1    # the table's columns line up


def test_write_report_writes_strict_json_and_markdown(tmp_path):
    metrics = mosei_example()
    paths = write_report(metrics, tmp_path / "eval-test")
    assert paths["json"].name == METRICS_JSON and paths["markdown"].name == METRICS_MARKDOWN
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == metrics
    assert "NaN" not in paths["json"].read_text(encoding="utf-8")
    assert paths["markdown"].read_text(encoding="utf-8") == render_markdown(metrics)
