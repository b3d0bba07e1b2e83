"""Findings (one problem each, precise enough to act on) and the report that collects them.

Every finding has a `kind` from KINDS, and the kind fixes its severity, so that a kind means the
same thing in every report: "error" (the data is wrong or unusable as it stands: exit status 1)
or "warning" (worth knowing, usable as it stands: exit status 1 only with --strict).
`file` is relative to the validated root (or, for rejected utterances, to the corpus root the
conversion read), `line` is 1-based, `id` names the utterance, sample or recording concerned.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import mer_data
from mer_data.validation.options import ValidateOptions

REPORT_SCHEMA_VERSION = "1.0"
SEVERITIES = ("error", "warning")
TARGET_KINDS = ("raw-iemocap", "raw-mosei", "shards")


@dataclass(frozen=True)
class Kind:
    severity: str
    description: str


KINDS: dict[str, Kind] = {
    # Annotation files of a raw release
    "missing-file": Kind("error", "a file the layout requires is absent"),
    "unreadable-file": Kind("error", "a file exists but cannot be read"),
    "empty-annotation-file": Kind("error", "a label file without a single entry (emptied, or only its header): its "
                                  "dialog is not converted"),
    "unexpected-file": Kind("warning", "a file in an annotation folder that is not named like one (ignored)"),
    "undecodable-line": Kind("error", "a line that is not text in the expected encoding (its utterance is lost)"),
    "non-utf8-text": Kind("warning", "a line decoded as cp1252, not UTF-8 (IEMOCAP's known accented bytes)"),
    "malformed-line": Kind("error", "a line that does not follow its file's format"),
    "malformed-labels": Kind("error", "a label file whose structure is broken (groups, columns)"),
    "unknown-code": Kind("error", "a category code outside the corpus's known set"),
    "label-out-of-range": Kind("error", "a label value outside its range (MOSEI sentiment, intensities)"),
    "invalid-id": Kind("error", "an utterance id that cannot be a shard key"),
    "duplicate-id": Kind("error", "an utterance id given twice (in one file or across files)"),
    "label-without-transcript": Kind("error", "a labelled utterance without a transcript line"),
    "transcript-without-label": Kind("warning", "a transcript line whose id has no label (not converted)"),
    "transcript-time-mismatch": Kind("warning", "transcript and label times of an utterance differ"),
    "overlapping-intervals": Kind("warning", "two utterances of the same speaker overlap in time"),
    "annotation-problem": Kind("error", "another problem the corpus reader reported"),
    "missing-word-timings": Kind("warning", "IEMOCAP: an utterance without its ForcedAlignment .wdseg file (its words "
                                 "are null)"),
    "malformed-word-timings": Kind("warning", "IEMOCAP: a .wdseg file out of Sphinx's format (the utterance's words are "
                                   "null; the utterance is converted)"),
    "word-past-utterance-end": Kind("warning", "a word timing outside the utterance's interval"),
    "word-timings-unordered": Kind("warning", "word timings out of time order, overlapping or empty"),
    "word-transcript-mismatch": Kind("warning", "the aligned words differ from the transcript's beyond the threshold"),
    # Media of a raw release
    "missing-media": Kind("error", "a recording's video or audio file is absent"),
    "unreadable-media": Kind("error", "ffprobe cannot read a media file, or it lacks its stream"),
    "missing-audio-channel": Kind("error", "the audio lacks the channel that carries a speaker"),
    "audio-from-video": Kind("warning", "MOSEI: no 16 kHz WAV; the video's own audio track is used"),
    "media-duration-mismatch": Kind("warning", "audio and video of one recording differ in length"),
    "interval-past-media-end": Kind("error", "an utterance interval ends after its audio or video"),
    "truncated-media": Kind("warning", "a video decodes to less than its file claims (cut short)"),
    "video-decode-errors": Kind("warning", "the decoder reported errors in a video (damage its clips may show)"),
    # Shards
    "corrupt-tar": Kind("error", "a shard that is not a complete, readable tar"),
    "bad-member-name": Kind("error", "a tar member that is not a regular file named <key>.<ext>"),
    "member-set": Kind("error", "a sample without exactly the members json, txt, flac, mp4"),
    "duplicate-key": Kind("error", "a sample key present more than once in the shard set"),
    "metadata-invalid": Kind("error", "a json member that breaks schemas/sample.schema.json or names another key"),
    "text-mismatch": Kind("error", "a txt member that is not UTF-8 or differs from the metadata text"),
    "undecodable-audio": Kind("error", "a flac member that soundfile cannot decode"),
    "undecodable-video": Kind("error", "an mp4 member that does not decode (or decodes with errors)"),
    "audio-metadata-mismatch": Kind("error", "decoded audio differs from its metadata (rate, channels, samples)"),
    "video-metadata-mismatch": Kind("error", "decoded video differs from its metadata (frames, size)"),
    "duration-mismatch": Kind("error", "audio, video and annotated interval of a sample differ in length"),
    "low-face-detection-rate": Kind("warning", "few of a sample's sampled frames hold a detected face"),
    "black-video": Kind("warning", "the converter flagged a sample's video as black (video.is_black)"),
    "split-impure-shard": Kind("error", "a sample whose split differs from its shard's"),
    "index-mismatch": Kind("error", "index.parquet disagrees with the shards"),
    "card-invalid": Kind("error", "dataset.json breaks its schema or does not add up"),
    "card-mismatch": Kind("error", "dataset.json disagrees with the shards or the side files"),
    "checksum-mismatch": Kind("error", "a file's bytes differ from the size or SHA-256 the card records"),
    "error-log-invalid": Kind("error", "a line of errors.jsonl that is not an error record"),
    "rejected-utterance": Kind("warning", "an utterance the conversion did not write (errors.jsonl)"),
    "empty-train-split": Kind("error", "no train samples in the folder: nothing to train on"),
    "empty-split": Kind("warning", "no valid (or no test) samples in the folder: mer train needs a valid split"),
    "split-leakage": Kind("warning", "dialogs, speakers or videos present in more than one split"),
    "av-offset": Kind("warning", "a recording's audio-video offset exceeds the threshold"),
    "av-sync-failed": Kind("warning", "the A/V estimator raised on a sample (it is left out of its recording's offset)"),
    # Either
    "task-failed": Kind("error", "a recording or shard could not be audited (its task crashed)"),
}


@dataclass(frozen=True)
class Finding:
    severity: str
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    id: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def sort_key(self) -> tuple:
        return (self.file or "", self.line or 0, self.id or "", self.kind, self.message)

    def where(self) -> str:
        """`file:line [id]`, as much of it as is known."""
        place = self.file or ""
        if self.line is not None:
            place += f":{self.line}"
        if self.id:
            place += f" [{self.id}]" if place else f"[{self.id}]"
        return place

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "kind": self.kind, "message": self.message, "file": self.file,
                "line": self.line, "id": self.id, "details": _json_safe(self.details)}


def finding(kind: str, message: str, *, file: str | None = None, line: int | None = None, id: str | None = None,
            **details: Any) -> Finding:
    """A Finding of a registered kind (its severity comes from KINDS); KeyError for an unknown kind."""
    return Finding(KINDS[kind].severity, kind, message, file, line, id, details)


@dataclass
class Report:
    """What a validation found. `target_kind` is one of TARGET_KINDS; `stats` follows the report
    schema (items, durations, labels_per_split, face_detection_rate, leakage, av_sync, error_log)."""

    target_kind: str
    path: str
    findings: list[Finding]
    stats: dict[str, Any]
    options: ValidateOptions = field(default_factory=ValidateOptions)

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=Finding.sort_key)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    @property
    def ok(self) -> bool:
        """No errors, and with `strict` no warnings either."""
        return self.errors == 0 and not (self.options.strict and self.warnings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "mer-data", "version": mer_data.__version__},
            "target": {"kind": self.target_kind, "path": self.path},
            "ok": self.ok,
            "options": self.options.to_json(),
            "counts": {"errors": self.errors, "warnings": self.warnings,
                       "by_kind": dict(sorted(Counter(f.kind for f in self.findings).items()))},
            "findings": [f.to_dict() for f in self.findings],
            "stats": _json_safe(self.stats),
        }


def _json_safe(value: Any) -> Any:
    """Plain JSON values: tuples as lists, numpy scalars as Python numbers, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, float) and not math.isfinite(number):
            return None
        return number
    return str(value)
