"""`mer compare` and run profiles: the table shows the runs' metrics.json values, the profile counts what it
says, incomparable runs are refused, and the HTML page is self-contained with bars that show the values."""
from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

IEMOCAP_NAMES = ["ang", "exc", "fru", "hap", "neu", "sad"]
MOSEI_NAMES = ["anger", "disgust", "fear", "happy", "sad", "surprise"]
# Small nets and a tiny random text encoder: the point is the bookkeeping, not the accuracy.
TINY_NETS = dict(visual_channels=[4, 8, 8, 8], acoustic_channels=[4, 8, 8, 8], temporal_width=16,
                 temporal_layers=1, temporal_heads=2, dropout=0.1)
HOSTILE_LABEL = '<script>alert("x")</script> & "quotes"'


# --------------------------------------------------------------------------------------------
# Run folders


@pytest.fixture(scope="module")
def tiny_run(training_shards, tmp_path_factory):
    """A one-epoch FE2E run (all three modalities), not evaluated, so compare has to run `mer evaluate`.

    On `training_shards` (every split non-empty: a run checks that its shards are what their index and
    card say, so test shards linked in as a valid split would be refused by split purity).
    """
    from mer_data.model.profile import profile_run
    from mer_data.model.text import write_tiny_text_encoder
    from mer_data.model.train import TrainConfig, train

    shards = training_shards
    encoder = write_tiny_text_encoder(tmp_path_factory.mktemp("compare-encoder"))
    config = TrainConfig(shards=[str(shards)], model="fe2e", modalities="tav", epochs=1, batch_size=4, workers=0,
                         text_encoder=str(encoder), model_options=TINY_NETS)
    run = tmp_path_factory.mktemp("compare-runs") / "fe2e"
    train(config, run, progress=False, log=lambda message: None)
    profile_run(run)        # measured once: copies of the run inherit RUN/profile.json
    return run


def synthetic_metrics(corpus: str = "iemocap", *, seed: int = 1, utterances: int = 30, split: str = "test") -> dict:
    """A metrics dict as `mer evaluate` writes it, from random scores (so every field is real)."""
    from mer_data.model.metrics import evaluate_scores

    rng = np.random.default_rng(seed)
    names = IEMOCAP_NAMES if corpus == "iemocap" else MOSEI_NAMES

    def scored(count):
        if corpus == "iemocap":
            targets = np.eye(len(names))[rng.permutation(np.arange(count) % len(names))]
        else:
            targets = (rng.random((count, len(names))) < 0.4).astype(float)
            targets[:, -1] = 0          # a class without positives: its WAcc and AUC are undefined
        return rng.random(targets.shape) * 0.7 + 0.3 * targets, targets

    valid, tested = scored(24), scored(utterances)
    metrics = evaluate_scores(corpus, *valid, *tested, names, split=split)
    metrics["run"] = {"model": "fe2e", "modalities": "tav", "epoch": 1, "split": split, "samples": utterances,
                      "corpus": corpus}
    return metrics


def copy_run(run, destination, metrics: dict | None = None):
    """A copy of a run folder; with `metrics`, its eval-test holds those (and no scores.parquet)."""
    shutil.copytree(run, destination)
    if metrics is not None:
        shutil.rmtree(destination / "eval-test", ignore_errors=True)
        (destination / "eval-test").mkdir()
        (destination / "eval-test" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return destination


# --------------------------------------------------------------------------------------------
# Profiles


def test_profile_counts_parameters_flops_and_training_time(tiny_run, tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    from mer_data.model.checkpoint import load_state
    from mer_data.model.evaluate import load_run
    from mer_data.model.profile import profile_run
    from mer_data.model.train import make_loader, tokenizer_for

    run = copy_run(tiny_run, tmp_path / "run")
    (run / "profile.json").unlink()
    profile = profile_run(run)
    assert json.loads((run / "profile.json").read_text()) == profile

    config, model, epoch = load_run(run, workers=0)
    assert profile["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert profile["parameters"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert profile["kind"] == "end-to-end" and profile["epoch"] == epoch and profile["features"] is None

    # The FLOPs are those of one eval-mode forward pass over the first valid batch, per sample.
    batch = next(iter(make_loader(config, "valid", tokenizer_for(config), train=False)))
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    flops = profile["flops"]
    assert profile["batch"] == {"samples": len(batch), "ids": list(batch.ids)}
    assert flops["forward_batch_total"] == counter.get_total_flops() > 0
    assert flops["forward_per_sample"] == pytest.approx(counter.get_total_flops() / len(batch))
    assert sum(flops["by_module_per_sample"].values()) == pytest.approx(flops["forward_per_sample"])
    assert flops["by_module_per_sample"]["extractors"] == pytest.approx(flops["feature_extraction_per_sample"]["total"])
    assert flops["text_encoder_per_sample"] > 0
    assert flops["by_module_per_sample"]["text_encoder"] == pytest.approx(flops["text_encoder_per_sample"])
    assert flops["feature_extraction_per_sample"]["v"] > 0 and flops["feature_extraction_per_sample"]["a"] > 0

    history = load_state(run).history
    seconds = sum(row["train_seconds"] if row.get("train_seconds") is not None else row["seconds"] for row in history)
    assert profile["training"]["seconds"] == pytest.approx(seconds)
    assert profile["training"]["samples_per_second"] == pytest.approx(history[0]["train_samples"] / seconds)
    assert profile["evaluation"]["samples_per_second"] > 0 and profile["evaluation"]["cpu_seconds_per_sample"] > 0
    # The fixture's run measured the same (the FLOPs are reproducible; the timings need not be).
    measured_before = json.loads((tiny_run / "profile.json").read_text())
    assert measured_before["flops"] == flops and measured_before["parameters"] == profile["parameters"]


def test_profile_cache_is_reused_until_the_run_changes(tiny_run, tmp_path):
    from mer_data.model.checkpoint import load_state
    from mer_data.model.profile import _still_valid, profile_run

    run = copy_run(tiny_run, tmp_path / "run")
    cached = json.loads((run / "profile.json").read_text())
    (run / "profile.json").write_text(json.dumps({**cached, "marker": "cached"}))
    assert profile_run(run)["marker"] == "cached"                     # same run, same split: the cache
    state = load_state(run)
    assert _still_valid(cached, state, "valid")
    assert not _still_valid(cached, state, "test")                    # another split
    assert not _still_valid({**cached, "profile_version": 0}, state, "valid")
    (run / "profile.json").write_text(json.dumps({**cached, "marker": "cached", "epochs_done": 7}))
    remeasured = profile_run(run)                                     # trained further since: measured
    assert "marker" not in remeasured and remeasured["epochs_done"] == state.epochs_done
    assert json.loads((run / "profile.json").read_text()) == remeasured


def test_training_time_prefers_the_training_pass_and_says_which_it_used():
    from mer_data.model.checkpoint import RunState
    from mer_data.model.profile import training_time

    def state(*rows):
        return RunState(epochs_done=len(rows), best_epoch=1, history=[
            {"epoch": i + 1, "seconds": s, "train_samples": 10, **({"train_seconds": t} if t is not None else {})}
            for i, (s, t) in enumerate(rows)])

    only_train = training_time(state((10.0, 4.0), (12.0, 6.0)))
    assert only_train["seconds"] == 10.0 and only_train["seconds_source"] == "train_seconds"
    assert only_train["samples_per_second"] == 2.0 and only_train["seconds_to_best_epoch"] == 4.0
    whole = training_time(state((10.0, None), (12.0, None)))
    assert whole["seconds"] == 22.0 and whole["seconds_source"] == "seconds"
    mixed = training_time(state((10.0, None), (12.0, 6.0)))
    assert mixed["seconds"] == 16.0 and mixed["seconds_source"] == "mixed"


def test_a_run_on_a_feature_folder_records_it_and_its_extraction_cost(tmp_path):
    from types import SimpleNamespace

    from mer_data.model.profile import feature_folder_facts

    feats = tmp_path / "feats"
    feats.mkdir()
    card = {"source": {"kind": "shards", "path": "shards"},
            "modalities": {"audio": {"role": "a", "extractor": "opensmile-egemaps-v02-lld", "dim": 25}}}
    (feats / "features.json").write_text(json.dumps(card))
    facts = feature_folder_facts(SimpleNamespace(model="lf-rnn", shards=[str(feats)]))
    assert facts["path"] == str(feats) and facts["modalities"]["audio"]["extractor"] == "opensmile-egemaps-v02-lld"
    assert facts["extraction_cost"] is None and "records no extraction timing" in facts["extraction_cost_note"]
    (feats / "extraction.json").write_text(json.dumps({"seconds": 12.5}))   # written by `mer features`
    recorded = feature_folder_facts(SimpleNamespace(model="lf-transformer", shards=[str(feats)]))
    assert recorded["extraction_cost"] == {"timing": {"seconds": 12.5}}
    assert feature_folder_facts(SimpleNamespace(model="fe2e", shards=[str(tmp_path)])) is None   # end to end


# --------------------------------------------------------------------------------------------
# The comparison of real run folders


def markdown_table(markdown: str, heading: str) -> dict[str, list[str]]:
    """Label -> cells of the Markdown table under `## heading`."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return {row[0]: row[1:] for row in cells}


def cell_value(cell: str) -> float | None:
    """A table cell's number (None for "n/a"), without its bold marks."""
    text = cell.strip("*")
    return None if text == "n/a" else float(text)


def test_compare_shows_each_runs_metrics_and_marks_the_best(tiny_run, tmp_path):
    from mer_data.model.compare import compare_runs
    from mer_data.model.report import HEADERS

    first = copy_run(tiny_run, tmp_path / "first")
    second = copy_run(tiny_run, tmp_path / "second", synthetic_metrics(utterances=30))
    assert not (first / "eval-test").exists()
    comparison = compare_runs([first, second], split="test", out=tmp_path / "out")

    evaluated = json.loads((first / "eval-test" / "metrics.json").read_text())   # compare ran mer evaluate
    synthetic = json.loads((second / "eval-test" / "metrics.json").read_text())
    assert [row.label for row in comparison.rows] == ["FE2E (tav) [first]", "FE2E (tav) [second]"]

    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert markdown == comparison.markdown
    for metric in ("acc", "f1", "auc"):
        table = markdown_table(markdown, f"{HEADERS[metric]}, %")
        for label, metrics in (("FE2E (tav) [first]", evaluated), ("FE2E (tav) [second]", synthetic)):
            expected = [metrics["per_class"][name][metric] for name in IEMOCAP_NAMES] + [metrics["mean"][metric]]
            shown = [cell_value(cell) for cell in table[label]]
            assert shown == [None if value is None else round(100 * value, 1) for value in expected], (metric, label)
        for column in range(len(IEMOCAP_NAMES) + 1):
            values = [cell_value(cells[column]) for cells in table.values()]
            defined = [value for value in values if value is not None]
            bold = [cells[column].startswith("**") for cells in table.values()]
            assert bold == [value is not None and value == max(defined) for value in values], (metric, column)

    summary = markdown_table(markdown, "Summary")
    profile = json.loads((first / "profile.json").read_text())
    parameters = summary["FE2E (tav) [first]"][3].strip("*\\")
    assert float(parameters) == pytest.approx(profile["parameters"]["total"] / 1e6, rel=5e-3)
    assert "30 test utterances" in markdown and "not over the same utterances" not in markdown  # counts only
    assert any("evaluated on 30 test utterances" in note for note in comparison.notes)

    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["rows"][1]["values"]["f1"]["mean"] == synthetic["mean"]["f1"]
    assert saved["rows"][0]["profile"]["parameters"] == profile["parameters"]
    assert saved["corpus"] == "iemocap" and saved["label_names"] == IEMOCAP_NAMES
    page = (tmp_path / "out" / "compare.html").read_text()
    assert page == comparison.html and "<script" not in page


def test_runs_that_cannot_share_a_table_are_refused_by_name(tiny_run, tmp_path):
    from mer_data.model.compare import compare_runs

    base = copy_run(tiny_run, tmp_path / "base", synthetic_metrics())
    mosei = copy_run(tiny_run, tmp_path / "mosei-run", synthetic_metrics("mosei"))
    with pytest.raises(ValueError, match=r"mosei-run: corpus 'mosei', but .*base is 'iemocap'"):
        compare_runs([base, mosei])
    relabelled = synthetic_metrics()
    relabelled["label_names"] = ["ang", "exc", "fru", "hap", "neu", "other"]
    other = copy_run(tiny_run, tmp_path / "other-labels", relabelled)
    with pytest.raises(ValueError, match="other-labels: label names"):
        compare_runs([base, other])
    wrong_split = copy_run(tiny_run, tmp_path / "wrong-split", synthetic_metrics(split="valid"))
    with pytest.raises(ValueError, match="wrong-split: its eval-test/metrics.json is of split 'valid'"):
        compare_runs([base, wrong_split])
    with pytest.raises(FileNotFoundError, match="not a training run"):
        compare_runs([base, tmp_path])


def test_a_run_whose_data_is_gone_still_compares_without_cost(tiny_run, tmp_path):
    from mer_data.model.compare import MISSING, compare_runs

    run = copy_run(tiny_run, tmp_path / "moved", synthetic_metrics())
    (run / "profile.json").unlink()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "shards": [str(tmp_path / "gone")]}))
    comparison = compare_runs([run])
    assert comparison.rows[0].profile is None
    assert any("no profile" in note for note in comparison.rows[0].notes)
    assert markdown_table(comparison.markdown, "Summary")["FE2E (tav)"][3] == MISSING


def test_cli_compare_prints_the_table_and_writes_three_files(tiny_run, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    first = copy_run(tiny_run, tmp_path / "a", synthetic_metrics(seed=2))
    second = copy_run(tiny_run, tmp_path / "b", synthetic_metrics(seed=3))
    result = CliRunner().invoke(main, ["compare", str(first), str(second), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "## Summary" in result.output and "FE2E (tav) [b]" in result.output
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.html", "compare.json", "compare.md"]
    refused = CliRunner().invoke(main, ["compare", str(first), str(tmp_path / "cmp")])
    assert refused.exit_code == 1 and "cmp: not a training run" in refused.output


# --------------------------------------------------------------------------------------------
# Rendering, on comparisons built in memory


def synthetic_profile(kind: str, flops: float, parameters: int = 1000, seconds: float = 60.0) -> dict:
    return {
        "kind": kind, "split": "valid", "epoch": 3, "device": "cpu", "threads": 2,
        "parameters": {"total": parameters, "trainable": parameters},
        "flops": {"forward_per_sample": flops, "forward_batch_total": 4 * flops, "by_module_per_sample": {},
                  **({"feature_extraction_per_sample": {"v": flops / 2, "total": flops / 2},
                      "text_encoder_per_sample": flops / 4} if kind == "end-to-end" else {})},
        "batch": {"samples": 4, "ids": ["a", "b", "c", "d"]},
        "training": {"seconds": seconds, "epochs": 5, "best_epoch": 3, "train_samples": 500,
                     "samples_per_second": 500 / seconds, "seconds_source": "train_seconds"},
        "evaluation": {"samples_per_second": 100.0},
        "features": {"path": "feats", "extraction_cost": None} if kind == "two-phase" else None,
    }


def in_memory_comparison(corpus: str = "iemocap", labels=("FE2E (tav)", "MESM p=0.5 (tav)", HOSTILE_LABEL),
                         kinds=("end-to-end", "end-to-end", "two-phase"), flops=(8e8, 5e8, 1e6)):
    from mer_data.model.compare import Comparison, ComparisonRow

    rows = [ComparisonRow(label=label, run=f"runs/{i}", model="fe2e", modalities="tav", top_p=None,
                          metrics=synthetic_metrics(corpus, seed=10 + i),
                          profile=synthetic_profile(kind, flop, seconds=60.0 * (i + 1)))
            for i, (label, kind, flop) in enumerate(zip(labels, kinds, flops))]
    first = rows[0].metrics
    return Comparison(corpus=corpus, split="test", label_names=list(first["label_names"]),
                      metrics=list(first["headline_metrics"]), rows=rows)


class _Bars(HTMLParser):
    """Per figure id: the attributes of its bar rects, and its "n/a" markers."""

    def __init__(self):
        super().__init__()
        self.bars: dict[str, list[dict]] = {}
        self.undefined: dict[str, int] = {}
        self._figure = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure":
            self._figure = attributes["id"]
            self.bars[self._figure], self.undefined[self._figure] = [], 0
        elif tag == "rect" and attributes.get("class") == "bar":
            self.bars[self._figure].append(attributes)
        elif tag == "text" and attributes.get("class") == "undefined":
            self.undefined[self._figure] += 1


def bars_of(page: str) -> _Bars:
    parser = _Bars()
    parser.feed(page)
    return parser


def test_html_is_self_contained_escaped_and_its_bars_are_the_values():
    from mer_data.model.compare import MEAN, PLOT_HEIGHT

    comparison = in_memory_comparison()
    page = comparison.html
    for external in ("http:", "https:", "<script", "<link", " src=", "@import", "<img", "url("):
        assert external not in page, external
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert page == in_memory_comparison().html                       # deterministic

    parsed = bars_of(page)
    assert sorted(parsed.bars) == ["fig-acc", "fig-f1"]
    columns = [*IEMOCAP_NAMES, MEAN]
    for figure, metric in (("fig-f1", "f1"), ("fig-acc", "acc")):
        bars = parsed.bars[figure]
        assert len(bars) == len(comparison.rows) * len(columns)
        assert {(bar["data-series"], bar["data-group"]) for bar in bars} == \
               {(row.label, column) for row in comparison.rows for column in columns}
        baselines = {round(float(bar["y"]) + float(bar["height"]), 3) for bar in bars}
        assert len(baselines) == 1
        for bar in bars:
            row = next(r for r in comparison.rows if r.label == bar["data-series"])
            value = row.value(metric, bar["data-group"])
            assert float(bar["data-value"]) == value
            assert float(bar["height"]) == pytest.approx(PLOT_HEIGHT * value, abs=1e-3)
        colours = {}
        for bar in bars:
            colours.setdefault(bar["data-series"], set()).add(bar["fill"])
        assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == len(colours)


def test_mosei_plots_weighted_accuracy_and_marks_undefined_values():
    comparison = in_memory_comparison("mosei")
    assert comparison.metrics == ["wacc", "f1", "auc"]
    parsed = bars_of(comparison.html)
    assert sorted(parsed.bars) == ["fig-f1", "fig-wacc"]
    # "surprise" has no positives in these test splits: no WAcc bar, an "n/a" instead, for every run.
    assert parsed.undefined["fig-wacc"] == len(comparison.rows)
    assert len(parsed.bars["fig-wacc"]) == len(comparison.rows) * len(MOSEI_NAMES)
    assert "WAcc = (TP·N/P + TN)/(2N)" in comparison.markdown


def test_two_phase_costs_are_marked_and_not_ranked():
    from mer_data.model.compare import TWO_PHASE_MARK

    comparison = in_memory_comparison()
    summary = markdown_table(comparison.markdown, "Summary")
    gflops = {label: cells[4] for label, cells in summary.items()}
    hostile = next(label for label in summary if "alert" in label)
    # The two-phase run has the fewest counted FLOPs, but its feature extraction is not in them.
    assert gflops[hostile] == f"0.00100{TWO_PHASE_MARK}"
    assert gflops["MESM p=0.5 (tav)"] == "**0.500**" and gflops["FE2E (tav)"] == "0.800"
    assert f"{TWO_PHASE_MARK} two-phase run" in comparison.markdown
    assert comparison.to_dict()["best"]["gflops"] == ["MESM p=0.5 (tav)"]
    # The label's Markdown-breaking characters are escaped: the row still has all its cells.
    assert len(summary[hostile]) == len(summary["FE2E (tav)"])


def test_whole_epoch_training_times_are_marked_in_the_training_columns_only():
    comparison = in_memory_comparison()
    comparison.rows[0].profile["training"]["seconds_source"] = "seconds"
    summary = markdown_table(comparison.markdown, "Summary")["FE2E (tav)"]
    unbold = [cell[2:-2] if cell.startswith("**") else cell for cell in summary]
    parameters, gflops, minutes, train_rate, eval_rate = unbold[3:8]
    assert minutes.endswith("\\*") and train_rate.endswith("\\*")
    assert not any(cell.endswith("*") for cell in (parameters, gflops, eval_rate))
    assert "training time of whole epochs" in comparison.markdown


# --------------------------------------------------------------------------------------------
# In headless chromium


def test_page_renders_in_chromium_and_shows_every_runs_bars(tmp_path):
    from tests.test_validate_html import CHROMIUM, LAYOUT_PROBE, WIDTH, chromium, colour_pixels, console_messages

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/bootstrap installs it)")
    import cv2

    from mer_data.model.compare import RUN_COLOURS

    comparison = in_memory_comparison()
    page = tmp_path / "compare.html"
    page.write_text(comparison.html, encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(comparison.html.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    probed = chromium(probe, tmp_path, "--dump-dom")
    layout = json.loads(re.search(r'<pre id="layout">(.*?)</pre>', probed.stdout).group(1))
    assert sorted(layout["figures"]) == ["fig-acc", "fig-f1"]
    assert len(bars_of(probed.stdout).bars["fig-f1"]) == 3 * 7

    shot = tmp_path / "compare.png"
    shown = chromium(page, tmp_path, f"--screenshot={shot}", height=layout["height"])
    assert console_messages(shown.stderr) == []
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (layout["height"], WIDTH)
    for figure, (x, y, w, h) in layout["figures"].items():
        region = image[int(y): int(y + h), int(x): int(x + w)]
        assert w > 400 and h > 200, (figure, w, h)
        for colour in RUN_COLOURS[: len(comparison.rows)]:
            assert colour_pixels(region, colour) >= 100, f"{figure} does not show {colour}"
