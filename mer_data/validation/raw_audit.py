"""Audit of a raw release (IEMOCAP or CMU-MOSEI): annotations against each other and the media.

    plan = plan_iemocap_audit(root)            # or plan_mosei_audit: cheap, single process
    audits = [audit_recording(job, options) for job in plan.jobs]   # one Dask task per recording
    report = finish_raw_audit(plan, audits, options)

Per recording (an IEMOCAP dialog, a MOSEI video) a task checks:
- annotations (IEMOCAP: the dialog's EmoEvaluation and transcription files, read with the corpus
  reader's own parsers, so that every line the converter would reject is named here with the
  same reason): unreadable and non-UTF-8 lines, malformed lines, unknown codes, duplicate ids,
  label ids without a transcript line and transcript ids without a label, transcript times that
  differ from the label times;
- overlapping intervals of one speaker;
- media (ffprobe): present and readable, with the streams and audio channels the utterances need;
  the video decoded to its end, for its real length (a truncated file keeps the header's frame
  count; a variable-rate one has fewer frames than its length times the rate) and the error
  messages of its decoder (damage it conceals, which the clips would show);
  audio and video of equal length (within `source_duration_tolerance_s`); every interval inside
  both, by the converter's own rule (it ends at most one audio sample and one video frame past
  the media end), so that a clean audit means that no utterance is rejected for its media times.
MOSEI labels are one file for all videos, so they are read once while planning (`read_mosei`).
Across recordings, `finish_raw_audit` finds ids given in two files.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from mer_data.corpora import iemocap, mosei, wdseg
from mer_data.media.audio import SAMPLE_RATE
from mer_data.media.probe import MediaError, MediaNotFoundError, decode_video, probe_media
from mer_data.media.video import claimed_frames, frame_range
from mer_data.records import Problem
from mer_data.validation.findings import Finding, Report, finding
from mer_data.validation.options import ValidateOptions

# Two intervals of one speaker overlap when one starts this much before the other ends; less is
# the rounding of the 4-decimal times.
OVERLAP_EPSILON_S = 1e-4

# The corpus readers' reasons, mapped to finding kinds: first match wins.
_READER_KINDS: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"^undecodable bytes|^not UTF-8 text", "undecodable-line"),
        (rf"^{iemocap.NO_LABEL_BLOCK}:", "empty-annotation-file"),
        (r"^unknown category code", "unknown-code"),
        (r"^duplicate (utterance id|transcript line|clip)", "duplicate-id"),
        (r"^utterance id .*(contains '\.'|starts with '__')", "invalid-id"),
        (r"^file name .* is not a dialog name", "unexpected-file"),
        (r"outside \[|not all finite numbers", "label-out-of-range"),
        (rf"matches no transcript segment|matches only transcript segments|but no transcript file"
         rf"|^{iemocap.NO_TRANSCRIPT} (line|file)",
         "label-without-transcript"),
        (r"^missing columns|^video .*: (expected 'features'|'features' or|features \(|/.* declares shape)"
         r"|is not a time interval",
         "malformed-labels"),
        (r"^(block head|bad times|end .* <= start|missing fields|utterance id|utterance .* does not belong|V/A/D"
         r"|annotator line|malformed transcript line|line does not start|expected |clip .* is not|times .* are not"
         r"|Input\.|Answer\.)", "malformed-line"),
    )
)


@dataclass(frozen=True)
class AnnotatedUtterance:
    """An utterance as the audit needs it: where it is annotated, and what its media must hold."""

    id: str
    speaker: str
    start: float
    end: float
    file: str  # the file whose line gives the interval (IEMOCAP labels, MOSEI transcript)
    line: int | None
    channel: int | None  # the audio channel that carries the speaker (None: mono or the mix)
    labels: tuple[str, ...]  # IEMOCAP: (code,); MOSEI: the emotions present


@dataclass(frozen=True)
class RecordingToAudit:
    """One recording to audit. IEMOCAP jobs name the dialog's annotation files (the task reads
    them); MOSEI jobs carry the utterances read while planning."""

    corpus: str
    root: str
    recording: str
    video: str
    audio: str
    labels: str | None = None
    transcript: str | None = None
    utterances: tuple[AnnotatedUtterance, ...] = ()


@dataclass
class RecordingAudit:
    recording: str
    findings: list[Finding] = field(default_factory=list)
    utterances: list[AnnotatedUtterance] = field(default_factory=list)
    audio_duration: float | None = None
    video_duration: float | None = None


@dataclass
class RawAuditPlan:
    corpus: str
    root: Path
    jobs: list[RecordingToAudit]
    findings: list[Finding]


# --------------------------------------------------------------------------------------------
# Planning


def plan_iemocap_audit(path: Path) -> RawAuditPlan:
    """One job per dialog that has an EmoEvaluation file; transcripts without one are findings."""
    root = iemocap.find_iemocap_root(Path(path)).resolve()
    dialogs, problems = iemocap.discover_dialogs(root)
    findings = [reader_finding(problem) for problem in problems]
    labelled = {dialog.transcript for dialog in dialogs}
    for transcript in sorted(root.glob("Session*/dialog/transcriptions/*.txt")):
        rel = transcript.relative_to(root).as_posix()
        if rel not in labelled and not transcript.name.startswith("."):
            labels = rel.replace("/transcriptions/", "/EmoEvaluation/")
            findings.append(finding("missing-file", f"transcription {rel} has no label file {labels}: its "
                                    f"utterances have no labels", file=labels, id=transcript.stem))
    jobs = [RecordingToAudit("iemocap", str(root), d.name, d.video, d.audio, labels=d.labels, transcript=d.transcript)
            for d in dialogs]
    return RawAuditPlan("iemocap", root, jobs, findings)


def plan_mosei_audit(path: Path) -> RawAuditPlan:
    """Read transcripts and labels (the .csd where there is one, else the MTurk CSVs) once; one
    job per transcript file, with its labelled utterances."""
    raw = mosei.find_mosei_root(Path(path)).resolve()
    source = "csd" if mosei.find_csd_labels(raw) is not None else "mturk"
    try:
        reading = mosei.read_mosei(raw, labels=source)
    except FileNotFoundError as error:
        return RawAuditPlan("mosei", raw, [], [finding("missing-file", str(error), file=mosei.CSD_FILE_NAME)])
    except ValueError as error:  # a label file that is not a .csd at all
        return RawAuditPlan("mosei", raw, [], [finding("malformed-labels", str(error), file=mosei.CSD_FILE_NAME)])
    findings = [reader_finding(problem) for problem in reading.problems]
    by_video: dict[str, list[AnnotatedUtterance]] = {}
    for utterance in reading.utterances:
        present = tuple(name for name, intensity in sorted(utterance.label["emotions"].items()) if intensity > 0)
        by_video.setdefault(utterance.recording, []).append(AnnotatedUtterance(
            utterance.id, utterance.speaker, utterance.start, utterance.end, utterance.sources["transcript"],
            utterance.lines.get("transcript"), None, present))
    jobs = [RecordingToAudit("mosei", str(raw), video.name, video.video, video.audio, transcript=video.transcript,
                         utterances=tuple(by_video.get(video.name, ()))) for video in reading.recordings]
    return RawAuditPlan("mosei", raw, jobs, findings)


def reader_finding(problem: Problem) -> Finding:
    """A corpus reader's Problem as a finding, its kind read off the reason."""
    kind = next((kind for pattern, kind in _READER_KINDS if pattern.search(problem.reason)), "annotation-problem")
    return finding(kind, problem.reason, file=problem.file, line=problem.line, id=problem.utterance)


# --------------------------------------------------------------------------------------------
# The task: one recording


def audit_recording(job: RecordingToAudit, options: ValidateOptions) -> RecordingAudit:
    """Everything about one recording that needs no other recording."""
    if job.corpus == "iemocap":
        audit = _audit_iemocap_annotations(job)
    else:
        audit = _audit_mosei_annotations(job)
    audit.findings += same_speaker_overlaps(audit.utterances)
    if audit.utterances:
        media_findings, audio_duration, video_duration = audit_media(job, audit.utterances, options)
        audit.findings += media_findings
        audit.audio_duration, audit.video_duration = audio_duration, video_duration
    return audit


def _audit_iemocap_annotations(job: RecordingToAudit) -> RecordingAudit:
    root = Path(job.root)
    audit = RecordingAudit(job.recording)
    try:
        blocks, label_problems = iemocap.parse_emo_evaluation(root / job.labels, job.labels)
    except OSError as error:
        audit.findings.append(finding("unreadable-file", f"cannot read: {error.strerror or error}", file=job.labels,
                                      id=job.recording))
        return audit
    audit.findings += [reader_finding(problem) for problem in label_problems]
    audit.utterances = [_iemocap_utterance(block, job.labels) for block in blocks]
    lines = _read_iemocap_transcript(root, job, audit)
    if lines is not None:
        transcript_lines, transcript_problems = lines
        audit.findings += [reader_finding(problem) for problem in transcript_problems]
        audit.findings += _iemocap_id_agreement(blocks, label_problems, transcript_lines, transcript_problems, job)
        audit.findings += _word_timing_findings(blocks, transcript_lines, job)
    return audit


def _word_timing_findings(blocks, lines, job: RecordingToAudit) -> list[Finding]:
    """Each converted utterance's .wdseg, as the reader reads it, against its interval and its text."""
    line_of = {line.utterance: line for line in lines}
    session_dir = Path(job.labels).parts[0]
    findings = []
    for block in blocks:
        line = line_of.get(block.utterance)
        if line is None:
            continue  # not converted: its finding is label-without-transcript
        rel = wdseg.wdseg_path(session_dir, job.recording, block.utterance)
        words, problem, status = iemocap.read_word_timings(Path(job.root), rel)
        if status == "missing":
            findings.append(finding("missing-word-timings", "no word segmentation file: the utterance's words are "
                                    "null", file=rel, id=block.utterance))
        elif problem is not None:
            findings.append(finding("malformed-word-timings", f"{problem.reason}; the utterance's words are null",
                                    file=rel, line=problem.line, id=block.utterance))
        else:
            findings += [finding(kind, message, file=rel, id=block.utterance)
                         for kind, message in wdseg.check_words([w.to_json() for w in words],
                                                                block.end - block.start, line.text)]
    return findings


def _read_iemocap_transcript(root: Path, job: RecordingToAudit, audit: RecordingAudit):
    """(lines, problems) of the dialog's transcription, or None (with a finding) where it is unusable."""
    path = root / job.transcript
    if not path.exists():
        audit.findings.append(finding("missing-file", f"no transcription for dialog {job.recording}: its "
                                      f"utterances would have no text", file=job.transcript, id=job.recording))
        return None
    try:
        return iemocap.parse_transcription(path, job.transcript)
    except OSError as error:
        audit.findings.append(finding("unreadable-file", f"cannot read: {error.strerror or error}",
                                      file=job.transcript, id=job.recording))
        return None


def _iemocap_utterance(block: iemocap.LabelBlock, labels_file: str) -> AnnotatedUtterance:
    parts = iemocap.parse_utterance_id(block.utterance)  # the reader parsed it already
    is_left = parts.speaker_gender == parts.marker_gender
    return AnnotatedUtterance(block.utterance, f"Ses{parts.session:02d}_{parts.speaker_gender}", block.start, block.end,
                              labels_file, block.line, 0 if is_left else 1, (block.category,))


def _iemocap_id_agreement(blocks, label_problems, lines, transcript_problems, job: RecordingToAudit) -> list[Finding]:
    """Ids in one file but not the other, cp1252 lines and times that disagree.

    An id named by a damaged line counts as present: the damage is already its finding.
    """
    label_ids = {block.utterance for block in blocks} | {p.utterance for p in label_problems if p.utterance}
    transcript_ids = {line.utterance for line in lines} | {p.utterance for p in transcript_problems if p.utterance}
    findings = [
        finding("label-without-transcript", f"labelled in {job.labels} but has no line in {job.transcript}",
                file=job.labels, line=block.line, id=block.utterance)
        for block in blocks if block.utterance not in transcript_ids
    ]
    findings += [
        finding("transcript-without-label", f"has a transcript line but no label in {job.labels}",
                file=job.transcript, line=line.line, id=line.utterance)
        for line in lines if line.utterance not in label_ids
    ]
    return findings + _cp1252_lines(lines, job) + _time_mismatches(blocks, lines, job)


def _cp1252_lines(lines, job: RecordingToAudit) -> list[Finding]:
    findings = []
    for line in lines:
        if line.encoding != "utf-8":
            accented = "".join(sorted({ch for ch in line.text if not ch.isascii()}))
            findings.append(finding("non-utf8-text", f"the line is not UTF-8; read as {line.encoding} "
                                    f"(non-ASCII text: {accented!r})",
                                    file=job.transcript, line=line.line, id=line.utterance, encoding=line.encoding))
    return findings


def _time_mismatches(blocks, lines, job: RecordingToAudit) -> list[Finding]:
    """Transcript times that differ from the label times by more than the reader tolerates."""
    line_of = {line.utterance: line for line in lines}
    findings = []
    for block in blocks:
        line = line_of.get(block.utterance)
        if line is None:
            continue
        difference = max(abs(block.start - line.start), abs(block.end - line.end))
        if difference > iemocap.TIME_TOLERANCE_S:
            findings.append(finding(
                "transcript-time-mismatch",
                f"transcript times [{line.start:.4f}-{line.end:.4f}] differ from the label times "
                f"[{block.start:.4f}-{block.end:.4f}] ({job.labels}:{block.line}) by {difference:.4f} s",
                file=job.transcript, line=line.line, id=block.utterance, difference_s=round(difference, 6),
                labels_line=block.line))
    return findings


def _audit_mosei_annotations(job: RecordingToAudit) -> RecordingAudit:
    """Segments of the video's transcript that no label names (labels were matched while planning)."""
    audit = RecordingAudit(job.recording, utterances=list(job.utterances))
    try:
        segments, _, _ = mosei.parse_segmented_transcript(Path(job.root) / job.transcript, job.transcript)
    except OSError as error:
        audit.findings.append(finding("unreadable-file", f"cannot read: {error.strerror or error}",
                                      file=job.transcript, id=job.recording))
        return audit
    labelled = {utterance.id for utterance in job.utterances}
    audit.findings += [
        finding("transcript-without-label", "segment without a label (not converted)", file=job.transcript,
                line=segment.line, id=segment.utterance_id)
        for segment in segments if segment.utterance_id not in labelled
    ]
    return audit


def same_speaker_overlaps(utterances: list[AnnotatedUtterance]) -> list[Finding]:
    """Each utterance that starts before an earlier-starting one of the same speaker has ended."""
    findings = []
    by_speaker: dict[str, list[AnnotatedUtterance]] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance)
    for speaker, own in by_speaker.items():
        latest: AnnotatedUtterance | None = None
        for utterance in sorted(own, key=lambda u: (u.start, u.end, u.id)):
            if latest is not None and utterance.start < latest.end - OVERLAP_EPSILON_S:
                overlap = min(latest.end, utterance.end) - utterance.start
                findings.append(finding(
                    "overlapping-intervals",
                    f"[{utterance.start:.4f}, {utterance.end:.4f}] overlaps {latest.id} "
                    f"[{latest.start:.4f}, {latest.end:.4f}] of the same speaker {speaker} by {overlap:.4f} s",
                    file=utterance.file, line=utterance.line, id=utterance.id, other=latest.id,
                    overlap_s=round(overlap, 6)))
            if latest is None or utterance.end > latest.end:
                latest = utterance
    return findings


# --------------------------------------------------------------------------------------------
# Media


@dataclass(frozen=True)
class _VideoFacts:
    fps: Fraction
    frames: int | None

    @property
    def duration(self) -> float | None:
        return None if self.frames is None else float(self.frames / self.fps)


@dataclass(frozen=True)
class _AudioFacts:
    channels: int
    duration: float | None

    @property
    def samples(self) -> int | None:
        """Samples at 16 kHz, the rate the converter cuts at."""
        return None if self.duration is None else round(self.duration * SAMPLE_RATE)


def audit_media(job: RecordingToAudit, utterances: list[AnnotatedUtterance],
                options: ValidateOptions) -> tuple[list[Finding], float | None, float | None]:
    """Findings about the recording's media, and its audio and video durations (None: unknown)."""
    findings: list[Finding] = []
    root = Path(job.root)
    count = len(utterances)
    probed_video = _probe(root, job.video, job.recording, count, findings, "video")
    video = _decoded_video_facts(root, job, probed_video, findings) if probed_video else None
    audio_probe = _probe(root, job.audio, job.recording, count, findings, "audio",
                         fallback=probed_video if job.corpus == "mosei" else None)
    audio = _audio_facts(audio_probe) if audio_probe else None
    if audio is not None and job.corpus == "iemocap":
        findings += _channel_findings(audio, utterances, job)
    if video is not None and audio is not None:
        findings += _duration_findings(audio, video, job, options.source_duration_tolerance_s)
    findings += [f for u in utterances if (f := _interval_finding(u, audio, video)) is not None]
    return findings, (audio.duration if audio else None), (video.duration if video else None)


def _duration_findings(audio: _AudioFacts, video: _VideoFacts, job: RecordingToAudit,
                       tolerance: float) -> list[Finding]:
    if audio.duration is None or video.duration is None or abs(audio.duration - video.duration) <= tolerance:
        return []
    return [finding("media-duration-mismatch",
                    f"audio {job.audio} lasts {audio.duration:.3f} s, video {video.duration:.3f} s: they differ by "
                    f"{abs(audio.duration - video.duration):.3f} s (tolerance {tolerance} s)",
                    file=job.video, id=job.recording, audio=job.audio, audio_duration_s=audio.duration,
                    video_duration_s=video.duration)]


def _probe(root: Path, rel: str, recording: str, count: int, findings: list[Finding], stream: str,
           fallback: dict | None = None) -> dict | None:
    """ffprobe's facts about `rel` where it has the `stream`; else None and a finding.

    `fallback` (MOSEI): the video's facts, whose audio track stands in for a missing WAV.
    """
    try:
        facts = probe_media(root / rel)
    except MediaNotFoundError:
        if fallback is not None and fallback.get("audio") is not None:
            findings.append(finding("audio-from-video", f"no 16 kHz WAV {rel}: the audio track of the video is used",
                                    file=rel, id=recording))
            return fallback
        findings.append(finding("missing-media", f"{stream} file missing: the {count} utterance(s) of {recording} "
                                f"have no {stream}", file=rel, id=recording, utterances=count))
        return None
    except MediaError as error:
        findings.append(finding("unreadable-media", str(error).replace(str(root / rel), rel), file=rel, id=recording))
        return None
    if facts[stream] is None:
        findings.append(finding("unreadable-media", f"no {stream} stream in the file", file=rel, id=recording))
        return None
    return facts


def _decoded_video_facts(root: Path, job: RecordingToAudit, facts: dict, findings: list[Finding]) -> _VideoFacts:
    """The video's frames at its nominal rate as far as it decodes, not as far as its header or
    timestamps claim; a shortfall against the claim and the decoder's error messages are findings."""
    fps, path = facts["video"]["fps"], root / job.video
    claimed = claimed_frames(path, facts)
    try:
        decoded = decode_video(path)
    except MediaError as error:
        findings.append(finding("unreadable-media", str(error).replace(str(path), job.video), file=job.video,
                                id=job.recording))
        return _VideoFacts(fps, claimed)
    frames = 0 if decoded.end is None else round(Fraction(decoded.end) * fps)
    if decoded.errors:
        findings.append(finding("video-decode-errors",
                                f"{decoded.errors} error message(s) while decoding the video: clips cut from it may "
                                f"show the damage (their video.source_decode_errors says so)",
                                file=job.video, id=job.recording, errors=decoded.errors))
    # One frame of slack: where a variable-rate video's last frame ends is a guess of its muxer.
    if claimed is not None and frames < claimed - 1:
        findings.append(finding("truncated-media",
                                f"the video decodes to {float(frames / fps):.3f} s ({frames} frames), its file claims "
                                f"{float(claimed / fps):.3f} s ({claimed} frames): it is cut short",
                                file=job.video, id=job.recording, frames=frames, claimed_frames=claimed))
    return _VideoFacts(fps, frames)


def _audio_facts(facts: dict) -> _AudioFacts:
    audio = facts["audio"]
    return _AudioFacts(audio["channels"], audio["duration"] or facts["duration"])


def _channel_findings(audio: _AudioFacts, utterances: list[AnnotatedUtterance], job: RecordingToAudit) -> list[Finding]:
    needed = sorted({u.channel for u in utterances if u.channel is not None and u.channel >= audio.channels})
    if not needed:
        return []
    lost = sum(u.channel in needed for u in utterances)
    return [finding("missing-audio-channel",
                    f"the audio has {audio.channels} channel(s); channel(s) {needed} carry {lost} utterance(s)",
                    file=job.audio, id=job.recording, channels=audio.channels, needed=needed, utterances=lost)]


def _interval_finding(utterance: AnnotatedUtterance, audio: _AudioFacts | None,
                      video: _VideoFacts | None) -> Finding | None:
    """The converter's rule: audio samples round(start*16k)..round(end*16k) with at most one past
    the end; video frames ceil(start*fps)..ceil(end*fps) with at most one past the end."""
    past: list[str] = []
    details: dict[str, Any] = {"start": utterance.start, "end": utterance.end}
    if audio is not None and audio.samples is not None:
        details["audio_duration_s"] = audio.duration
        if round(utterance.end * SAMPLE_RATE) - audio.samples > 1:
            past.append(f"the audio ({audio.duration:.3f} s)")
    if video is not None and video.frames is not None:
        first, end_frame = frame_range(utterance.start, utterance.end, video.fps)
        details.update(video_duration_s=video.duration, video_frames=video.frames)
        if first >= video.frames or end_frame > video.frames + 1:
            past.append(f"the video ({video.duration:.3f} s, {video.frames} frames)")
    if not past:
        return None
    return finding("interval-past-media-end",
                   f"interval [{utterance.start:.4f}, {utterance.end:.4f}] ends after {' and '.join(past)}",
                   file=utterance.file, line=utterance.line, id=utterance.id, **details)


# --------------------------------------------------------------------------------------------
# Across recordings


def duplicate_ids(audits: list[RecordingAudit]) -> list[Finding]:
    """Ids annotated in more than one file; the first in recording order is the original."""
    first: dict[str, AnnotatedUtterance] = {}
    findings = []
    for audit in audits:
        for utterance in audit.utterances:
            original = first.setdefault(utterance.id, utterance)
            if original is not utterance:
                findings.append(finding("duplicate-id", f"also annotated at {original.file}:{original.line}",
                                        file=utterance.file, line=utterance.line, id=utterance.id,
                                        first=f"{original.file}:{original.line}"))
    return findings


def finish_raw_audit(plan: RawAuditPlan, audits: list[RecordingAudit], options: ValidateOptions) -> Report:
    findings = list(plan.findings) + [f for audit in audits for f in audit.findings] + duplicate_ids(audits)
    utterances = [u for audit in audits for u in audit.utterances]
    stats = {
        "items": {"recordings": len(plan.jobs), "utterances": len(utterances)},
        "durations": {
            "interval": [round(u.end - u.start, 4) for u in utterances],
            "audio": [round(a.audio_duration, 4) for a in audits if a.audio_duration is not None],
            "video": [round(a.video_duration, 4) for a in audits if a.video_duration is not None],
        },
        "labels_per_split": {"all": dict(sorted(Counter(label for u in utterances for label in u.labels).items()))},
        "face_detection_rate": None,
        "leakage": None,
        "av_sync": None,
        "error_log": None,
    }
    return Report(f"raw-{plan.corpus}", str(plan.root), findings, stats, options)


def failed_recording(job: RecordingToAudit, reason: str) -> RecordingAudit:
    """The audit of a recording whose task crashed: one finding, so that nothing is silently skipped."""
    where = job.labels or job.transcript
    return RecordingAudit(job.recording, [finding("task-failed", f"recording not audited: {reason}", file=where,
                                                  id=job.recording)])
