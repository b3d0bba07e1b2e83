"""Markdown, JSON and terminal renderings of an evaluation (the dict of `mer_data.model.metrics.evaluate_scores`).

Every table's header names its metric and how its threshold was chosen, values are percent with one
decimal like the paper's tables, and the paper's row for the same model sits under ours where the
paper has that figure. The dict may carry a "run" entry (model, modalities, top_p, epoch, split,
path) added by the caller; the model named there picks the paper row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer_data.model.metrics import IEMOCAP, LOWER_IS_BETTER, MOSEI, SENTIMENT, SINGLE_LABEL

METRICS_JSON = "metrics.json"
METRICS_MARKDOWN = "metrics.md"

HEADERS = {
    "acc": "Acc (plain binary accuracy, threshold tuned on valid F1)",
    "wacc": "WAcc = (TP·N/P + TN)/(2N) (weighted accuracy, threshold tuned on valid F1)",
    "f1": "F1 (positive class, threshold tuned on valid F1)",
    "auc": "AUC (ROC area of the scores, threshold-free)",
}
# ASCII only: terminals without UTF-8 print these.
TERMINAL_LABELS = {"acc": "Acc (plain binary)", "wacc": "WAcc (TP*N/P+TN)/2N", "f1": "F1", "auc": "AUC (ROC)"}
# The sentiment task's figures (mer_data.model.metrics.SENTIMENT_DEFINITIONS): MAE and Pearson r as plain
# numbers, the accuracies and F1 in percent.
SENTIMENT_HEADERS = {
    "mae": "MAE (mean absolute error, lower is better)",
    "pearson_r": "Pearson r (correlation)",
    "acc2_has0": "Acc-2 (has0: negative vs non-negative, all utterances), %",
    "f1_has0": "F1 (has0, weighted over both classes), %",
    "acc2_non0": "Acc-2 (non0: negative vs positive, zero targets left out), %",
    "f1_non0": "F1 (non0, weighted over both classes), %",
    "acc7": "Acc-7 (clipped to [-3, 3], rounded), %",
    "acc5": "Acc-5 (clipped to [-2, 2], rounded), %",
}
SENTIMENT_TERMINAL = {"mae": "MAE", "pearson_r": "Pearson r", "acc2_has0": "Acc-2 has0 %", "f1_has0": "F1 has0 %",
                      "acc2_non0": "Acc-2 non0 %", "f1_non0": "F1 non0 %", "acc7": "Acc-7 %", "acc5": "Acc-5 %"}
HEADERS.update(SENTIMENT_HEADERS)
TERMINAL_LABELS.update(SENTIMENT_TERMINAL)
PLAIN_NUMBER_METRICS = ("mae", "pearson_r")   # shown as they are, not in percent
MULTICLASS_LABELS = {"acc_6way": "6-way Acc (argmax accuracy)", "uar_6way": "6-way UAR (mean per-class recall)"}
# A single-label protocol's figures (mer_data.model.metrics.single_label_metrics): per-class columns, then the overall ones.
SINGLE_LABEL_HEADERS = {
    "recall": "recall per class (argmax decision); mean = UA, unweighted accuracy",
    "f1": "F1 per class (argmax decision); mean = macro F1",
    "precision": "precision per class (argmax decision)",
}
SINGLE_LABEL_TERMINAL = {"recall": "recall (mean = UA)", "f1": "F1 (mean = macro F1)", "precision": "precision"}
OVERALL_LABELS = {"wa": "WA (overall accuracy)", "ua": "UA (mean per-class recall)", "macro_f1": "macro F1"}
CORPUS_TITLES = {IEMOCAP: "IEMOCAP", MOSEI: "CMU-MOSEI"}
PAPER_CITATION = 'Dai, Cahyawijaya, Liu, Fung, "Multimodal End-to-End Sparse Model for Emotion Recognition", NAACL 2021'
MISSING = "–"
UNDEFINED = "n/a"


@dataclass(frozen=True)
class PaperRow:
    """One model's published figures: metric -> label (or "mean") -> percent."""

    model: str
    values: dict[str, dict[str, float]]


def _paper_row(model: str, accuracy_metric: str, labels: tuple[str, ...], table_cells: str) -> PaperRow:
    """A row as printed in the paper: "acc/f1" cells per label in the paper's column order, then the mean."""
    pairs = [tuple(float(v) for v in cell.split("/")) for cell in table_cells.split()]
    if len(pairs) != len(labels) + 1:
        raise ValueError(f"paper row {model}: {len(pairs)} cells for {len(labels)} labels and the mean")
    keys = (*labels, "mean")
    return PaperRow(model, {accuracy_metric: {k: p[0] for k, p in zip(keys, pairs)},
                            "f1": {k: p[1] for k, p in zip(keys, pairs)}})


# Dai et al., NAACL 2021 (PAPER_CITATION), the authors' result tables as published, in percent.
# IEMOCAP: per-emotion plain binary accuracy / F1 with validation-tuned thresholds (random split,
# dai2021); CMU-MOSEI: per-emotion weighted accuracy / F1. The papers' column orders are kept here;
# the rows are matched to our label names, whatever their order.
_PAPER_IEMOCAP_LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")
_PAPER_MOSEI_LABELS = ("anger", "disgust", "fear", "happy", "sad", "surprise")
PAPER_RESULTS: dict[str, dict[str, PaperRow]] = {
    IEMOCAP: {
        "fe2e": _paper_row("FE2E", "acc", _PAPER_IEMOCAP_LABELS,
                           "88.7/63.9 89.1/61.9 71.2/57.8 90.0/44.8 79.1/58.4 89.1/65.7 84.5/58.8"),
        "mesm": _paper_row("MESM (p=0.7)", "acc", _PAPER_IEMOCAP_LABELS,
                           "88.2/62.8 88.3/61.2 74.9/58.4 89.5/47.3 77.0/52.0 88.6/62.2 84.4/57.4"),
        # The paper's late-fusion baselines ran on the SDK's precomputed features, not on ours.
        "lf-rnn": _paper_row("LF-LSTM (precomputed SDK features)", "acc", _PAPER_IEMOCAP_LABELS,
                             "71.2/49.4 79.3/57.2 68.2/51.5 67.2/37.6 66.5/47.0 78.2/54.0 71.8/49.5"),
        "lf-transformer": _paper_row("LF-Transformer (precomputed SDK features)", "acc", _PAPER_IEMOCAP_LABELS,
                                     "81.9/50.7 85.3/57.3 60.5/49.3 85.2/37.6 72.4/49.7 87.4/57.4 78.8/50.3"),
    },
    MOSEI: {
        "fe2e": _paper_row("FE2E", "wacc", _PAPER_MOSEI_LABELS,
                           "67.0/49.6 77.7/57.1 63.8/26.8 65.4/72.6 65.2/49.0 66.7/29.1 67.6/47.4"),
        "mesm": _paper_row("MESM (p=0.5)", "wacc", _PAPER_MOSEI_LABELS,
                           "66.8/49.3 75.6/56.4 65.8/28.9 64.1/72.3 63.0/46.6 65.7/27.2 66.8/46.8"),
        "lf-rnn": _paper_row("LF-LSTM (precomputed SDK features)", "wacc", _PAPER_MOSEI_LABELS,
                             "64.5/47.1 70.5/49.8 61.7/22.2 61.3/73.2 63.4/47.2 57.1/20.6 63.1/43.3"),
        "lf-transformer": _paper_row("LF-Transformer (precomputed SDK features)", "wacc", _PAPER_MOSEI_LABELS,
                                     "65.3/47.7 74.4/51.9 62.1/24.0 60.6/72.9 60.1/45.5 62.1/24.2 64.1/44.4"),
    },
}


def paper_row(metrics: dict[str, Any]) -> PaperRow | None:
    """The paper's row for the run's model on the run's corpus, or None (no model named, or none published)."""
    model = (metrics.get("run") or {}).get("model")
    return PAPER_RESULTS.get(metrics["corpus"], {}).get(str(model).lower()) if model else None


# --------------------------------------------------------------------------------------------
# Files


def write_report(metrics: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write `metrics.json` (strict JSON: no NaN) and `metrics.md` into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / METRICS_JSON, "markdown": out_dir / METRICS_MARKDOWN}
    paths["json"].write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(metrics), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------
# Markdown


def render_markdown(metrics: dict[str, Any]) -> str:
    """The whole report as Markdown: headline tables, secondary tables, thresholds and counts,
    definitions, notes."""
    if metrics.get("task") == SENTIMENT:
        return render_sentiment_markdown(metrics)
    if is_single_label(metrics):
        return _single_label_markdown(metrics)
    names = metrics["label_names"]
    reference = paper_row(metrics)
    lines = [f"# Evaluation: {_title(metrics)}", "", *_markdown_preamble(metrics, reference), ""]
    for metric in metrics["headline_metrics"]:
        lines += _markdown_metric_table(metrics, metric, reference, names, secondary=False)
    for metric in metrics["secondary_metrics"]:
        if metric in HEADERS:
            lines += _markdown_metric_table(metrics, metric, reference, names, secondary=True)
    if "multiclass" in metrics:
        lines += _markdown_multiclass(metrics)
    lines += _markdown_counts(metrics)
    lines += ["## Definitions", "", f"- threshold: {metrics['threshold_rule']}"]
    lines += [f"- {text}" for text in metrics["definitions"].values()]
    lines.append("")
    if metrics["notes"]:
        lines += ["## Notes", "", *[f"- {note}" for note in metrics["notes"]], ""]
    return "\n".join(lines)


def describe_kept_share(shares: dict[str, list[float]]) -> str:
    """MESM's kept shares as "a 0.41/0.41/0.44/0.50, v ..." (the epoch log and the report)."""
    return ", ".join(f"{m} " + "/".join(f"{s:.2f}" for s in levels) for m, levels in shares.items())


def _title(metrics: dict[str, Any]) -> str:
    return f"{CORPUS_TITLES.get(metrics['corpus'], metrics['corpus'])}, {metrics['split']} split"


def _run_name(metrics: dict[str, Any]) -> str:
    run = metrics.get("run") or {}
    if not run.get("model"):
        return "this run"
    details = [f"modalities {run['modalities']}"] if run.get("modalities") else []
    if run.get("top_p") is not None:
        details.append(f"p={run['top_p']}")
    return f"this run: {str(run['model']).upper()}" + (f" ({', '.join(details)})" if details else "")


def _markdown_preamble(metrics: dict[str, Any], reference: PaperRow | None) -> list[str]:
    utterances = metrics["utterances"]
    lines = [f"{utterances[metrics['split']]} {metrics['split']} utterances. Thresholds: per class, tuned to "
             f"maximise F1 on the {utterances['valid']} valid utterances, then applied unchanged. Values in "
             f"percent; **mean** = unweighted mean over the classes."]
    run = metrics.get("run") or {}
    if run:
        lines += ["", "Run: " + ", ".join(f"{key} {value}" for key, value in run.items()
                                          if value is not None and key != "kept_share") + "."]
    if run.get("kept_share"):
        lines += ["", "Positions the sparse extractors kept on this split (share per resolution, the stem's "
                      f"first): {describe_kept_share(run['kept_share'])}."]
    if reference:
        lines += ["", f"Paper rows: {reference.model} as published in {PAPER_CITATION}, on the real corpus with "
                      f"the authors' split (dai2021): comparable only when this run used the same data and split."]
    return lines


def _markdown_metric_table(metrics: dict[str, Any], metric: str, reference: PaperRow | None, names: list[str],
                           secondary: bool) -> list[str]:
    heading = ("Secondary: " if secondary else "") + HEADERS[metric] + ", %"
    lines = [f"## {heading}", "", "| | " + " | ".join(names) + " | mean |",
             "|---|" + "---:|" * (len(names) + 1)]
    lines.append(_markdown_row(_run_name(metrics), _run_cells(metrics, metric)))
    if reference and metric in reference.values:
        label = f"paper {reference.model}, Dai et al. 2021"
        lines.append(_markdown_row(label, _paper_cells(reference, metric, names)))
    return lines + [""]


def _markdown_row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _markdown_multiclass(metrics: dict[str, Any]) -> list[str]:
    multiclass = metrics["multiclass"]
    return ["## Secondary: 6-way classification (argmax over the scores, no thresholds), %", "",
            "| | " + " | ".join(MULTICLASS_LABELS[k] for k in multiclass) + " |", "|---|" + "---:|" * len(multiclass),
            _markdown_row(_run_name(metrics), [_percent(v) for v in multiclass.values()]), ""]


def _markdown_counts(metrics: dict[str, Any]) -> list[str]:
    lines = [f"## Thresholds and confusion counts ({metrics['split']} split)", "",
             "| class | threshold | P | N | TP | FP | TN | FN | precision % | recall % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in metrics["per_class"].items():
        counts = [str(row[k]) for k in ("positives", "negatives", "tp", "fp", "tn", "fn")]
        lines.append(_markdown_row(name, [f"{row['threshold']:.4f}", *counts, _percent(row["precision"]),
                                          _percent(row["recall"])]))
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Terminal


def terminal_table(metrics: dict[str, Any]) -> str:
    """A compact plain-text table for `mer evaluate`: one line per figure, classes as columns."""
    if metrics.get("task") == SENTIMENT:
        return sentiment_terminal_table(metrics)
    if is_single_label(metrics):
        return _single_label_terminal(metrics)
    names = metrics["label_names"]
    reference = paper_row(metrics)
    rows = [(TERMINAL_LABELS[m], _run_cells(metrics, m))
            for m in (*metrics["headline_metrics"], *metrics["secondary_metrics"]) if m in TERMINAL_LABELS]
    if reference:
        rows += [(f"paper {reference.model} {TERMINAL_LABELS[m]}", _paper_cells(reference, m, names))
                 for m in metrics["headline_metrics"] if m in reference.values]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(header), *(len(cells[i]) for _, cells in rows)) for i, header in enumerate([*names, "mean"])]
    lines = [f"{_title(metrics)}: {metrics['utterances'][metrics['split']]} utterances; thresholds tuned per class on "
             f"valid F1 ({metrics['utterances']['valid']} utterances); values in %",
             _terminal_line("", [*names, "mean"], label_width, widths)]
    lines += [_terminal_line(label, cells, label_width, widths) for label, cells in rows]
    if "multiclass" in metrics:
        lines.append("; ".join(f"{MULTICLASS_LABELS[k]}: {_percent(v)}" for k, v in metrics["multiclass"].items()))
    lines += [f"note: {note}" for note in metrics["notes"]]
    return "\n".join(lines)


def _terminal_line(label: str, cells: list[str], label_width: int, widths: list[int]) -> str:
    return f"{label:<{label_width}}  " + "  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths))


# --------------------------------------------------------------------------------------------
# Cells


def _run_cells(metrics: dict[str, Any], metric: str) -> list[str]:
    return [_percent(metrics["per_class"][name][metric]) for name in metrics["label_names"]] + \
           [_percent(metrics["mean"][metric])]


def _paper_cells(reference: PaperRow, metric: str, names: list[str]) -> list[str]:
    """The paper's figures under our columns; its mean only when our classes are exactly its classes."""
    published = reference.values[metric]
    cells = [f"{published[name]:.1f}" if name in published else MISSING for name in names]
    same_classes = set(names) == set(published) - {"mean"}
    return cells + [f"{published['mean']:.1f}" if same_classes else MISSING]


def _percent(value: float | None) -> str:
    return UNDEFINED if value is None else f"{100 * value:.1f}"


# --------------------------------------------------------------------------------------------
# The sentiment task (mer_data.model.metrics.sentiment_metrics)


def format_figure(metric: str, value: float | None) -> str:
    """A figure as the tables show it: MAE and Pearson r with three decimals, the others in percent."""
    if value is None:
        return UNDEFINED
    return f"{value:.3f}" if metric in PLAIN_NUMBER_METRICS else f"{100 * value:.1f}"


def is_lower_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def render_sentiment_markdown(metrics: dict[str, Any]) -> str:
    figures = [*metrics["headline_metrics"], *metrics["secondary_metrics"]]
    row = metrics["mean"]
    utterances = metrics["utterances"]
    lines = [f"# Evaluation: CMU-MOSEI sentiment, {metrics['split']} split", "",
             f"{utterances[metrics['split']]} {metrics['split']} utterances "
             f"({metrics['per_class'][SENTIMENT]['nonzero']} with a non-zero target); regression in [-3, 3], "
             "nothing tuned on validation. MAE and Pearson r as numbers, the others in percent.", ""]
    run = metrics.get("run") or {}
    if run:
        lines += ["Run: " + ", ".join(f"{key} {value}" for key, value in run.items() if value is not None) + ".", ""]
    lines += ["| | " + " | ".join(SENTIMENT_HEADERS[m] for m in figures) + " |", "|---|" + "---:|" * len(figures),
              _markdown_row(_run_name(metrics), [format_figure(m, row[m]) for m in figures]), ""]
    lines += ["## Definitions", "", *[f"- {text}" for text in metrics["definitions"].values()], ""]
    if metrics["notes"]:
        lines += ["## Notes", "", *[f"- {note}" for note in metrics["notes"]], ""]
    return "\n".join(lines)


# Single-label protocols (IEMOCAP 4-class)


def is_single_label(metrics: dict[str, Any]) -> bool:
    return metrics.get("task") == SINGLE_LABEL


def metric_headers(metrics: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(Markdown headers, terminal labels) of the per-class figures of an evaluation."""
    return (SINGLE_LABEL_HEADERS, SINGLE_LABEL_TERMINAL) if is_single_label(metrics) else (HEADERS, TERMINAL_LABELS)


def _single_label_markdown(metrics: dict[str, Any]) -> str:
    names, overall = metrics["label_names"], metrics["overall"]
    lines = [f"# Evaluation: {_title(metrics)}", "",
             f"{metrics['utterances'][metrics['split']]} {metrics['split']} utterances, {len(names)} classes, "
             f"single-label. Decision: {metrics['decision_rule']}. Values in percent.", ""]
    run = metrics.get("run") or {}
    if run:
        lines += ["Run: " + ", ".join(f"{key} {value}" for key, value in run.items()
                                     if value is not None and key != "kept_share") + ".", ""]
    lines += ["## " + ", ".join(OVERALL_LABELS.values()) + ", %", "",
              "| | " + " | ".join(OVERALL_LABELS.values()) + " |", "|---|" + "---:|" * len(OVERALL_LABELS),
              _markdown_row(_run_name(metrics), [_percent(overall[k]) for k in OVERALL_LABELS]), "",
              "## Per class, %", "", "| class | utterances | predicted | precision | recall | F1 |",
              "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(_markdown_row(name, [str(row["support"]), str(row["predicted"]),
                                          *(_percent(row[k]) for k in ("precision", "recall", "f1"))]))
    mean = metrics["mean"]
    lines += [_markdown_row("mean", ["", "", *(_percent(mean[k]) for k in ("precision", "recall", "f1"))]), ""]
    lines += ["## Confusion matrix (rows: actual class, columns: predicted class)", "",
              "| actual \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [_markdown_row(name, [str(v) for v in counts])
              for name, counts in zip(names, metrics["confusion_matrix"]["counts"])]
    lines += ["", "## Definitions", "", *[f"- {text}" for text in metrics["definitions"].values()], ""]
    if metrics["notes"]:
        lines += ["## Notes", "", *[f"- {note}" for note in metrics["notes"]], ""]
    return "\n".join(lines)


def sentiment_terminal_table(metrics: dict[str, Any]) -> str:
    figures = [*metrics["headline_metrics"], *metrics["secondary_metrics"]]
    lines = [f"CMU-MOSEI sentiment, {metrics['split']} split: {metrics['utterances'][metrics['split']]} utterances"]
    lines += [f"{SENTIMENT_TERMINAL[m]:<13} {format_figure(m, metrics['mean'][m]):>7}" for m in figures]
    lines += [f"note: {note}" for note in metrics["notes"]]
    return "\n".join(lines)


def _single_label_terminal(metrics: dict[str, Any]) -> str:
    names = metrics["label_names"]
    rows = [(SINGLE_LABEL_TERMINAL[m], _run_cells(metrics, m))
            for m in (*metrics["headline_metrics"], *metrics["secondary_metrics"])]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(header), *(len(cells[i]) for _, cells in rows)) for i, header in enumerate([*names, "mean"])]
    lines = [f"{_title(metrics)}: {metrics['utterances'][metrics['split']]} utterances; single-label, argmax "
             "decision; values in %",
             "; ".join(f"{OVERALL_LABELS[k]}: {_percent(v)}" for k, v in metrics["overall"].items()),
             _terminal_line("", [*names, "mean"], label_width, widths)]
    lines += [_terminal_line(label, cells, label_width, widths) for label, cells in rows]
    lines += [f"note: {note}" for note in metrics["notes"]]
    return "\n".join(lines)
