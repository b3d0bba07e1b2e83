"""The validation report as one self-contained HTML page: tables and matplotlib figures.

    render_html(report.to_dict(), Path("report.html"))

Everything is inside the file: the figures are inline SVG (text drawn as paths, so no fonts are
needed), the styling is one <style> block, and there is no script and no external URL, so the page
opens the same offline, from a mail attachment or a CI artifact. Every part of the report may be
missing or null (a raw release has no face-detection rates, a run without A/V sync has no
offsets); the section then says so instead of showing a figure. The output is a pure function of
the report (no dates, fixed SVG ids), so two renders of one report are byte-identical.
"""
from __future__ import annotations

import html
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from mer_data.shards.layout import SPLITS

# Recordings up to this many get one row each in the offsets figure; more get a histogram.
MAX_OFFSET_ROWS_IN_FIGURE = 60
# Table rows shown per finding kind and in the offsets table; the JSON report holds them all.
MAX_FINDING_ROWS_PER_KIND = 200
MAX_OFFSET_TABLE_ROWS = 100

COLOURS = {"interval": "#4c72b0", "audio": "#55a868", "video": "#c44e52", "ok": "#4c72b0",
           "flagged": "#d62728", "threshold": "#7f7f7f", "faces": "#8172b3"}
SPLIT_COLOURS = {"train": "#4c72b0", "valid": "#dd8452", "test": "#55a868", "all": "#4c72b0"}
OTHER_SPLIT_COLOURS = ("#8172b3", "#937860", "#da8bc3", "#8c8c8c")
# Deterministic SVG: fixed id salt, no date; text as paths keeps the page free of font lookups.
SVG_STYLE = {"svg.hashsalt": "mer-data", "svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
             "axes.spines.right": False}

PAGE_STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --panel: #f6f8fa;
        --error: #cf222e; --warning: #9a6700; --ok: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
p.meta, p.note, figcaption { color: var(--muted); }
p.empty { color: var(--muted); font-style: italic; background: var(--panel); padding: 10px 14px; border-radius: 6px; }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; background: var(--panel); padding: 1px 4px;
       border-radius: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
        background: var(--panel); }
.card .value { font-size: 26px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 13px; }
.status { display: inline-block; font-weight: 700; padding: 4px 12px; border-radius: 999px; color: #fff; }
.status.ok { background: var(--ok); } .status.failed { background: var(--error); }
.error { color: var(--error); } .warning { color: var(--warning); }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.where { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
tr.flagged td { background: #fff1f0; }
details { border: 1px solid var(--line); border-radius: 8px; margin: 10px 0; padding: 0 12px; }
details > summary { cursor: pointer; padding: 8px 0; font-weight: 600; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 999px;
         border: 1px solid currentColor; margin-right: 6px; }
figure.plot { margin: 12px 0 20px; padding: 8px; border: 1px solid var(--line); border-radius: 8px; }
figure.plot svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; margin-top: 6px; }
"""


def render_html(report: dict, path: Path) -> Path:
    """Write the report as a self-contained HTML page to `path`; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(report), encoding="utf-8")
    return path


def report_html(report: dict) -> str:
    """The whole page as a string."""
    stats = report.get("stats") or {}
    target = report.get("target") or {}
    with rc_context(SVG_STYLE):  # figures take the style when their axes are made
        sections = [
            _summary_section(report, stats),
            _findings_section(report),
            _durations_section(stats.get("durations")),
            _labels_section(stats.get("labels_per_split")),
            _av_sync_section(stats.get("av_sync")),
            _faces_section(stats.get("face_detection_rate")),
            _leakage_section(stats.get("leakage")),
        ]
    title = f"mer validate: {target.get('path') or 'report'}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_text(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# Sections


def _summary_section(report: dict, stats: dict) -> str:
    target, tool, counts = report.get("target") or {}, report.get("tool") or {}, report.get("counts") or {}
    ok = bool(report.get("ok"))
    status = '<span class="status ok">OK</span>' if ok else '<span class="status failed">PROBLEMS FOUND</span>'
    items = stats.get("items") or {}
    cards = [_card(counts.get("errors", 0), "errors", "error" if counts.get("errors") else ""),
             _card(counts.get("warnings", 0), "warnings", "warning" if counts.get("warnings") else "")]
    cards += [_card(value, name) for name, value in items.items() if value is not None]
    flagged = _flagged_offsets(stats.get("av_sync"))
    if flagged is not None:
        cards.append(_card(flagged, "A/V offsets flagged", "warning" if flagged else ""))
    options = report.get("options") or {}
    option_text = ", ".join(f"{_text(k)}={_text(_plain(v))}" for k, v in options.items())
    return (
        '<section id="summary">\n'
        f"<h1>Validation report {status}</h1>\n"
        f'<p class="meta">{_text(target.get("kind") or "unknown target")}: '
        f'<code>{_text(target.get("path") or "")}</code>'
        f" &middot; {_text(tool.get('name') or 'mer-data')} {_text(tool.get('version') or '')}"
        f" &middot; report schema {_text(report.get('schema_version') or '?')}</p>\n"
        f'<div class="cards">{"".join(cards)}</div>\n'
        + (f'<p class="note">Options: {option_text}</p>\n' if option_text else "")
        + "</section>"
    )


def _card(value: Any, label: str, tone: str = "") -> str:
    return (f'<div class="card"><div class="value {tone}">{_text(_plain(value))}</div>'
            f'<div class="label">{_text(label)}</div></div>')


def _flagged_offsets(av_sync: dict | None) -> int | None:
    if not av_sync or av_sync.get("offsets") is None:
        return None
    return sum(bool(entry.get("flagged")) for entry in av_sync["offsets"])


def _findings_section(report: dict) -> str:
    findings = report.get("findings") or []
    head = '<section id="findings">\n<h2>Findings</h2>\n'
    if not findings:
        return head + '<p class="empty">No findings: nothing to fix.</p>\n</section>'
    by_kind: dict[str, list[dict]] = {}
    for item in findings:
        by_kind.setdefault(str(item.get("kind") or "unknown"), []).append(item)
    # Errors first, then the most frequent kinds.
    order = sorted(by_kind, key=lambda k: (_severity(by_kind[k]) != "error", -len(by_kind[k]), k))
    groups = [_finding_group(kind, by_kind[kind]) for kind in order]
    summary = ", ".join(f"{_text(kind)} {len(by_kind[kind])}" for kind in order)
    return (head + f'<p class="note">{len(findings)} findings by kind: {summary}.</p>\n'
            + "\n".join(groups) + "\n</section>")


def _finding_group(kind: str, items: list[dict]) -> str:
    severity = _severity(items)
    rows = [
        f'<tr><td class="{_text(f.get("severity") or "")}">{_text(f.get("severity") or "")}</td>'
        f'<td class="where">{_text(_where(f))}</td><td>{_text(f.get("id") or "")}</td>'
        f'<td>{_text(f.get("message") or "")}</td></tr>'
        for f in items[:MAX_FINDING_ROWS_PER_KIND]
    ]
    more = len(items) - MAX_FINDING_ROWS_PER_KIND
    tail = f'<p class="note">{more} more {_text(kind)} findings are in the JSON report.</p>' if more > 0 else ""
    return (
        f'<details open class="kind" data-kind="{_text(kind)}">'
        f'<summary><span class="badge {severity}">{severity}</span>'
        f"{_text(kind)} ({len(items)})</summary>\n"
        "<table><thead><tr><th>severity</th><th>file:line</th><th>id</th><th>message</th></tr></thead><tbody>\n"
        + "\n".join(rows) + f"\n</tbody></table>{tail}</details>"
    )


def _severity(findings: list[dict]) -> str:
    """A group's severity: error if any of its findings is one."""
    return "error" if any(f.get("severity") == "error" for f in findings) else "warning"


def _where(finding: dict) -> str:
    place = str(finding.get("file") or "")
    if finding.get("line") is not None:
        place += f":{finding['line']}"
    return place or "\u2014"


def _durations_section(durations: dict | None) -> str:
    head = '<section id="durations">\n<h2>Durations</h2>\n'
    series = {name: _numbers((durations or {}).get(name)) for name in ("interval", "audio", "video")}
    present = {name: values for name, values in series.items() if len(values)}
    if not present:
        return head + '<p class="empty">No durations in this report.</p>\n</section>'
    figure = Figure(figsize=(9, 2.8), layout="constrained")
    axes = figure.subplots(1, 3, sharey=False)
    for ax, (name, values) in zip(axes, series.items()):
        ax.set_title(f"{name} ({len(values)})")
        ax.set_xlabel("seconds")
        if len(values):
            ax.hist(values, bins=_bins(values), color=COLOURS[name])
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#777777")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0].set_ylabel("utterances")
    caption = "; ".join(f"{name}: {_describe(values)}" for name, values in present.items())
    return head + _svg_figure(figure, "durations", f"Per utterance or sample, in seconds. {caption}.") + "\n</section>"


def _labels_section(labels_per_split: dict | None) -> str:
    head = '<section id="labels">\n<h2>Labels per split</h2>\n'
    splits = _ordered_splits(labels_per_split or {})
    counts = {split: Counter({str(k): int(v or 0) for k, v in (labels_per_split[split] or {}).items()})
              for split in splits}
    totals = sum(counts.values(), Counter())
    if not totals:
        return head + '<p class="empty">No labels in this report.</p>\n</section>'
    labels = [label for label, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(labels))
    width = 0.8 / len(splits)
    for index, split in enumerate(splits):
        ax.bar(x + (index - (len(splits) - 1) / 2) * width, [counts[split][label] for label in labels], width,
               label=split, color=_split_colour(split, index))
    ax.set_xticks(x, labels)
    ax.set_ylabel("utterances")
    ax.legend(frameon=False)
    header = "".join(f'<th class="num">{_text(split)}</th>' for split in splits)
    rows = "".join(
        f"<tr><td>{_text(label)}</td>" + "".join(f'<td class="num">{counts[split][label]}</td>' for split in splits)
        + f'<td class="num">{totals[label]}</td></tr>'
        for label in labels
    )
    table = (f'<table><thead><tr><th>label</th>{header}<th class="num">all</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    per_split = ", ".join(f"{split} {sum(counts[split].values())}" for split in splits)
    caption = f"Utterances per label and split; {per_split}."
    return head + _svg_figure(figure, "labels", caption) + "\n" + table + "\n</section>"


def _av_sync_section(av_sync: dict | None) -> str:
    head = ('<section id="av-sync">\n<h2>Audio-video sync</h2>\n'
            '<p class="note">Offset &gt; 0: the audio is late (the sound of a mouth movement comes after it). '
            "Estimated per recording by correlating the speech envelope with the mouth region inside the face "
            "boxes.</p>\n")
    if not av_sync:
        return head + '<p class="empty">A/V sync was not estimated for this report.</p>\n</section>'
    threshold = av_sync.get("threshold_s")
    entries = av_sync.get("offsets") or []
    measured = [e for e in entries if e.get("offset_s") is not None]
    if not measured:
        return head + '<p class="empty">No recording had samples usable for A/V sync.</p>\n</section>'
    draw = _offset_rows_figure if len(measured) <= MAX_OFFSET_ROWS_IN_FIGURE else _offset_histogram_figure
    figure = draw(measured, threshold)
    flagged = sum(bool(e.get("flagged")) for e in entries)
    threshold_text = f"&plusmn;{threshold * 1000:.0f} ms" if threshold is not None else "none"
    caption = (f"{len(measured)} recordings measured, {flagged} beyond the threshold ({threshold_text}, dashed); "
               f"median |offset| {np.median([abs(e['offset_s']) for e in measured]) * 1000:.0f} ms.")
    return head + _svg_figure(figure, "av-offsets", caption) + "\n" + _offset_table(entries) + "\n</section>"


def _offset_rows_figure(entries: list[dict], threshold: float | None) -> Figure:
    entries = sorted(entries, key=lambda e: str(e.get("recording")))
    offsets_ms = np.array([e["offset_s"] * 1000 for e in entries])
    figure = Figure(figsize=(9, 1.2 + 0.22 * len(entries)), layout="constrained")
    ax = figure.subplots()
    y = np.arange(len(entries))
    colours = [COLOURS["flagged"] if e.get("flagged") else COLOURS["ok"] for e in entries]
    ax.barh(y, offsets_ms, color=colours, height=0.6)
    ax.set_yticks(y, [str(e.get("recording")) for e in entries])
    ax.invert_yaxis()
    ax.axvline(0, color="#333333", linewidth=0.8)
    limit = max(float(np.max(np.abs(offsets_ms))), (threshold or 0) * 1000) * 1.15 or 100.0
    _threshold_lines(ax, threshold)
    ax.set_xlim(-limit, limit)
    ax.set_xlabel("A/V offset (ms; > 0: audio late)")
    return figure


def _offset_histogram_figure(entries: list[dict], threshold: float | None) -> Figure:
    offsets_ms = np.array([e["offset_s"] * 1000 for e in entries])
    flagged = np.array([bool(e.get("flagged")) for e in entries])
    figure = Figure(figsize=(9, 3), layout="constrained")
    ax = figure.subplots()
    bins = _bins(offsets_ms)
    ax.hist([offsets_ms[~flagged], offsets_ms[flagged]], bins=bins, stacked=True,
            color=[COLOURS["ok"], COLOURS["flagged"]], label=["within threshold", "flagged"])
    _threshold_lines(ax, threshold)
    ax.set_xlabel("A/V offset (ms; > 0: audio late)")
    ax.set_ylabel("recordings")
    ax.legend(frameon=False)
    return figure


def _threshold_lines(ax, threshold: float | None) -> None:
    if threshold is not None:
        for sign in (-1, 1):
            ax.axvline(sign * threshold * 1000, color=COLOURS["threshold"], linestyle="--", linewidth=1)


def _offset_table(entries: list[dict]) -> str:
    # Flagged first, then the largest offsets.
    ordered = sorted(entries, key=lambda e: (not e.get("flagged"), -abs(e.get("offset_s") or 0.0),
                                             str(e.get("recording"))))
    rows = []
    for entry in ordered[:MAX_OFFSET_TABLE_ROWS]:
        offset = entry.get("offset_s")
        rows.append(
            f'<tr class="{"flagged" if entry.get("flagged") else ""}"><td>{_text(entry.get("recording") or "")}</td>'
            f'<td class="num">{"" if offset is None else f"{offset * 1000:+.0f}"}</td>'
            f'<td class="num">{_text(_number(entry.get("offset_frames"), "+.1f"))}</td>'
            f'<td class="num">{_text(_number(entry.get("confidence"), ".2f"))}</td>'
            f'<td class="num">{_text(_plain(entry.get("utterances")))}</td>'
            f'<td>{"yes" if entry.get("flagged") else ""}</td></tr>'
        )
    more = len(entries) - MAX_OFFSET_TABLE_ROWS
    tail = f'<p class="note">{more} more recordings are in the JSON report.</p>' if more > 0 else ""
    return ('<table id="av-offsets-table"><thead><tr><th>recording</th><th class="num">offset (ms)</th>'
            '<th class="num">frames</th><th class="num">confidence</th><th class="num">utterances</th>'
            "<th>flagged</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + tail)


def _faces_section(face_rate: dict | None) -> str:
    head = '<section id="faces">\n<h2>Face detection rate</h2>\n'
    values = _numbers((face_rate or {}).get("per_sample"))
    if not len(values):
        return (head + '<p class="empty">No face-detection rates in this report (they exist for shards only).</p>\n'
                "</section>")
    figure = Figure(figsize=(9, 2.8), layout="constrained")
    ax = figure.subplots()
    ax.hist(values, bins=np.linspace(0, 1, 21), color=COLOURS["faces"])
    mean = face_rate.get("mean")
    mean = float(np.mean(values)) if mean is None else float(mean)
    ax.axvline(mean, color="#333333", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of sampled frames with a detected face")
    ax.set_ylabel("samples")
    caption = f"{len(values)} samples; mean {mean:.3f} (dashed); {int(np.sum(values < 0.5))} below 0.5."
    return head + _svg_figure(figure, "faces", caption) + "\n</section>"


def _leakage_section(leakage: dict | None) -> str:
    head = ('<section id="leakage">\n<h2>Split leakage</h2>\n'
            '<p class="note">Dialogs, speakers or videos found in more than one split. IEMOCAP&#x27;s published '
            "random split leaks dialogs and speakers by design; leave-one-session-out does not.</p>\n")
    if not leakage:
        return head + '<p class="empty">No leakage information in this report.</p>\n</section>'
    rows = []
    for kind, facts in leakage.items():
        if facts is None:
            rows.append(f"<tr><td>{_text(kind)}</td><td class=\"num\">\u2014</td><td>not checked</td></tr>")
            continue
        examples = ", ".join(_plain(example) for example in (facts.get("examples") or []))
        count = int(facts.get("count") or 0)
        rows.append(f'<tr class="{"flagged" if count else ""}"><td>{_text(kind)}</td>'
                    f'<td class="num">{count}</td><td>{_text(examples)}</td></tr>')
    return (head + '<table id="leakage-table"><thead><tr><th>what</th><th class="num">in several splits</th>'
            "<th>examples</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>\n</section>")


# --------------------------------------------------------------------------------------------
# Helpers


def _svg_figure(figure: Figure, name: str, caption: str) -> str:
    """The figure as inline SVG in a <figure> element (caption: trusted HTML)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _inline_svg(buffer.getvalue(), prefix=name)
    return f'<figure class="plot" id="fig-{name}">\n{svg}\n<figcaption>{caption}</figcaption>\n</figure>'


_XML_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'(url\(#|href="#)([^")]+)')


def _inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element for an HTML page: no XML prologue or RDF metadata, no
    namespace URLs (the HTML parser supplies them), and ids prefixed so that several figures on
    one page never share one."""
    svg = _METADATA.sub("", _XML_PROLOGUE.sub("", svg, count=1))
    svg = _NAMESPACES.sub("", svg)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    return _REFERENCE.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg).strip()


def _numbers(values: Iterable[Any] | None) -> np.ndarray:
    """The finite numbers among values (null entries and NaN dropped)."""
    numbers = [v for v in (values or []) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    array = np.array(numbers, dtype=float)
    return array[np.isfinite(array)]


def _bins(values: np.ndarray) -> np.ndarray | int:
    if np.ptp(values) == 0:
        return 1
    return min(40, max(5, int(np.sqrt(len(values))) * 2))


def _describe(values: np.ndarray) -> str:
    return f"n={len(values)}, min {values.min():.2f}, median {np.median(values):.2f}, max {values.max():.2f}"


def _ordered_splits(labels_per_split: dict) -> list[str]:
    known = [s for s in SPLITS if s in labels_per_split]
    return known + sorted(s for s in labels_per_split if s not in SPLITS)


def _split_colour(split: str, index: int) -> str:
    return SPLIT_COLOURS.get(split) or OTHER_SPLIT_COLOURS[index % len(OTHER_SPLIT_COLOURS)]


def _number(value: Any, spec: str) -> str:
    return "" if value is None else format(float(value), spec)


def _plain(value: Any) -> str:
    """A JSON value as short readable text."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if value is None:
        return "\u2014"
    return str(value)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)
