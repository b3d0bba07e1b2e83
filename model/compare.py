"""`mer compare`: trained runs side by side, the paper's metrics and what each run cost.

    comparison = compare_runs(["runs/fe2e", "runs/mesm", "runs/lf-rnn"], split="test", out=Path("cmp"))
    print(comparison.markdown)          # cmp/compare.md, cmp/compare.html, cmp/compare.json

Any mix of end-to-end runs (FE2E, MESM) and two-phase baseline runs (LF-RNN, LF-Transformer) of one
corpus and label space. Per run: the evaluated split's metrics from RUN/eval-<split>/metrics.json
(`mer evaluate` is run first where that file is missing), and the run's profile (model/profile.py:
parameters, counted FLOPs per sample, training time, samples/s). The tables use model/report.py's
metric names; values are percent with one decimal, the best per column in bold. The HTML page is
self-contained (inline SVG bar plots, one <style> block, no script, no URL). docs/comparison.md
says what each number measures and what it leaves out.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mer_data.model import checkpoint as ckpt
from mer_data.model.kinds import display_name
from mer_data.model.shard_check import data_changes
from mer_data.model.report import (CORPUS_TITLES, METRICS_JSON, OVERALL_LABELS, PLAIN_NUMBER_METRICS, format_figure,
                          is_lower_better, is_single_label, metric_headers)

MEAN = "mean"
MISSING = "–"
UNDEFINED = "n/a"
REQUIRED_METRICS_KEYS = ("corpus", "split", "label_names", "utterances", "headline_metrics", "per_class", "mean")
TWO_PHASE_MARK = "†"
WHOLE_EPOCH_MARK = "*"
# Per figure, a colour per run (matplotlib's tab10), repeated after ten runs.
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")


@dataclass
class ComparisonRow:
    """One run: its label, its evaluation (metrics.json as written) and its profile (None if unavailable)."""

    label: str
    run: str
    model: str
    modalities: str
    top_p: float | None
    metrics: dict
    profile: dict | None
    notes: list[str] = field(default_factory=list)

    @property
    def two_phase(self) -> bool:
        return bool(self.profile and self.profile.get("kind") == "two-phase")

    def value(self, metric: str, column: str) -> float | None:
        """A metric of one class, or its mean (column "mean"), as a fraction; None where undefined."""
        source = self.metrics["mean"] if column == MEAN else self.metrics["per_class"][column]
        return source.get(metric)


@dataclass
class CostColumn:
    """A column of the summary's cost part: its header, how to read it from a row, its display."""

    key: str
    header: str
    read: Callable[[ComparisonRow], float | None]
    lower_is_better: bool
    from_training_time: bool = False     # takes the whole-epoch mark where the run lacks train_seconds


@dataclass
class Comparison:
    corpus: str
    split: str
    label_names: list[str]
    metrics: list[str]               # the corpus's headline metrics, e.g. acc, f1, auc
    rows: list[ComparisonRow]
    notes: list[str] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return render_markdown(self)

    @property
    def headers(self) -> dict[str, str]:
        """The tables' headers of the runs' kind of evaluation (one-vs-rest or single-label)."""
        return metric_headers(self.rows[0].metrics)[0]

    @property
    def terminal_labels(self) -> dict[str, str]:
        return metric_headers(self.rows[0].metrics)[1]

    @property
    def overall(self) -> list[str]:
        """The single-label runs' overall figures (WA, UA, macro F1) shown in the summary; none otherwise."""
        return list(OVERALL_LABELS) if is_single_label(self.rows[0].metrics) else []

    @property
    def html(self) -> str:
        return render_html(self)

    def to_dict(self) -> dict[str, Any]:
        import mer_data

        first = self.rows[0].metrics
        return {
            "tool": {"name": "mer-data", "version": mer_data.__version__},
            "corpus": self.corpus, "split": self.split, "label_names": self.label_names,
            "metrics": self.metrics, "headers": {m: self.headers[m] for m in self.metrics},
            "threshold_rule": first.get("threshold_rule"), "definitions": first.get("definitions", {}),
            "best": best_labels(self),
            "rows": [{"label": r.label, "run": r.run, "model": r.model, "modalities": r.modalities,
                      "top_p": r.top_p, "kind": (r.profile or {}).get("kind"),
                      "values": {m: {c: r.value(m, c) for c in [*self.label_names, MEAN]} for m in self.metrics},
                      "metrics": r.metrics, "profile": r.profile, "notes": r.notes} for r in self.rows],
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write(self, out: Path) -> dict[str, Path]:
        """compare.md, compare.html and compare.json in `out` (each written atomically)."""
        from mer_data.shards.atomic import atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / "compare.md", "html": out / "compare.html", "json": out / "compare.json"}
        atomic_write_text(paths["markdown"], self.markdown)
        atomic_write_text(paths["html"], self.html)
        atomic_write_text(paths["json"], self.to_json())
        return paths


# --------------------------------------------------------------------------------------------
# Gathering


def compare_runs(runs: Sequence[Path | str], *, split: str = "test", out: Path | str | None = None,
                 profile_split: str = "valid") -> Comparison:
    """Compare `runs` on `split`; with `out`, also write compare.md/.html/.json there.

    Runs are profiled (model/profile.py, on the first batch of `profile_split`) only once they are
    known to be comparable.
    """
    if not runs:
        raise ValueError("mer compare needs at least one run folder")
    rows = [load_row(Path(run), split) for run in runs]
    corpus, label_names = check_comparable(rows, split)
    for row in rows:
        row.profile, reasons = _profile_or_reason(Path(row.run), profile_split)
        row.notes += reasons
    disambiguate_labels(rows)
    headline = list(rows[0].metrics["headline_metrics"])
    comparison = Comparison(corpus=corpus, split=split, label_names=label_names, metrics=headline, rows=rows,
                            notes=same_utterances_notes(rows, split))
    if out is not None:
        comparison.write(Path(out))
    return comparison


def load_row(run: Path, split: str) -> ComparisonRow:
    """The run's label and evaluation (profile not yet measured)."""
    if not (run / ckpt.CONFIG).is_file():
        raise FileNotFoundError(f"{run}: not a training run (no {ckpt.CONFIG}); train one with `mer train`")
    config = ckpt.read_json(run / ckpt.CONFIG)
    metrics = load_metrics(run, split)
    notes = data_changes(config.get("shards", []), config.get("data_fingerprint"))   # moved or changed data
    best_epoch = ckpt.load_state(run).best_epoch
    evaluated_epoch = (metrics.get("run") or {}).get("epoch")
    if evaluated_epoch is not None and evaluated_epoch != best_epoch:
        notes.append(f"{run}/eval-{split}/{METRICS_JSON} is of epoch {evaluated_epoch} but the run's best epoch is "
                     f"now {best_epoch}: rerun `mer evaluate {run} --split {split}`")
    model = str(config.get("model", "?"))
    top_p = config.get("top_p") if model == "mesm" else None
    return ComparisonRow(label=run_label(model, config.get("modalities", ""), top_p), run=str(run), model=model,
                         modalities=str(config.get("modalities", "")), top_p=top_p, metrics=metrics,
                         profile=None, notes=notes)


def load_metrics(run: Path, split: str) -> dict:
    """RUN/eval-<split>/metrics.json, evaluating the run on `split` first when it is missing."""
    path = ckpt.evaluation_folder(run, split) / METRICS_JSON
    if path.is_file():
        try:
            metrics = ckpt.read_json(path)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); rerun `mer evaluate`") from exc
        missing = [key for key in REQUIRED_METRICS_KEYS if key not in metrics]
        if missing:
            raise ValueError(f"{path}: not a `mer evaluate` result (no {', '.join(missing)}); rerun `mer evaluate`")
        return metrics
    from mer_data.model.evaluate import evaluate

    return evaluate(run, split=split, progress=False)


def _profile_or_reason(run: Path, split: str) -> tuple[dict | None, list[str]]:
    """The run's profile, or None and why (e.g. its data folder is gone): the metrics still compare."""
    from mer_data.model.profile import profile_run

    try:
        return profile_run(run, split=split), []
    except (OSError, RuntimeError, ValueError) as exc:
        return None, [f"{run}: no profile (cost columns empty): {type(exc).__name__}: {exc}"]


def run_label(model: str, modalities: str, top_p: float | None) -> str:
    """E.g. "FE2E (tav)", "MESM p=0.5 (tav)", "LF-RNN (ta)"."""
    name = display_name(model)
    if top_p is not None:
        name += f" p={float(top_p):g}"
    return f"{name} ({modalities})" if modalities else name


def disambiguate_labels(rows: list[ComparisonRow]) -> None:
    """Equal labels get their run folder's name, then (if still equal) the full path."""
    for describe in (lambda row: Path(row.run).name, lambda row: row.run):
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.label] = counts.get(row.label, 0) + 1
        for row in rows:
            if counts[row.label] > 1:
                row.label = f"{row.label.split(' [')[0]} [{describe(row)}]"


def check_comparable(rows: list[ComparisonRow], split: str) -> tuple[str, list[str]]:
    """(corpus, label names) shared by every run; a ValueError naming the run that differs otherwise."""
    first = rows[0]
    for row in rows:
        metrics = row.metrics
        if metrics.get("split") != split:
            raise ValueError(f"{row.run}: its eval-{split}/{METRICS_JSON} is of split {metrics.get('split')!r}, "
                             f"not {split!r}: rerun `mer evaluate {row.run} --split {split}`")
        if metrics["corpus"] != first.metrics["corpus"]:
            raise ValueError(f"{row.run}: corpus {metrics['corpus']!r}, but {first.run} is {first.metrics['corpus']!r}"
                             f": runs of different corpora cannot share a table")
        if is_single_label(metrics) != is_single_label(first.metrics):
            raise ValueError(f"{row.run}: evaluated as {metrics.get('task', 'one-vs-rest')}, but {first.run} as "
                             f"{first.metrics.get('task', 'one-vs-rest')}: their figures cannot share a table")
        if set(metrics["label_names"]) != set(first.metrics["label_names"]):
            raise ValueError(f"{row.run}: label names {metrics['label_names']}, but {first.run} has "
                             f"{first.metrics['label_names']}: runs of different label spaces cannot share a table")
    return first.metrics["corpus"], list(first.metrics["label_names"])


def same_utterances_notes(rows: list[ComparisonRow], split: str) -> list[str]:
    """A note for each run evaluated on other utterances than the first run (scores.parquet ids, else counts)."""
    first, notes = rows[0], []
    first_ids = _evaluated_ids(first.run, split)
    for row in rows[1:]:
        ids = _evaluated_ids(row.run, split)
        if first_ids is not None and ids is not None:
            if ids != first_ids:
                notes.append(f"{row.label}: evaluated on {len(ids)} {split} utterances, {first.label} on "
                             f"{len(first_ids)}; {len(ids ^ first_ids)} are not shared, so their figures are not "
                             f"over the same utterances")
            continue
        counts = (row.metrics["utterances"].get(split), first.metrics["utterances"].get(split))
        if counts[0] != counts[1]:
            notes.append(f"{row.label}: evaluated on {counts[0]} {split} utterances, {first.label} on {counts[1]}")
    return notes


def _evaluated_ids(run: str, split: str) -> set[str] | None:
    path = ckpt.evaluation_folder(run, split) / "scores.parquet"
    if not path.is_file():
        return None
    import pandas as pd

    return set(pd.read_parquet(path, columns=["id"])["id"])


# --------------------------------------------------------------------------------------------
# Cells: what each column shows and which value is best


def _percent(value: float | None) -> str:
    return UNDEFINED if value is None else f"{100 * value:.1f}"


def _significant(value: float) -> str:
    """Three significant digits without an exponent (0.000512, 6.14, 24.2, 1,367)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def _profile_value(*keys: str, scale: float = 1.0) -> Callable[[ComparisonRow], float | None]:
    def read(row: ComparisonRow) -> float | None:
        value: Any = row.profile
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return None if value is None else float(value) / scale
    return read


COST_COLUMNS = (
    CostColumn("parameters", "parameters (M)", _profile_value("parameters", "total", scale=1e6), True),
    CostColumn("gflops", "GFLOPs / sample (forward)", _profile_value("flops", "forward_per_sample", scale=1e9), True),
    CostColumn("training_minutes", "training time (min)", _profile_value("training", "seconds", scale=60), True,
               from_training_time=True),
    CostColumn("train_samples_per_second", "train samples/s", _profile_value("training", "samples_per_second"), False,
               from_training_time=True),
    CostColumn("eval_samples_per_second", "eval samples/s (forward)",
               _profile_value("evaluation", "samples_per_second"), False),
)


def metric_cell_texts(comparison: Comparison, metric: str, column: str) -> list[str]:
    return [format_figure(metric, row.value(metric, column)) for row in comparison.rows]


def cost_cell_texts(comparison: Comparison, column: CostColumn) -> list[str]:
    return [MISSING if column.read(row) is None else _significant(column.read(row)) for row in comparison.rows]


def best_positions(texts: list[str], *, lower_is_better: bool = False, ranked: list[bool] | None = None) -> set[int]:
    """Rows holding the best shown value (ties all count; compared as displayed, so equal cells agree);
    rows not `ranked` take no part."""
    ranked = ranked or [True] * len(texts)
    numbers = {i: float(t.replace(",", "")) for i, t in enumerate(texts) if ranked[i] and t not in (MISSING, UNDEFINED)}
    if not numbers:
        return set()
    best = min(numbers.values()) if lower_is_better else max(numbers.values())
    return {i for i, number in numbers.items() if number == best}


def cost_ranked(comparison: Comparison) -> list[bool]:
    """Cost is ranked among fully counted runs only: a two-phase run's leaves out its feature extraction."""
    return [not row.two_phase for row in comparison.rows]


def best_labels(comparison: Comparison) -> dict[str, list[str]]:
    """Per column of the tables, the labels of the runs marked best."""
    labels = [row.label for row in comparison.rows]
    best = {}
    for metric in comparison.metrics:
        for column in [*comparison.label_names, MEAN]:
            positions = best_positions(metric_cell_texts(comparison, metric, column),
                                       lower_is_better=is_lower_better(metric))
            best[f"{metric}:{column}"] = [labels[i] for i in sorted(positions)]
    for column in COST_COLUMNS:
        positions = best_positions(cost_cell_texts(comparison, column), lower_is_better=column.lower_is_better,
                                   ranked=cost_ranked(comparison))
        best[column.key] = [labels[i] for i in sorted(positions)]
    return best


def row_marks(row: ComparisonRow, column: CostColumn) -> str:
    """Footnote marks of a row's cell in a cost column."""
    marks = TWO_PHASE_MARK if row.two_phase else ""
    if column.from_training_time and _whole_epoch_time(row):
        marks += WHOLE_EPOCH_MARK
    return marks


def _whole_epoch_time(row: ComparisonRow) -> bool:
    return bool(row.profile) and row.profile["training"]["seconds_source"] != "train_seconds"


def epochs_text(row: ComparisonRow) -> str:
    training = (row.profile or {}).get("training")
    if not training:
        return MISSING
    return f"{training['best_epoch']} of {training['epochs']}"


def summary_headers(comparison: Comparison) -> list[str]:
    means = [f"mean {_with_unit(comparison.terminal_labels[m], m)}" for m in comparison.metrics]
    overall = [f"{OVERALL_LABELS[k]} %" for k in comparison.overall]
    return ["run", *overall, *means, *(c.header for c in COST_COLUMNS), "best epoch"]


def summary_cells(comparison: Comparison) -> list[list[tuple[str, bool]]]:
    """Per row, (text, is best) for each summary column after the label."""
    columns: list[list[tuple[str, bool]]] = []
    for figure in comparison.overall:
        texts = [_percent(row.metrics["overall"].get(figure)) for row in comparison.rows]
        best = best_positions(texts)
        columns.append([(t, i in best) for i, t in enumerate(texts)])
    for metric in comparison.metrics:
        texts = metric_cell_texts(comparison, metric, MEAN)
        best = best_positions(texts, lower_is_better=is_lower_better(metric))
        columns.append([(t, i in best) for i, t in enumerate(texts)])
    for column in COST_COLUMNS:
        texts = cost_cell_texts(comparison, column)
        best = best_positions(texts, lower_is_better=column.lower_is_better, ranked=cost_ranked(comparison))
        columns.append([(t + (row_marks(row, column) if t != MISSING else ""), i in best)
                        for i, (t, row) in enumerate(zip(texts, comparison.rows))])
    columns.append([(epochs_text(row), False) for row in comparison.rows])
    return [list(cells) for cells in zip(*columns)]


def metric_table_cells(comparison: Comparison, metric: str) -> list[list[tuple[str, bool]]]:
    columns = []
    for column in [*comparison.label_names, MEAN]:
        texts = metric_cell_texts(comparison, metric, column)
        best = best_positions(texts, lower_is_better=is_lower_better(metric))
        columns.append([(t, i in best) for i, t in enumerate(texts)])
    return [list(cells) for cells in zip(*columns)]


def footnotes(comparison: Comparison) -> list[str]:
    lines = []
    if any(row.two_phase for row in comparison.rows):
        lines.append(f"{TWO_PHASE_MARK} two-phase run: its offline feature extraction (openSMILE, HOG, the frozen "
                     "text encoder) is not in its parameters, FLOPs, training time or samples/s; cost columns rank "
                     "the end-to-end runs only.")
    if any(_whole_epoch_time(row) for row in comparison.rows):
        lines.append(f"{WHOLE_EPOCH_MARK} training time of whole epochs (training plus validation pass): the run "
                     "predates the separate training-pass time, so its train samples/s is understated.")
    return lines


def cost_details(row: ComparisonRow) -> dict[str, str]:
    """The profile's other figures, as short texts (feature extraction, text encoder, device ...)."""
    profile = row.profile
    if not profile:
        return {"kind": MISSING}
    flops, training = profile["flops"], profile["training"]
    extraction = flops.get("feature_extraction_per_sample")
    text = flops.get("text_encoder_per_sample")
    features = profile.get("features") or {}
    return {
        "kind": profile["kind"],
        "trainable parameters (M)": _significant(profile["parameters"]["trainable"] / 1e6),
        "feature-extraction GFLOPs / sample": _extraction_text(extraction),
        "text-encoder GFLOPs / sample": MISSING if text is None else _significant(text / 1e9),
        "training seconds (source)": f"{_significant(training['seconds'])} ({training['seconds_source']})",
        "forward CPU ms / sample": _cpu_milliseconds(profile["evaluation"].get("cpu_seconds_per_sample")),
        "profiled on": (f"{profile['batch']['samples']} {profile['split']} samples, epoch {profile['epoch']}, "
                        f"{profile['device']}, {profile['threads']} threads"),
        "feature folder": _feature_folder_text(features),
    }


def _feature_folder_text(features: dict) -> str:
    """A two-phase run's feature folder and the extraction cost recorded beside it (never estimated)."""
    if not features:
        return MISSING
    cost = features.get("extraction_cost") or {}
    timing = cost.get("timing")
    if timing and timing.get("seconds_per_utterance"):
        per_modality = sorted(timing["seconds_per_utterance"].items())
        parts = ", ".join(f"{name} {_significant(value)}" for name, value in per_modality)
        text = (f"extraction {_significant(timing['total_seconds_per_utterance'])} s/utterance on one thread"
                f" ({parts}), measured on {timing['utterances']} utterances")
    else:
        text = f"extraction cost: {json.dumps(cost) if cost else 'not recorded'}"
    return f"{features['path']} ({text})"


def _cpu_milliseconds(seconds: float | None) -> str:
    return MISSING if seconds is None else _significant(1000 * seconds)


def _extraction_text(extraction: dict[str, float] | None) -> str:
    """E.g. "0.588 (a 0.339, v 0.249)"; two-phase runs extract offline."""
    if extraction is None:
        return "not in the model (offline)"
    parts = [f"{m} {_significant(extraction[m] / 1e9)}" for m in sorted(extraction) if m != "total"]
    return _significant(extraction["total"] / 1e9) + (f" ({', '.join(parts)})" if parts else "")


def preamble(comparison: Comparison) -> list[str]:
    if comparison.rows[0].metrics.get("task") == "sentiment":
        return sentiment_preamble(comparison)
    split = comparison.split
    counts = sorted({row.metrics["utterances"].get(split) for row in comparison.rows}, key=str)
    valid = sorted({row.metrics["utterances"].get("valid") for row in comparison.rows}, key=str)
    decision = (f"per class, thresholds tuned to maximise F1 on the {' / '.join(map(str, valid))} valid utterances, "
                "then applied unchanged") if not comparison.overall else \
        "single-label, the argmax class of each utterance (WA: overall accuracy; UA: mean per-class recall)"
    return [
        f"{len(comparison.rows)} runs; {' / '.join(map(str, counts))} {split} utterances. Metrics as mer evaluate "
        f"computes them: {decision}. Values in percent; mean = unweighted mean over the classes.",
        "Bold: the best in its column (highest metric and samples/s; lowest parameters, FLOPs and training time).",
        "Cost: parameters of the torch model; FLOPs counted by torch's FlopCounterMode over one forward pass per "
        "sample; training time summed over all epochs run; see docs/comparison.md.",
    ]


def _with_unit(label: str, metric: str, separator: str = " ") -> str:
    """A metric's label with "%" appended where its values are percent and the label does not say so."""
    return label if metric in PLAIN_NUMBER_METRICS or label.endswith("%") else f"{label}{separator}%"


def sentiment_preamble(comparison: Comparison) -> list[str]:
    split = comparison.split
    counts = sorted({row.metrics["utterances"].get(split) for row in comparison.rows}, key=str)
    return [
        f"{len(comparison.rows)} runs; {' / '.join(map(str, counts))} {split} utterances. CMU-MOSEI sentiment "
        "(regression in [-3, 3]) as mer evaluate scores it: MAE and Pearson r as numbers, the accuracies and F1 "
        "in percent; definitions in docs/training.md.",
        "Bold: the best in its column (lowest MAE, parameters, FLOPs and training time; highest of the rest).",
    ]


def title(comparison: Comparison) -> str:
    return f"Comparison: {CORPUS_TITLES.get(comparison.corpus, comparison.corpus)}, {comparison.split} split"


# --------------------------------------------------------------------------------------------
# Markdown


def render_markdown(comparison: Comparison) -> str:
    lines = [f"# {title(comparison)}", "", *_paragraphs(preamble(comparison)), "## Summary", ""]
    lines += _markdown_table(summary_headers(comparison), comparison, summary_cells(comparison))
    lines += ["", *(f"{_markdown_text(note)}  " for note in footnotes(comparison)), ""]
    for metric in comparison.metrics:
        lines += [f"## {_with_unit(comparison.headers[metric], metric, ', ')}", ""]
        lines += _markdown_table(["run", *comparison.label_names, MEAN], comparison,
                                 metric_table_cells(comparison, metric)) + [""]
    details = [cost_details(row) for row in comparison.rows]
    headers = list(cost_details_keys(details))
    lines += ["## Cost details", ""]
    lines += _markdown_table(["run", *headers], comparison,
                             [[(d.get(h, MISSING), False) for h in headers] for d in details], numeric=False) + [""]
    notes = [*comparison.notes, *(note for row in comparison.rows for note in row.notes)]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def cost_details_keys(details: list[dict[str, str]]) -> dict[str, None]:
    keys: dict[str, None] = {}
    for detail in details:
        keys.update(dict.fromkeys(detail))
    return keys


def _paragraphs(texts: list[str]) -> list[str]:
    return [line for text in texts for line in (text, "")]


def _markdown_table(headers: list[str], comparison: Comparison, cells: list[list[tuple[str, bool]]],
                    numeric: bool = True) -> list[str]:
    align = "---:|" if numeric else "---|"
    lines = ["| " + " | ".join(_markdown_text(h) for h in headers) + " |", "|---|" + align * (len(headers) - 1)]
    for row, row_cells in zip(comparison.rows, cells):
        shown = [f"**{_markdown_text(text)}**" if best else _markdown_text(text) for text, best in row_cells]
        lines.append("| " + " | ".join([_markdown_text(row.label), *shown]) + " |")
    return lines


def _markdown_text(text: str) -> str:
    """A cell's text with the characters that would break a Markdown table or emphasis escaped."""
    text = str(text).replace("\\", "\\\\").replace("\n", " ")
    for special in "|*<>":   # table cell breaks, emphasis, raw HTML
        text = text.replace(special, "\\" + special)
    return text


# --------------------------------------------------------------------------------------------
# HTML


def render_html(comparison: Comparison) -> str:
    """The whole page: self-contained (no script, no URL), deterministic."""
    from mer_data.validation.html import PAGE_STYLE

    # Bars show fractions on a 0-100 % axis: MAE and Pearson r (sentiment) are in the tables only.
    accuracy = [m for m in comparison.metrics if m not in ("f1", "auc", *PLAIN_NUMBER_METRICS)]
    figures = [bar_figure(comparison, metric) for metric in ["f1", *accuracy] if metric in comparison.metrics]
    tables = [f"<h2>{_text(_with_unit(comparison.headers[m], m, ', '))}</h2>\n" + _html_table(["run", *comparison.label_names, MEAN], comparison,
                                                                  metric_table_cells(comparison, m))
              for m in comparison.metrics]
    details = [cost_details(row) for row in comparison.rows]
    detail_headers = list(cost_details_keys(details))
    notes = [*comparison.notes, *(note for row in comparison.rows for note in row.notes)]
    body = [
        f"<h1>{_text(title(comparison))}</h1>",
        *(f'<p class="meta">{_text(text)}</p>' for text in preamble(comparison)),
        '<section id="summary">\n<h2>Summary</h2>\n'
        + _html_table(summary_headers(comparison), comparison, summary_cells(comparison))
        + "".join(f'<p class="note">{_text(note)}</p>' for note in footnotes(comparison)) + "\n</section>",
        '<section id="figures">\n<h2>Per class and mean</h2>\n' + "\n".join(figures) + "\n</section>",
        '<section id="tables">\n' + "\n".join(tables) + "\n</section>",
        '<section id="cost">\n<h2>Cost details</h2>\n'
        + _html_table(["run", *detail_headers], comparison,
                      [[(d.get(h, MISSING), False) for h in detail_headers] for d in details], numeric=False)
        + "\n</section>",
    ]
    if notes:
        body.append('<section id="notes">\n<h2>Notes</h2>\n<ul>'
                    + "".join(f"<li>{_text(note)}</li>" for note in notes) + "</ul>\n</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_text(title(comparison))}</title>\n<style>{PAGE_STYLE}{EXTRA_STYLE}</style>\n</head>\n"
            "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


EXTRA_STYLE = """
td.best { font-weight: 700; background: #dafbe1; }
tbody td:first-child, td.num { white-space: nowrap; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; fill: #1f2328; }
svg .grid { stroke: #d1d9e0; stroke-width: 1; }
svg .axis { stroke: #59636e; stroke-width: 1; }
"""


def _html_table(headers: list[str], comparison: Comparison, cells: list[list[tuple[str, bool]]],
                numeric: bool = True) -> str:
    kind = "num" if numeric else "text"
    head = "<th>" + _text(headers[0]) + "</th>" + "".join(f'<th class="{kind}">{_text(h)}</th>' for h in headers[1:])
    rows = []
    for row, row_cells in zip(comparison.rows, cells):
        shown = "".join(f'<td class="{kind}{" best" if best else ""}">{_text(text)}</td>' for text, best in row_cells)
        rows.append(f"<tr><td>{_text(row.label)}</td>{shown}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


# Bar plot geometry, in SVG user units (the page scales the SVG to its width).
PLOT_WIDTH, PLOT_HEIGHT = 960, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, AXIS_LABELS = 56, 16, 16, 28
LEGEND_LINE = 20
GROUP_FILL = 0.8          # share of a class's slot taken by its bars


def bar_figure(comparison: Comparison, metric: str) -> str:
    """A <figure> with an inline SVG grouped bar plot: per class and the mean, one bar per run."""
    svg = bar_chart_svg(f"bars-{metric}", [*comparison.label_names, MEAN],
                        [(row.label, [row.value(metric, c) for c in [*comparison.label_names, MEAN]])
                         for row in comparison.rows], y_label=_with_unit(comparison.terminal_labels[metric], metric))
    caption = f"{comparison.headers[metric]}, per class and mean, one bar per run (hover a bar for its value)."
    return f'<figure class="plot" id="fig-{metric}">\n{svg}\n<figcaption>{_text(caption)}</figcaption>\n</figure>'


def bar_chart_svg(chart_id: str, groups: list[str], series: list[tuple[str, list[float | None]]],
                  y_label: str) -> str:
    """Grouped bars of fractions in [0, 1] on a 0-100 % axis; a bar's height is proportional to its value.

    Each bar is a <rect class="bar"> with data-series, data-group and data-value (the fraction), and a
    <title> for its tooltip; an undefined value draws "n/a" at the baseline instead of a bar.
    """
    baseline = MARGIN_TOP + PLOT_HEIGHT
    height = baseline + AXIS_LABELS + LEGEND_LINE * len(series) + 8
    slot = (PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / len(groups)
    bar_width = slot * GROUP_FILL / len(series)
    parts = [f'<svg id="{_text(chart_id)}" viewBox="0 0 {PLOT_WIDTH} {height}" role="img" '
             f'aria-label="{_text(y_label)} per class and run">']
    parts += _y_axis(baseline, y_label)
    for g, group in enumerate(groups):
        left = MARGIN_LEFT + g * slot + slot * (1 - GROUP_FILL) / 2
        parts.append(f'<text x="{MARGIN_LEFT + (g + 0.5) * slot:.2f}" y="{baseline + 18}" '
                     f'text-anchor="middle">{_text(group)}</text>')
        for s, (name, values) in enumerate(series):
            parts.append(_bar(name, group, values[g], left + s * bar_width, bar_width, baseline, s))
    for s, (name, _) in enumerate(series):
        y = baseline + AXIS_LABELS + s * LEGEND_LINE
        parts.append(f'<rect class="swatch" x="{MARGIN_LEFT}" y="{y + 3}" width="12" height="12" '
                     f'fill="{_colour(s)}"/><text x="{MARGIN_LEFT + 18}" y="{y + 14}">{_text(name)}</text>')
    return "\n".join(parts + ["</svg>"])


def _y_axis(baseline: float, y_label: str) -> list[str]:
    parts = []
    for percent in range(0, 101, 20):
        y = baseline - PLOT_HEIGHT * percent / 100
        parts.append(f'<line class="grid" x1="{MARGIN_LEFT}" x2="{PLOT_WIDTH - MARGIN_RIGHT}" y1="{y:.2f}" '
                     f'y2="{y:.2f}"/><text x="{MARGIN_LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{percent}</text>')
    parts.append(f'<line class="axis" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{baseline}"/>')
    middle = MARGIN_TOP + PLOT_HEIGHT / 2
    parts.append(f'<text x="14" y="{middle:.2f}" text-anchor="middle" transform="rotate(-90 14 {middle:.2f})">'
                 f"{_text(y_label)}</text>")
    return parts


def _bar(name: str, group: str, value: float | None, x: float, width: float, baseline: float, index: int) -> str:
    if value is None:
        return (f'<text class="undefined" x="{x + width / 2:.2f}" y="{baseline - 4}" text-anchor="middle" '
                f'font-size="9">{UNDEFINED}</text>')
    bar_height = PLOT_HEIGHT * value
    return (f'<rect class="bar" data-series="{_text(name)}" data-group="{_text(group)}" data-value="{float(value)!r}" '
            f'x="{x:.3f}" y="{baseline - bar_height:.3f}" width="{width:.3f}" height="{bar_height:.3f}" '
            f'fill="{_colour(index)}"><title>{_text(name)}, {_text(group)}: {_percent(value)} %</title></rect>')


def _colour(index: int) -> str:
    return RUN_COLOURS[index % len(RUN_COLOURS)]
