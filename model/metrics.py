"""Emotion-recognition metrics with their names and definitions attached, so no table can mix them up.

The published code of Dai et al. (NAACL 2021) confused plain and weighted accuracy, and users could
not reproduce its IEMOCAP figure until that was found. Here every figure has one name, one formula
(`DEFINITIONS`, copied into every result) and one place where it is computed.

Inputs are plain numpy: `scores` [n, C] (probabilities, the sigmoid of the logits; any score that
orders the utterances the same gives the same AUC and the same tuned decisions) and `targets`
[n, C] of 0/1. Outputs are JSON-able dicts of Python floats/ints, with None for a figure that is
undefined on the data.

Conventions (the usual ones, e.g. scikit-learn's with zero_division=0):
- an utterance is predicted positive for a class when its score >= the class threshold;
- precision = 0 when nothing is predicted positive; recall = 0 when there are no positives;
  F1 = 2TP / (2TP + FP + FN), which is 0 whenever TP = 0 (also with no positives and no positive
  predictions);
- AUC and WAcc need both label values: with only positives or only negatives for a class they are
  NaN in the building blocks, None in the dicts, and a note says why;
- a mean is over the classes where the figure is defined; a note names any class left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mer_data.corpora.label_protocol import SINGLE_LABEL

IEMOCAP = "iemocap"
MOSEI = "mosei"

# Per-class figures of a one-vs-rest task, in the order they are stored.
BINARY_METRICS = ("acc", "wacc", "precision", "recall", "f1", "auc")

# What each corpus's papers report first (Dai et al. 2021 tables: IEMOCAP Acc/F1, MOSEI WAcc/F1),
# and the figures kept as secondary so that readers of other papers can find theirs.
HEADLINE_METRICS = {IEMOCAP: ("acc", "f1", "auc"), MOSEI: ("wacc", "f1", "auc")}
SECONDARY_METRICS = {IEMOCAP: ("wacc", "precision", "recall"), MOSEI: ("acc", "precision", "recall")}

THRESHOLD_RULE = (
    "per class, the threshold that maximises F1 on the valid split; candidates are the lowest "
    "validation score (everything positive), the midpoints between consecutive distinct validation "
    "scores, and the next float above the highest score (nothing positive); ties in F1 go to the "
    "higher validation accuracy (equal F1 and equal accuracy imply the same confusion counts, so no "
    "other tie can arise); an utterance is predicted positive when its score >= the threshold"
)

DEFINITIONS = {
    "acc": "Acc: plain binary accuracy (TP + TN) / (P + N) of the class's one-vs-rest task, at the "
           "threshold tuned on validation F1",
    "wacc": "WAcc: weighted accuracy (TP*N/P + TN) / (2N) (Dai et al. 2021), i.e. (TPR + TNR) / 2, the "
            "balanced accuracy, at the threshold tuned on validation F1; undefined when P = 0 or N = 0",
    "precision": "precision: TP / (TP + FP); 0 when nothing is predicted positive",
    "recall": "recall: TP / P; 0 when P = 0",
    "f1": "F1: the F1 score of the positive class, 2TP / (2TP + FP + FN), at the threshold tuned on validation F1; "
          "0 when TP = 0",
    "auc": "AUC: area under the ROC curve of the scores (threshold-free), by the rank (Mann-Whitney U) "
           "formula with tied scores given their average rank; undefined when P = 0 or N = 0",
    "mean": "mean: unweighted mean over the classes where the figure is defined",
    "acc_6way": "6-way Acc: accuracy of the argmax over the six scores against the one true class "
                "(what speech-emotion papers call WA, 'weighted accuracy'; not the WAcc above and not "
                "comparable with the per-class binary Acc); argmax ties go to the first label",
    "uar_6way": "6-way UAR: unweighted average recall of the argmax prediction, the mean over classes "
                "of the fraction of each class's utterances predicted as that class (what speech-emotion "
                "papers call UA); classes without utterances in the split are left out",
}


@dataclass(frozen=True)
class ConfusionCounts:
    """The four counts of a binary task at one threshold; P = tp + fn positives, N = tn + fp negatives."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp

    @property
    def total(self) -> int:
        return self.positives + self.negatives


# --------------------------------------------------------------------------------------------
# Binary building blocks


def confusion_counts(scores, targets, threshold: float) -> ConfusionCounts:
    """Counts of the task "score >= threshold means positive" against 0/1 targets (1-D arrays)."""
    scores, targets = _binary_arrays(scores, targets)
    predicted = scores >= threshold
    actual = targets == 1
    return ConfusionCounts(tp=int(np.sum(predicted & actual)), fp=int(np.sum(predicted & ~actual)),
                           tn=int(np.sum(~predicted & ~actual)), fn=int(np.sum(~predicted & actual)))


def accuracy(counts: ConfusionCounts) -> float:
    """Plain accuracy (TP + TN) / (P + N)."""
    if counts.total == 0:
        raise ValueError("accuracy of no utterances is undefined")
    return (counts.tp + counts.tn) / counts.total


def precision(counts: ConfusionCounts) -> float:
    predicted_positive = counts.tp + counts.fp
    return counts.tp / predicted_positive if predicted_positive else 0.0


def recall(counts: ConfusionCounts) -> float:
    return counts.tp / counts.positives if counts.positives else 0.0


def f1_score(counts: ConfusionCounts) -> float:
    """2TP / (2TP + FP + FN): the harmonic mean of precision and recall, 0 when TP = 0.

    Computed from the integer counts in one division, so equal ratios give equal floats (the
    threshold search compares them exactly).
    """
    if counts.tp == 0:
        return 0.0
    return 2 * counts.tp / (2 * counts.tp + counts.fp + counts.fn)


def weighted_accuracy(counts: ConfusionCounts) -> float:
    """(TP*N/P + TN) / (2N) as in Dai et al. 2021 (= balanced accuracy); NaN when P = 0 or N = 0."""
    if counts.positives == 0 or counts.negatives == 0:
        return math.nan
    return (counts.tp * counts.negatives / counts.positives + counts.tn) / (2 * counts.negatives)


def roc_auc(scores, targets) -> float:
    """ROC AUC by the rank formula (U / (P*N)), tied scores at their average rank; NaN with one class.

    Equal to the probability that a random positive scores above a random negative, ties counting
    one half.
    """
    scores, targets = _binary_arrays(scores, targets)
    positives = int(targets.sum())
    negatives = targets.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    rank_sum = average_ranks(scores)[targets == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` in ascending order, each group of equal values given its mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2)[inverse.reshape(-1)]


# --------------------------------------------------------------------------------------------
# Thresholds


def tune_threshold(scores, targets) -> float:
    """The threshold of one class that maximises F1 on these (validation) scores; see THRESHOLD_RULE."""
    scores, targets = _binary_arrays(scores, targets)
    candidates, tp, fp = _threshold_sweep(scores, targets)
    positives = int(targets.sum())
    fn = positives - tp
    tn = (targets.size - positives) - fp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(len(candidates)), where=tp > 0)
    # lexsort's last key is the primary one: F1 descending, then correct decisions descending.
    best = np.lexsort((-(tp + tn), -f1))[0]
    return float(candidates[best])


def tune_thresholds(scores, targets) -> np.ndarray:
    """Per class (column) of [n, C] validation scores/targets, the F1-maximising threshold: [C]."""
    scores, targets = _matrix_arrays(scores, targets, "valid")
    return np.array([tune_threshold(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def _threshold_sweep(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate thresholds ascending, TP and FP at each), all candidates at once.

    Candidate k predicts positive exactly the utterances whose score is the k-th smallest distinct
    value or above, so TP and FP are suffix sums of per-value counts.
    """
    distinct, inverse = np.unique(scores, return_inverse=True)
    inverse = inverse.reshape(-1)
    per_value = np.bincount(inverse, minlength=len(distinct))
    positives_per_value = np.bincount(inverse[targets == 1], minlength=len(distinct))
    predicted = np.append(np.cumsum(per_value[::-1])[::-1], 0)
    tp = np.append(np.cumsum(positives_per_value[::-1])[::-1], 0)
    lower, upper = distinct[:-1], distinct[1:]
    midpoints = lower + (upper - lower) / 2
    # Two adjacent floats have no float between them: then the upper one separates the same way.
    midpoints = np.where(midpoints > lower, midpoints, upper)
    candidates = np.concatenate([distinct[:1], midpoints, [np.nextafter(distinct[-1], np.inf)]])
    return candidates, tp, predicted - tp


# --------------------------------------------------------------------------------------------
# Per-corpus results


def binary_row(scores, targets, threshold: float) -> dict[str, Any]:
    """Every figure of one class's one-vs-rest task at `threshold`, JSON-able (None = undefined)."""
    counts = confusion_counts(scores, targets, threshold)
    values = {
        "acc": accuracy(counts), "wacc": weighted_accuracy(counts), "precision": precision(counts),
        "recall": recall(counts), "f1": f1_score(counts), "auc": roc_auc(scores, targets),
    }
    return {"threshold": float(threshold), "positives": counts.positives, "negatives": counts.negatives,
            "tp": counts.tp, "fp": counts.fp, "tn": counts.tn, "fn": counts.fn,
            **{name: _json_float(value) for name, value in values.items()}}


def iemocap_metrics(scores, targets, thresholds, label_names: Sequence[str], split: str = "test") -> dict[str, Any]:
    """IEMOCAP: the six one-vs-rest tasks (per-class and mean Acc, F1, AUC, WAcc, ...) and, as a
    secondary figure, the 6-way argmax accuracy and unweighted average recall.

    Targets must be one-hot (one category per utterance).
    """
    scores, targets = _matrix_arrays(scores, targets, split, label_names)
    _require_one_hot(targets, split)
    result = _one_vs_rest(scores, targets, thresholds, label_names, split)
    result["multiclass"] = _multiclass(scores, targets, label_names, split, result["notes"])
    return result


def mosei_metrics(scores, targets, thresholds, label_names: Sequence[str], split: str = "test") -> dict[str, Any]:
    """CMU-MOSEI: per emotion (multi-label, any number present per utterance) WAcc, F1, AUC, plain
    Acc, precision, recall, and their means."""
    scores, targets = _matrix_arrays(scores, targets, split, label_names)
    return _one_vs_rest(scores, targets, thresholds, label_names, split)


CORPUS_METRICS = {IEMOCAP: iemocap_metrics, MOSEI: mosei_metrics}


def evaluate_scores(corpus: str, valid_scores, valid_targets, test_scores, test_targets,
                    label_names: Sequence[str], split: str = "test") -> dict[str, Any]:
    """The evaluation protocol: thresholds tuned on validation F1, applied to the evaluated split.

    Returns a JSON-able dict: corpus, split, label names, utterance counts, the threshold rule and
    thresholds, the headline and secondary metric names with their definitions, `per_class`
    (label -> figures and confusion counts), `mean` (figure -> mean over classes), for IEMOCAP
    `multiclass` (6-way figures), and `notes` (every undefined figure and why).
    """
    if corpus not in CORPUS_METRICS:
        raise ValueError(f"unknown corpus {corpus!r}: expected one of {sorted(CORPUS_METRICS)}")
    valid_scores, valid_targets = _matrix_arrays(valid_scores, valid_targets, "valid", label_names)
    thresholds = tune_thresholds(valid_scores, valid_targets)
    result = CORPUS_METRICS[corpus](test_scores, test_targets, thresholds, label_names, split)
    valid_notes = [f"{name}: no positive utterances in the valid split, so its threshold predicts "
                   f"nothing positive" for name, column in zip(label_names, valid_targets.T) if not column.any()]
    definitions = [*HEADLINE_METRICS[corpus], *SECONDARY_METRICS[corpus], "mean"]
    if "multiclass" in result:
        definitions += list(result["multiclass"])
    return {
        "corpus": corpus, "split": split, "label_names": list(label_names),
        "utterances": {"valid": int(valid_scores.shape[0]), split: int(np.asarray(test_scores).shape[0])},
        "threshold_rule": THRESHOLD_RULE,
        "thresholds": {name: float(t) for name, t in zip(label_names, thresholds)},
        "headline_metrics": list(HEADLINE_METRICS[corpus]),
        "secondary_metrics": list(SECONDARY_METRICS[corpus]),
        "definitions": {name: DEFINITIONS[name] for name in definitions},
        **result,
        "notes": valid_notes + result["notes"],
    }


def _one_vs_rest(scores: np.ndarray, targets: np.ndarray, thresholds, label_names: Sequence[str],
                 split: str) -> dict[str, Any]:
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.shape[0] != len(label_names):
        raise ValueError(f"{len(thresholds)} thresholds for {len(label_names)} labels {list(label_names)}")
    per_class = {name: binary_row(scores[:, c], targets[:, c], thresholds[c]) for c, name in enumerate(label_names)}
    notes = [_undefined_note(name, row, split) for name, row in per_class.items() if row["auc"] is None]
    return {"per_class": per_class, "mean": _means(per_class, notes), "notes": notes}


def _undefined_note(name: str, row: dict, split: str) -> str:
    only = "negative" if row["positives"] == 0 else "positive"
    return (f"{name}: only {only} utterances in the {split} split, so its AUC and WAcc are undefined "
            f"(null) and left out of their means")


def _means(per_class: dict[str, dict], notes: list[str]) -> dict[str, float | None]:
    means = {}
    for metric in BINARY_METRICS:
        defined = [row[metric] for row in per_class.values() if row[metric] is not None]
        means[metric] = float(np.mean(defined)) if defined else None
        if len(defined) < len(per_class):
            notes.append(f"mean {metric}: over {len(defined)} of {len(per_class)} classes")
    return means


def _multiclass(scores: np.ndarray, targets: np.ndarray, label_names: Sequence[str], split: str,
                notes: list[str]) -> dict[str, float | None]:
    predicted = np.argmax(scores, axis=1)
    actual = np.argmax(targets, axis=1)
    recalls = []
    for c, name in enumerate(label_names):
        members = actual == c
        if members.any():
            recalls.append(float(np.mean(predicted[members] == c)))
        else:
            notes.append(f"{name}: no utterances in the {split} split, left out of the 6-way UAR")
    return {"acc_6way": float(np.mean(predicted == actual)), "uar_6way": float(np.mean(recalls)) if recalls else None}


# --------------------------------------------------------------------------------------------
# CMU-MOSEI sentiment (`mer train --task sentiment`): regression in [-3, 3], scored as MulT and MISA
# score it (their eval_mosei_senti), so the figures compare with theirs.

SENTIMENT = "sentiment"
SENTIMENT_HEADLINE = ("mae", "pearson_r", "acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "acc7")
SENTIMENT_SECONDARY = ("acc5",)
LOWER_IS_BETTER = ("mae",)   # every other figure (here and above): higher is better
SENTIMENT_DEFINITIONS = {
    "mae": "MAE: mean absolute error |prediction - target| over the utterances (lower is better); the "
           "raw regression output, not clipped",
    "pearson_r": "Pearson r: the correlation coefficient of predictions and targets; undefined when either "
                 "is constant",
    "acc2_has0": "Acc-2 (has0): binary accuracy of negative vs non-negative, over every utterance: target "
                 ">= 0 against prediction >= 0 (zeros count as non-negative)",
    "f1_has0": "F1 (has0): weighted F1 of the has0 task: each class's F1 (negative, non-negative) weighted by "
               "its share of the targets (scikit-learn's average='weighted', as MulT and MISA report it)",
    "acc2_non0": "Acc-2 (non0): binary accuracy of negative vs positive over the utterances whose target is "
                 "not 0: target > 0 against prediction > 0 (a prediction of exactly 0 counts as negative)",
    "f1_non0": "F1 (non0): weighted F1 of the non0 task (the two classes' F1 weighted by their share of "
               "the targets, scikit-learn's average='weighted')",
    "acc7": "Acc-7: 7-class accuracy; prediction and target clipped to [-3, 3], then rounded to the nearest "
            "integer (numpy's round, halves to even, as the reference code), compared for equality",
    "acc5": "Acc-5: as Acc-7 with both clipped to [-2, 2] (5 classes)",
}


def sentiment_metrics(predictions, targets, split: str = "test") -> dict[str, Any]:
    """Every sentiment figure of one split (SENTIMENT_DEFINITIONS), JSON-able (None = undefined).

    Shaped like `evaluate_scores`' result (label_names ["sentiment"], `per_class` and `mean` hold
    the same figures) so that the report and `mer compare` read it the same way; "task" says which.
    """
    predicted, actual = _sentiment_arrays(predictions, targets, split)
    notes: list[str] = []
    nonzero = actual != 0
    figures = {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "pearson_r": _pearson(predicted, actual),
        "acc2_has0": accuracy(confusion_counts(predicted, actual >= 0, 0.0)),
        "f1_has0": weighted_f1(confusion_counts(predicted, actual >= 0, 0.0)),
        "acc2_non0": None, "f1_non0": None,
        "acc7": rounded_accuracy(predicted, actual, 3),
        "acc5": rounded_accuracy(predicted, actual, 2),
    }
    if nonzero.any():
        counts = confusion_counts(predicted[nonzero], actual[nonzero] > 0, np.nextafter(0.0, 1.0))
        figures.update(acc2_non0=accuracy(counts), f1_non0=weighted_f1(counts))
    else:
        notes.append(f"every {split} target is 0, so Acc-2 (non0) and F1 (non0) are undefined (null)")
    if figures["pearson_r"] is None:
        notes.append(f"predictions or targets are constant on the {split} split, so Pearson r is undefined (null)")
    row = {"utterances": int(actual.size), "nonzero": int(nonzero.sum()), **figures}
    return {
        "task": SENTIMENT, "corpus": MOSEI, "split": split, "label_names": [SENTIMENT],
        "utterances": {split: int(actual.size)},
        "headline_metrics": list(SENTIMENT_HEADLINE), "secondary_metrics": list(SENTIMENT_SECONDARY),
        "lower_is_better": list(LOWER_IS_BETTER),
        "definitions": dict(SENTIMENT_DEFINITIONS),
        "per_class": {SENTIMENT: row}, "mean": dict(figures), "notes": notes,
    }


def weighted_f1(counts: ConfusionCounts) -> float:
    """F1 of both classes of a binary task, weighted by their share of the targets (scikit-learn's
    average='weighted': the negative class's F1 is that of the swapped counts)."""
    negative = ConfusionCounts(tp=counts.tn, fp=counts.fn, tn=counts.tp, fn=counts.fp)
    return (counts.positives * f1_score(counts) + counts.negatives * f1_score(negative)) / counts.total


def rounded_accuracy(predictions: np.ndarray, targets: np.ndarray, limit: int) -> float:
    """Share of utterances whose prediction and target, clipped to [-limit, limit] and rounded, agree."""
    def classes(values):
        return np.round(np.clip(values, -limit, limit))
    return float(np.mean(classes(predictions) == classes(targets)))


def _pearson(predictions: np.ndarray, targets: np.ndarray) -> float | None:
    if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(targets) == 0:
        return None
    return float(np.corrcoef(predictions, targets)[0, 1])


def _sentiment_arrays(predictions, targets, split: str) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predictions, dtype=np.float64).reshape(-1)
    actual = np.asarray(targets, dtype=np.float64).reshape(-1)
    if predicted.shape != actual.shape:
        raise ValueError(f"{split} split: {predicted.size} sentiment predictions for {actual.size} targets")
    if predicted.size == 0:
        raise ValueError(f"{split} split: no utterances")
    for name, values in (("prediction", predicted), ("target", actual)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{split} split: non-finite {name} at row {int(np.argwhere(~np.isfinite(values))[0][0])}")
    return predicted, actual


# Single-label protocols (IEMOCAP 4-class, hap+exc merged): one C-way decision per utterance


SINGLE_LABEL_HEADLINE = ("recall", "f1")
SINGLE_LABEL_SECONDARY = ("precision",)
SINGLE_LABEL_DECISION = "the argmax of the C softmax scores (no thresholds; ties go to the first label)"
SINGLE_LABEL_DEFINITIONS = {
    "wa": "WA (weighted accuracy): overall accuracy, correct / all utterances of the split (each class weighted "
          "by its size), as the IEMOCAP 4-class literature reports it",
    "ua": "UA (unweighted accuracy): the mean over classes of each class's recall (unweighted average recall); "
          "classes without utterances in the split are left out",
    "recall": "recall of a class: its utterances predicted as it / its utterances; the mean is UA",
    "precision": "precision of a class: utterances predicted as it that are it / utterances predicted as it; "
                 "0 when none is predicted as it",
    "f1": "F1 of a class: 2TP / (2TP + FP + FN) of the argmax decision, 0 when TP = 0; the mean is macro F1",
    "macro_f1": "macro F1: unweighted mean of the per-class F1 over all classes",
    "confusion_matrix": "confusion matrix: counts[i][j] = utterances of class i (row, actual) predicted as "
                        "class j (column)",
}


def single_label_metrics(corpus: str, scores, targets, label_names: Sequence[str], split: str = "test",
                         valid_utterances: int | None = None) -> dict[str, Any]:
    """The metrics of a single-label protocol: WA, UA, per-class precision/recall/F1, macro F1 and the
    confusion matrix of the argmax decision, each named (SINGLE_LABEL_DEFINITIONS). Targets one-hot.

    Laid out like `evaluate_scores` (per_class, mean, headline metrics) so reports and comparisons
    read both; `overall` holds WA, UA and macro F1."""
    scores, targets = _matrix_arrays(scores, targets, split, label_names)
    _require_one_hot(targets, split)
    predicted, actual = np.argmax(scores, axis=1), np.argmax(targets, axis=1)
    size = len(label_names)
    confusion = np.bincount(actual * size + predicted, minlength=size * size).reshape(size, size)
    per_class, notes = {}, []
    for c, name in enumerate(label_names):
        counts = ConfusionCounts(tp=int(confusion[c, c]), fp=int(confusion[:, c].sum() - confusion[c, c]),
                                 fn=int(confusion[c].sum() - confusion[c, c]), tn=0)
        per_class[name] = {"support": counts.positives, "predicted": counts.tp + counts.fp, "tp": counts.tp,
                           "precision": precision(counts), "recall": recall(counts), "f1": f1_score(counts)}
        if counts.positives == 0:
            notes.append(f"{name}: no utterances in the {split} split, left out of UA")
    recalls = [row["recall"] for row in per_class.values() if row["support"]]
    ua = float(np.mean(recalls)) if recalls else None
    macro_f1 = float(np.mean([row["f1"] for row in per_class.values()]))
    overall = {"wa": float(np.mean(predicted == actual)), "ua": ua, "macro_f1": macro_f1}
    return {
        "corpus": corpus, "split": split, "task": SINGLE_LABEL, "label_names": list(label_names),
        "utterances": {"valid": valid_utterances, split: int(scores.shape[0])},
        "decision_rule": SINGLE_LABEL_DECISION,
        "headline_metrics": list(SINGLE_LABEL_HEADLINE), "secondary_metrics": list(SINGLE_LABEL_SECONDARY),
        "definitions": dict(SINGLE_LABEL_DEFINITIONS),
        "overall": overall, "per_class": per_class,
        "mean": {"recall": ua, "precision": float(np.mean([row["precision"] for row in per_class.values()])),
                 "f1": macro_f1},
        "confusion_matrix": {"rows": "actual", "columns": "predicted", "labels": list(label_names),
                             "counts": confusion.tolist()},
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------
# Input checks: bad input fails here with a reason, not as a silent wrong number.


def _binary_arrays(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 1 or targets.shape != scores.shape:
        raise ValueError(f"expected 1-D scores and targets of one length, got shapes {scores.shape} and "
                         f"{targets.shape}")
    if scores.size == 0:
        raise ValueError("no utterances: scores and targets are empty")
    _check_values(scores, targets, "")
    return scores, targets.astype(np.int64)


def _matrix_arrays(scores, targets, split: str, label_names: Sequence[str] | None = None):
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(f"{split} split: expected scores and targets of one shape [n, C], got {scores.shape} "
                         f"and {targets.shape}")
    if scores.shape[0] == 0:
        raise ValueError(f"{split} split: no utterances")
    if label_names is not None and scores.shape[1] != len(label_names):
        raise ValueError(f"{split} split: {scores.shape[1]} score columns for {len(label_names)} labels "
                         f"{list(label_names)}")
    _check_values(scores, targets, f"{split} split: ")
    return scores, targets.astype(np.int64)


def _check_values(scores: np.ndarray, targets: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(scores)):
        row = int(np.argwhere(~np.isfinite(scores))[0][0])
        raise ValueError(f"{where}non-finite score (NaN or inf) at row {row}")
    if not np.all((targets == 0) | (targets == 1)):
        row = int(np.argwhere((targets != 0) & (targets != 1))[0][0])
        raise ValueError(f"{where}targets must be 0 or 1; row {row} holds {np.atleast_1d(targets[row]).tolist()}")


def _require_one_hot(targets: np.ndarray, split: str) -> None:
    per_row = targets.sum(axis=1)
    if not np.all(per_row == 1):
        row = int(np.argwhere(per_row != 1)[0][0])
        raise ValueError(f"{split} split: IEMOCAP targets must be one-hot (one category per utterance); row {row} "
                         f"has {int(per_row[row])} positive labels")


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
