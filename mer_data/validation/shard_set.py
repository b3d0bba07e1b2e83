"""Audit of a shard folder as a whole, once every shard's task is in (shard_audit.py).

    plan = plan_shard_audit(folder)       # the shards to audit, and the dataset card
    audits = [audit_shard(path, options) for path in plan.shards]     # one Dask task each
    report = finish_shard_audit(plan, audits, options)

Checks across shards and against the side files of the shard contract:
- duplicate keys across shards;
- index.parquet: one row per sample, with the sample's shard, position and split;
- dataset.json: valid (schema and sums); its shard list, per-shard counts, bytes and SHA-256,
  its counts per split and label, its error counts and the checksums of the side files agree
  with what is on disk;
- errors.jsonl: every line an error record; each rejected utterance is a warning (the shards
  themselves are fine: the conversion said what it left out, and why), counted by stage and kind
  in `stats.error_log`;
- split leakage: dialogs (recordings), speakers and source videos in more than one split, with
  the split preset's own note (IEMOCAP's dai2021 split leaks dialogs by design);
- A/V offsets: the curves of each recording's samples combined (av_sync.offsets_by_recording).
"""
from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer_data.records import Problem
from mer_data.shards.card import card_problems, problem_kind  # the card's errors.by_kind kinds, here too
from mer_data.shards.hashing import sha256_file
from mer_data.shards.layout import CARD_NAME, ERRORS_NAME, INDEX_NAME, SHARD_NAME, SPLITS
from mer_data.validation.findings import Finding, Report, finding
from mer_data.validation.options import ValidateOptions
from mer_data.validation.shard_audit import SampleFacts, ShardAudit, av_sync_available

LEAKAGE_EXAMPLES = 10
# Leakage dimensions: report name -> the sample fact that names the unit.
LEAKAGE_UNITS = {"dialogs": "recording", "speakers": "speaker", "videos": "video_source"}


@dataclass
class ShardSetPlan:
    root: Path
    shards: list[Path]
    card: dict | None  # None where dataset.json is missing or invalid (then nothing is compared with it)
    findings: list[Finding]


def plan_shard_audit(path: Path) -> ShardSetPlan:
    root = Path(path).resolve()
    findings: list[Finding] = []
    shards = []
    for tar in sorted(root.glob("*.tar")):
        if SHARD_NAME.match(tar.name):
            shards.append(tar)
        else:
            findings.append(finding("unexpected-file", "not named {split}-NNNNNN.tar: not audited", file=tar.name))
    return ShardSetPlan(root, shards, _load_card(root, findings), findings)


def _load_card(root: Path, findings: list[Finding]) -> dict | None:
    path = root / CARD_NAME
    if not path.is_file():
        findings.append(finding("missing-file", "no dataset.json: the conversion did not finish, or the card was "
                                "removed; nothing is compared with it", file=CARD_NAME))
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        findings.append(finding("card-invalid", f"not UTF-8 JSON: {error}", file=CARD_NAME))
        return None
    problems = card_problems(card) if isinstance(card, dict) else ["<root>: not a JSON object"]
    if problems:
        findings.append(finding("card-invalid", "; ".join(problems), file=CARD_NAME, problems=problems))
        return None
    return card


def failed_shard(path: Path, reason: str) -> ShardAudit:
    """The audit of a shard whose task crashed: one finding, and nothing compared with the card."""
    audit = ShardAudit(Path(path).name, -1, "", completed=False)
    audit.findings.append(finding("task-failed", f"shard not audited: {reason}", file=Path(path).name))
    return audit


# --------------------------------------------------------------------------------------------


def finish_shard_audit(plan: ShardSetPlan, audits: list[ShardAudit], options: ValidateOptions) -> Report:
    samples = [sample for audit in audits for sample in audit.samples]
    entries, log_findings = read_error_log(plan.root)
    leakage = measure_leakage(samples)
    av_sync, av_findings = av_sync_stats(audits, samples, options)
    findings = list(plan.findings) + [f for audit in audits for f in audit.findings] + log_findings + av_findings
    unaudited = {audit.shard for audit in audits if not audit.completed}
    findings += duplicate_keys(audits)
    findings += index_findings(plan.root, samples, unaudited)
    findings += leakage_findings(leakage, plan.card)
    if not unaudited:  # a crashed shard's samples are unknown: its split may not be empty
        findings += empty_split_findings(samples, plan.card)
    if plan.card is not None:
        findings += card_findings(plan.card, plan.root, audits, samples, entries)
    stats = {
        "items": {"shards": len(audits), "samples": len(samples),
                  "recordings": len({s.recording for s in samples if s.recording is not None})},
        "durations": {name: [round(v, 4) for s in samples if (v := getattr(s, f"{name}_s")) is not None]
                      for name in ("interval", "audio", "video")},
        "labels_per_split": labels_per_split(samples),
        "face_detection_rate": _face_rates(samples),
        "leakage": leakage,
        "av_sync": av_sync,
        "error_log": _error_log_stats(entries) if entries is not None else None,
    }
    return Report("shards", str(plan.root), findings, stats, options)


def _split_of(sample: SampleFacts) -> str | None:
    """The sample's own split, else (unusable metadata) its shard's."""
    if sample.split is not None:
        return sample.split
    match = SHARD_NAME.match(sample.shard)
    return match["split"] if match else None


def labels_per_split(samples: list[SampleFacts]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        if sample.split is not None:
            counts[sample.split].update(sample.labels)
    order = [split for split in SPLITS if split in counts] + sorted(set(counts) - set(SPLITS))
    return {split: dict(sorted(counts[split].items())) for split in order}


def _face_rates(samples: list[SampleFacts]) -> dict[str, Any]:
    rates = [s.face_rate for s in samples if s.face_rate is not None]
    return {"per_sample": [round(r, 4) for r in rates], "mean": round(statistics.fmean(rates), 4) if rates else None}


# --------------------------------------------------------------------------------------------
# Duplicates and the index


def duplicate_keys(audits: list[ShardAudit]) -> list[Finding]:
    """Keys held by more than one shard (a key repeated inside one shard is that shard's finding)."""
    first_shard: dict[str, str] = {}
    findings = []
    for audit in audits:
        for key in dict.fromkeys(sample.key for sample in audit.samples):
            first = first_shard.setdefault(key, audit.shard)
            if first != audit.shard:
                findings.append(finding("duplicate-key", f"also in {first}", file=audit.shard, id=key, first=first))
    return findings


def index_findings(root: Path, samples: list[SampleFacts], unaudited: set[str] = frozenset()) -> list[Finding]:
    """index.parquet against the samples: one finding per key on which they disagree. Rows of
    `unaudited` shards (their task crashed: that is their finding) are not compared."""
    path = root / INDEX_NAME
    if not path.is_file():
        return [finding("missing-file", "no index.parquet", file=INDEX_NAME)]
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path, columns=["key", "split", "shard", "position"]).to_pylist()
    except Exception as error:  # pyarrow raises several types for damaged files and missing columns
        return [finding("unreadable-file", f"cannot read the index: {error}", file=INDEX_NAME)]
    held: dict[str, list[SampleFacts]] = defaultdict(list)
    for sample in samples:
        held[sample.key].append(sample)
    findings: list[Finding] = []
    listed: set[str] = set()
    for row in rows:
        key = row["key"]
        if key in listed:
            findings.append(finding("index-mismatch", "listed twice in the index", file=INDEX_NAME, id=key))
            continue
        listed.add(key)
        if row["shard"] in unaudited:
            continue
        problem = _index_row_problem(row, held.get(key, []))
        if problem:
            findings.append(finding("index-mismatch", problem, file=INDEX_NAME, id=key, row=row))
    for key, copies in held.items():
        if key not in listed:
            findings.append(finding("index-mismatch", f"in {copies[0].shard} but not in the index", file=INDEX_NAME,
                                    id=key))
    return findings


def _index_row_problem(row: dict, copies: list[SampleFacts]) -> str | None:
    if not copies:
        return f"the index puts it in {row['shard']}, but no shard holds it"
    sample = next((s for s in copies if s.shard == row["shard"]), None)
    if sample is None:
        return f"the index puts it in {row['shard']}, but it is in {', '.join(s.shard for s in copies)}"
    differences = []
    if row["position"] != sample.position:
        differences.append(f"position {row['position']} in the index, {sample.position} in the shard")
    if sample.split is not None and row["split"] != sample.split:
        differences.append(f"split {row['split']} in the index, {sample.split} in its metadata")
    return "; ".join(differences) or None


# --------------------------------------------------------------------------------------------
# The dataset card


def card_findings(card: dict, root: Path, audits: list[ShardAudit], samples: list[SampleFacts],
                  entries: list[Problem] | None) -> list[Finding]:
    """The card against the folder; its counts only where every shard was audited (a crashed
    shard's samples are unknown, and the crash is its finding)."""
    counts = _card_count_findings(card, samples, entries) if all(a.completed for a in audits) else []
    return _card_shard_findings(card, audits) + counts + _checksum_findings(card, root)


def _card_shard_findings(card: dict, audits: list[ShardAudit]) -> list[Finding]:
    listed = {shard["name"]: shard for shard in card["shards"]}
    on_disk = {audit.shard: audit for audit in audits}
    findings = [finding("missing-file", f"dataset.json lists {name} ({listed[name]['count']} samples), but it is "
                        "not in the folder", file=name) for name in sorted(set(listed) - set(on_disk))]
    for name, audit in sorted(on_disk.items()):
        record = listed.get(name)
        if record is None:
            findings.append(finding("card-mismatch", "the shard is not listed in dataset.json", file=name))
            continue
        if not audit.completed:  # its task crashed: nothing is known about it
            continue
        if len(audit.samples) != record["count"]:
            findings.append(finding("card-mismatch", f"holds {len(audit.samples)} samples; dataset.json says "
                                    f"{record['count']}", file=name, samples=len(audit.samples), card=record["count"]))
        if (audit.bytes, audit.sha256) != (record["bytes"], record["sha256"]):
            findings.append(finding("checksum-mismatch",
                                    f"{audit.bytes} bytes, SHA-256 {audit.sha256[:12]}...; dataset.json says "
                                    f"{record['bytes']} bytes, {record['sha256'][:12]}...", file=name,
                                    bytes=audit.bytes, sha256=audit.sha256,
                                    card={"bytes": record["bytes"], "sha256": record["sha256"]}))
    return findings


def _card_count_findings(card: dict, samples: list[SampleFacts], entries: list[Problem] | None) -> list[Finding]:
    """The card's sample and error counts against the shards and errors.jsonl: one finding."""
    per_split = Counter(_split_of(s) for s in samples)
    actual: dict[str, Any] = {
        "counts.total": len(samples),
        **{f"counts.per_split.{split}": per_split.get(split, 0) for split in SPLITS},
    }
    by_label = labels_per_split(samples)
    for split in sorted(set(by_label) | set(card["counts"]["per_split_label"])):
        for label in sorted(set(by_label.get(split, {})) | set(card["counts"]["per_split_label"].get(split, {}))):
            actual[f"counts.per_split_label.{split}.{label}"] = by_label.get(split, {}).get(label, 0)
    if entries is not None:
        actual["errors.count"] = len(entries)
        stages = Counter(entry.stage for entry in entries)
        for stage in sorted(set(stages) | set(card["errors"]["by_stage"])):
            actual[f"errors.by_stage.{stage}"] = stages.get(stage, 0)
    differences = {}
    for field_name, value in actual.items():
        said = _card_value(card, field_name)
        if said != value:
            differences[field_name] = {"card": said, "found": value}
    if not differences:
        return []
    shown = "; ".join(f"{name} {d['card']} (found {d['found']})" for name, d in list(differences.items())[:8])
    more = f"; and {len(differences) - 8} more" if len(differences) > 8 else ""
    return [finding("card-mismatch", f"dataset.json says {shown}{more}", file=CARD_NAME, differences=differences)]


def _card_value(card: dict, dotted: str) -> Any:
    """card["a"]["b"]... for "a.b...", 0 where a count is absent (the card leaves out empty ones)."""
    value: Any = card
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return 0
        value = value[part]
    return value


def _checksum_findings(card: dict, root: Path) -> list[Finding]:
    findings = []
    for name, digest in sorted(card["checksums"].items()):
        path = root / name
        if not path.is_file():
            if name not in (INDEX_NAME, ERRORS_NAME):  # those two have findings of their own
                findings.append(finding("missing-file", f"dataset.json has a checksum of {name}, but it is absent",
                                        file=name))
            continue
        actual = sha256_file(path)
        if actual != digest:
            findings.append(finding("checksum-mismatch", f"SHA-256 {actual[:12]}...; dataset.json says {digest[:12]}...",
                                    file=name, sha256=actual, card=digest))
    return findings


# --------------------------------------------------------------------------------------------
# errors.jsonl


def read_error_log(root: Path) -> tuple[list[Problem] | None, list[Finding]]:
    """The error records (None where the file is missing) and the findings: a warning per
    rejected utterance, an error per line that is not a record."""
    path = root / ERRORS_NAME
    if not path.is_file():
        return None, [finding("missing-file", "no errors.jsonl: what the conversion left out is unknown",
                              file=ERRORS_NAME)]
    entries: list[Problem] = []
    findings: list[Finding] = []
    for number, text in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = error_record(json.loads(text))
        except (json.JSONDecodeError, TypeError) as error:
            findings.append(finding("error-log-invalid", f"not an error record (file, line, reason, utterance, "
                                    f"stage): {error}", file=ERRORS_NAME, line=number))
            continue
        entries.append(entry)
        findings.append(finding("rejected-utterance", f"not converted ({entry.stage}): {entry.reason}",
                                file=entry.file, line=entry.line, id=entry.utterance, stage=entry.stage,
                                log=f"{ERRORS_NAME}:{number}"))
    return entries, findings


# The types of an error record's fields: what the findings and the card's counts compute with.
_RECORD_TYPES = {"file": (str,), "line": (int, type(None)), "reason": (str,), "utterance": (str, type(None)),
                 "stage": (str,)}
_TYPE_NAMES = {str: "a string", int: "an integer", type(None): "null"}


def error_record(value: Any) -> Problem:
    """An errors.jsonl line as a Problem; TypeError naming the field whose value is of the wrong type."""
    if not isinstance(value, dict):
        raise TypeError(f"a JSON {type(value).__name__}, not an object")
    entry = Problem(**value)  # TypeError for a missing or unknown field
    for name, types in _RECORD_TYPES.items():
        field_value = getattr(entry, name)
        if not isinstance(field_value, types) or isinstance(field_value, bool):
            raise TypeError(f"{name} is {json.dumps(field_value)}, not {' or '.join(_TYPE_NAMES[t] for t in types)}")
    return entry


def _error_log_stats(entries: list[Problem]) -> dict[str, Any]:
    return {"count": len(entries),
            "by_stage": dict(sorted(Counter(entry.stage for entry in entries).items())),
            "by_kind": dict(sorted(Counter(problem_kind(entry) for entry in entries).items()))}


# --------------------------------------------------------------------------------------------
# Leakage and A/V offsets


def measure_leakage(samples: list[SampleFacts]) -> dict[str, dict[str, Any]]:
    """Per unit (dialogs, speakers, videos): how many are in more than one split, with examples."""
    leakage = {}
    for name, attribute in LEAKAGE_UNITS.items():
        splits_of: dict[str, Counter] = defaultdict(Counter)
        for sample in samples:
            unit = getattr(sample, attribute)
            if unit is not None and sample.split is not None:
                splits_of[unit][sample.split] += 1
        leaked = sorted(unit for unit, splits in splits_of.items() if len(splits) > 1)
        examples = [f"{unit} ({', '.join(f'{s} {splits_of[unit][s]}' for s in _ordered(splits_of[unit]))})"
                    for unit in leaked[:LEAKAGE_EXAMPLES]]
        leakage[name] = {"count": len(leaked), "examples": examples}
    return leakage


def _ordered(splits: Counter) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(set(splits) - set(SPLITS))


def leakage_findings(leakage: dict[str, dict[str, Any]], card: dict | None) -> list[Finding]:
    leaked = [f"{name} {facts['count']}" for name, facts in leakage.items() if facts["count"]]
    if not leaked:
        return []
    preset = (card or {}).get("options", {}).get("split")
    note = (card or {}).get("split_report", {}).get("note")
    message = f"in more than one split: {', '.join(leaked)}"
    if preset:
        message += f" (split {preset}" + (f": {note})" if note else ")")
    return [finding("split-leakage", message, split=preset, **{name: facts["count"] for name, facts in leakage.items()})]


def empty_split_findings(samples: list[SampleFacts], card: dict | None) -> list[Finding]:
    """A finding per split without samples, quoting the conversion's own warning (its reason and
    what to do) where the card has one; an empty train split is an error."""
    present = Counter(_split_of(sample) for sample in samples)
    said = {warning.split()[1]: warning for warning in (card or {}).get("warnings", [])
            if warning.startswith("the ") and " split is empty" in warning}
    findings = []
    for split in SPLITS:
        if present.get(split):
            continue
        message = said.get(split, f"the {split} split is empty: no {split}-*.tar sample in the folder")
        kind = "empty-train-split" if split == "train" else "empty-split"
        findings.append(finding(kind, message, split=split))
    return findings


def av_sync_stats(audits: list[ShardAudit], samples: list[SampleFacts],
                  options: ValidateOptions) -> tuple[dict[str, Any] | None, list[Finding]]:
    """Per-recording offsets from the samples' curves; None where A/V sync did not run."""
    if not (options.av_sync and av_sync_available()):
        return None, []
    from mer_data.validation.av_sync import offsets_by_recording

    curves = [curve for audit in audits for curve in audit.curves]
    estimates = offsets_by_recording(curves)
    offsets = [estimate.to_dict(options.av_threshold_s) for estimate in estimates]
    measured = {entry["recording"] for entry in offsets}
    findings = [_offset_finding(entry, options.av_threshold_s) for entry in offsets if entry["flagged"]]
    stats = {
        "threshold_s": options.av_threshold_s,
        "unit": "recording",
        "offsets": offsets,
        "samples_used": len(curves),
        "recordings_without_estimate": sorted({s.recording for s in samples if s.recording is not None} - measured),
    }
    return stats, findings


def _offset_finding(entry: dict, threshold_s: float) -> Finding:
    offset = entry["offset_s"]
    direction = "late" if offset > 0 else "early"
    return finding("av-offset",
                   f"audio {direction} by {abs(offset) * 1000:.0f} ms ({entry['offset_frames']:+.1f} frames, confidence "
                   f"{entry['confidence']:.2f}, {entry['utterances']} utterances); threshold {threshold_s * 1000:.0f} ms",
                   id=entry["recording"], **entry)
