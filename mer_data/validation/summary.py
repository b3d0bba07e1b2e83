"""The terminal summary of a validation report: verdict, a table of finding kinds, the first
findings, and the key statistics. Styled with click (colours vanish when the output is not a
terminal: click.echo strips them).

    click.echo(render_summary(report.to_dict()))
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

import click

SHOWN_FINDINGS = 20
SEVERITY_COLOURS = {"error": "red", "warning": "yellow"}


def render_summary(report: dict[str, Any], shown_findings: int = SHOWN_FINDINGS) -> str:
    """The whole summary as one (styled) string."""
    parts = [_headline(report), _kind_table(report["findings"]), _first_findings(report["findings"], shown_findings),
             _stats_lines(report["stats"], report["target"]["kind"])]
    return "\n\n".join(part for part in parts if part)


def _headline(report: dict[str, Any]) -> str:
    target, counts, items = report["target"], report["counts"], report["stats"]["items"]
    what = ", ".join(f"{value} {name}" for name, value in items.items())
    verdict = click.style("OK", fg="green", bold=True) if report["ok"] else click.style("FAILED", fg="red", bold=True)
    strict = " (--strict: warnings fail too)" if report.get("options", {}).get("strict") else ""
    return (f"mer validate: {target['kind']} at {target['path']} ({what})\n"
            f"{verdict}: {_plural(counts['errors'], 'error')}, {_plural(counts['warnings'], 'warning')}{strict}")


def _kind_table(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return ""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for item in findings:
        by_kind[item["kind"]].append(item)
    order = sorted(by_kind, key=lambda kind: (by_kind[kind][0]["severity"] != "error", -len(by_kind[kind]), kind))
    width = max(len(kind) for kind in order)
    lines = [click.style(f"{'severity':<8}  {'kind':<{width}}  {'count':>5}  first", bold=True)]
    for kind in order:
        first = by_kind[kind][0]
        severity = click.style(f"{first['severity']:<8}", fg=SEVERITY_COLOURS[first["severity"]])
        lines.append(f"{severity}  {kind:<{width}}  {len(by_kind[kind]):>5}  {_where(first) or first['message']}")
    return "\n".join(lines)


def _first_findings(findings: list[dict[str, Any]], shown: int) -> str:
    if not findings:
        return ""
    ordered = sorted(findings, key=lambda f: f["severity"] != "error")  # stable: keeps the report's order
    how_many = "all" if len(findings) <= shown else f"first {shown} of"
    head = f"Findings ({how_many} {len(findings)}; every one is in the JSON report):"
    lines = [click.style(head, bold=True)]
    for item in ordered[:shown]:
        colour = SEVERITY_COLOURS[item["severity"]]
        where = _where(item)
        lines.append(f"  {click.style(item['kind'], fg=colour)}  {where + ': ' if where else ''}{item['message']}")
    return "\n".join(lines)


def _where(item: dict[str, Any]) -> str:
    place = item.get("file") or ""
    if item.get("line") is not None:
        place += f":{item['line']}"
    if item.get("id"):
        place += f" [{item['id']}]" if place else f"[{item['id']}]"
    return place


def _stats_lines(stats: dict[str, Any], target_kind: str) -> str:
    rows = [("durations (s)", _durations(stats.get("durations") or {})),
            ("labels", _labels(stats.get("labels_per_split") or {})),
            ("faces", _faces(stats.get("face_detection_rate"))),
            ("split leakage", _leakage(stats.get("leakage"))),
            ("A/V offsets", _av_sync(stats.get("av_sync")) if target_kind == "shards" else ""),
            ("error log", _error_log(stats.get("error_log")))]
    shown = [(name, text) for name, text in rows if text]
    width = max(len(name) for name, _ in shown)
    return "\n".join(click.style(f"{name:<{width}}", bold=True) + f"  {text}" for name, text in shown)


def _durations(durations: dict[str, list[float]]) -> str:
    parts = []
    for name, values in durations.items():
        values = [value for value in values if value is not None]  # a non-finite number is null in the JSON report
        if values:
            parts.append(f"{name} n={len(values)} min {min(values):.2f} median {statistics.median(values):.2f} "
                         f"max {max(values):.2f}")
    return " | ".join(parts)


def _labels(per_split: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{split}: " + ", ".join(f"{label} {count}" for label, count in counts.items())
                     for split, counts in per_split.items())


def _faces(face_rate: dict[str, Any] | None) -> str:
    if not face_rate or face_rate.get("mean") is None:
        return ""
    rates = face_rate["per_sample"]
    faceless = sum(rate == 0 for rate in rates)
    return f"mean detection rate {face_rate['mean']:.2f}; {faceless} of {len(rates)} samples without any face"


def _leakage(leakage: dict[str, Any] | None) -> str:
    if leakage is None:
        return ""
    return ", ".join(f"{name} {facts['count']}" for name, facts in leakage.items()) + " in more than one split"


def _av_sync(av_sync: dict[str, Any] | None) -> str:
    if av_sync is None:
        return "not measured (--no-av-sync)"
    measured = [entry for entry in av_sync["offsets"] if entry.get("offset_s") is not None]
    if not measured:
        return "no recording could be measured"
    largest = max(abs(entry["offset_s"]) for entry in measured)
    flagged = sum(bool(entry.get("flagged")) for entry in av_sync["offsets"])
    return (f"{len(measured)} recordings measured; {flagged} beyond {av_sync['threshold_s'] * 1000:.0f} ms; "
            f"largest |offset| {largest * 1000:.0f} ms")


def _error_log(error_log: dict[str, Any] | None) -> str:
    if error_log is None:
        return ""
    stages = ", ".join(f"{stage} {count}" for stage, count in error_log["by_stage"].items())
    return f"{_plural(error_log['count'], 'rejected utterance')}" + (f" ({stages})" if stages else "")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
