"""Audit of one shard: the Dask task of a shard-set validation.

    audit = audit_shard(Path("shards/train-000000.tar"), options)

Reads the tar member by member with the shard reader (mer_data/shards/samples.py; webdataset's rule:
consecutive members with the same key, the name up to its first '.', form a sample) and checks:
- the tar: readable to its end-of-archive marker; members are regular files named `<key>.<ext>`
  with a valid key; a key does not come back after another key;
- each sample: exactly the members json, txt, flac, mp4; the json is UTF-8 JSON valid against
  schemas/sample.schema.json and names the sample's key; the txt is the metadata's text; the
  flac decodes (soundfile) to 16 kHz mono of the stated samples; the mp4 decodes (ffprobe, every
  frame) to the stated frames and size; audio, video and annotated interval agree within
  `sample_duration_tolerance_s`; its split is the shard's; its face-detection rate;
- A/V sync (when enabled and `mer_data.validation.av_sync` exists): one curve per sample, for
  the per-recording estimate made once all shards are in (shard_set.py).
The shard's size and SHA-256 come back too, for the comparison with dataset.json.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import av
import av.logging
import soundfile as sf

from mer_data import schemas
from mer_data.corpora import wdseg
from mer_data.media.audio import SAMPLE_RATE
from mer_data.shards.hashing import sha256_file
from mer_data.shards.layout import SHARD_NAME
from mer_data.shards.samples import ReadProblem, ShardSample, read_samples
from mer_data.shards.tarwriter import MEMBER_ORDER
from mer_data.validation.findings import Finding, finding
from mer_data.validation.options import ValidateOptions

AV_SYNC_MODULE = "mer_data.validation.av_sync"
MAX_SCHEMA_ERRORS = 5


@dataclass
class SampleFacts:
    """What the shard-set checks need of a sample (small: it travels back from the worker).

    Fields read from the metadata are None where the metadata is unusable.
    """

    key: str
    shard: str
    position: int  # 0-based among the shard's samples
    split: str | None = None
    recording: str | None = None
    speaker: str | None = None
    video_source: str | None = None
    labels: tuple[str, ...] = ()
    interval_s: float | None = None
    audio_s: float | None = None
    video_s: float | None = None
    face_rate: float | None = None


@dataclass
class ShardAudit:
    shard: str
    bytes: int
    sha256: str
    findings: list[Finding] = field(default_factory=list)
    samples: list[SampleFacts] = field(default_factory=list)  # also those whose members are broken
    curves: list[Any] = field(default_factory=list)  # av_sync.SyncCurve per usable sample
    completed: bool = True  # False: the task crashed, nothing is known about the shard


def audit_shard(path: Path, options: ValidateOptions) -> ShardAudit:
    """Every check of one shard that needs no other file; never raises for bad data."""
    path = Path(path)
    audit = ShardAudit(path.name, path.stat().st_size, sha256_file(path))
    name_match = SHARD_NAME.match(path.name)
    shard_split = name_match["split"] if name_match else None
    sync = _av_sync_module() if options.av_sync else None
    for sample in read_samples(path, partial(_add_read_finding, audit.findings, path.name)):
        facts = SampleFacts(sample.key, path.name, sample.position)
        audit.samples.append(facts)
        if not sample.complete:
            continue
        meta = _check_sample(sample, facts, path.name, options, audit.findings)
        if meta is None:
            continue
        if shard_split is not None and meta["split"] != shard_split:
            audit.findings.append(finding("split-impure-shard", f"a {meta['split']} sample in a {shard_split} shard",
                                          file=path.name, id=sample.key, split=meta["split"]))
        if sync is not None and facts.audio_s is not None and facts.video_s is not None:
            _add_curve(sync, sample, meta, path.name, audit)
    return audit


def _add_read_finding(findings: list[Finding], shard: str, problem: ReadProblem) -> None:
    """Damage met by the tar reader (mer_data/shards/samples.py) as a finding of the same kind."""
    findings.append(finding(problem.kind, problem.message, file=shard, id=problem.id, **problem.details))


# --------------------------------------------------------------------------------------------
# One sample


def _check_sample(sample: ShardSample, facts: SampleFacts, shard: str, options: ValidateOptions,
                  findings: list[Finding]) -> dict | None:
    """Check the sample's members; fill `facts`; return its metadata where it is valid, else None."""
    key, members = sample.key, sample.members
    missing = [ext for ext in MEMBER_ORDER if ext not in members]
    extra = sorted(set(members) - set(MEMBER_ORDER))
    if missing or extra:
        parts = ([f"missing {', '.join('.' + e for e in missing)}"] if missing else []) + \
                ([f"unexpected {', '.join('.' + e for e in extra)}"] if extra else [])
        findings.append(finding("member-set", f"members: {'; '.join(parts)}", file=shard, id=key, missing=missing,
                                extra=extra))
    meta = _metadata(members.get("json"), key, shard, findings) if "json" in members else None
    if meta is not None:
        _fill_from_metadata(facts, meta)
        if "txt" in members:
            _check_text(members["txt"], meta, key, shard, findings)
    if "flac" in members:
        facts.audio_s = _check_audio(members["flac"], meta, key, shard, findings)
    if "mp4" in members:
        facts.video_s = _check_video(members["mp4"], meta, key, shard, findings)
    if meta is not None:
        _check_durations(facts, key, shard, options, findings)
        if facts.face_rate < options.face_rate_threshold:
            findings.append(finding("low-face-detection-rate",
                                    f"a face was found in {facts.face_rate:.0%} of the sampled frames "
                                    f"(threshold {options.face_rate_threshold:.0%})",
                                    file=shard, id=key, rate=facts.face_rate))
        _check_black(meta, key, shard, findings)
        _check_words(meta, key, shard, findings)
    return meta


def _check_words(meta: dict, key: str, shard: str, findings: list[Finding]) -> None:
    """The sample's word timings (metadata `words`, 1.1) against its interval and its text."""
    words = meta.get("words")
    if words:
        findings += [finding(kind, message, file=shard, id=key)
                     for kind, message in wdseg.check_words(words, meta["duration"], meta["text"])]


def _check_black(meta: dict, key: str, shard: str, findings: list[Finding]) -> None:
    """The converter flags clips whose sampled frames are black (metadata `video.is_black`)."""
    video = meta.get("video") or {}
    if video.get("is_black"):
        fraction = video.get("black_fraction")
        share = f"{fraction:.0%} of" if isinstance(fraction, (int, float)) else "all"
        findings.append(finding("black-video", f"{share} the sampled frames are black", file=shard, id=key,
                                black_fraction=fraction))


def _metadata(data: bytes, key: str, shard: str, findings: list[Finding]) -> dict | None:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        findings.append(finding("metadata-invalid", f"the json member is not UTF-8 JSON: {error}", file=shard, id=key))
        return None
    not_finite = list(non_finite_fields(meta))
    if not_finite:  # Python's json reads NaN, Infinity and 1e999; the schema's number type lets them through
        said = ", ".join(f"{name} is {value}" for name, value in not_finite[:MAX_SCHEMA_ERRORS])
        findings.append(finding("metadata-invalid", f"not a finite number: {said}", file=shard, id=key,
                                fields=[name for name, _ in not_finite]))
        return None
    problems = schemas.errors("sample", meta)
    if problems:
        shown = "; ".join(problems[:MAX_SCHEMA_ERRORS]) + (" ..." if len(problems) > MAX_SCHEMA_ERRORS else "")
        findings.append(finding("metadata-invalid", f"breaks schemas/sample.schema.json: {shown}", file=shard, id=key,
                                errors=problems))
        return None
    if meta["id"] != key:
        findings.append(finding("metadata-invalid", f"the metadata names id {meta['id']!r}, not the sample key",
                                file=shard, id=key, metadata_id=meta["id"]))
        return None
    return meta


def non_finite_fields(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted field, "NaN" / "inf" / "-inf") of every non-finite number inside a JSON value."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path or "<root>", "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from non_finite_fields(item, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from non_finite_fields(item, f"{path}[{number}]")


def _fill_from_metadata(facts: SampleFacts, meta: dict) -> None:
    label = meta["label"]
    if "category" in label:
        labels: tuple[str, ...] = (label["category"],)
    else:  # MOSEI: every emotion present (intensity > 0), as the dataset card counts them
        labels = tuple(name for name, intensity in sorted(label["emotions"].items()) if intensity > 0)
    facts.split, facts.recording, facts.speaker = meta["split"], meta["recording"], meta["speaker"]
    facts.video_source = meta["sources"]["video"]
    facts.labels = labels
    facts.interval_s = meta["end"] - meta["start"]
    facts.face_rate = meta["faces"]["detection_rate"]


def _check_text(data: bytes, meta: dict, key: str, shard: str, findings: list[Finding]) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        findings.append(finding("text-mismatch", f"the txt member is not UTF-8: {error}", file=shard, id=key))
        return
    if text != meta["text"]:
        findings.append(finding("text-mismatch", f"the txt member {text[:60]!r} differs from the metadata text "
                                f"{meta['text'][:60]!r}", file=shard, id=key))


def _check_audio(data: bytes, meta: dict | None, key: str, shard: str, findings: list[Finding]) -> float | None:
    """The decoded duration of the flac member (None: it does not decode)."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as error:  # soundfile's LibsndfileError is a RuntimeError
        findings.append(finding("undecodable-audio", f"the flac member does not decode: {error}", file=shard, id=key))
        return None
    frames, channels = samples.shape
    if meta is not None:
        expected = (SAMPLE_RATE, 1, meta["audio"]["samples"])
        if (rate, channels, frames) != expected:
            findings.append(finding(
                "audio-metadata-mismatch",
                f"decoded {frames} samples, {channels} channel(s) at {rate} Hz; the metadata says "
                f"{expected[2]} samples, mono at {SAMPLE_RATE} Hz", file=shard, id=key,
                decoded={"rate": rate, "channels": channels, "samples": frames}))
    return frames / rate


def _check_video(data: bytes, meta: dict | None, key: str, shard: str, findings: list[Finding]) -> float | None:
    """The decoded duration of the mp4 member (frames / the metadata's fps; None: it does not decode)."""
    decoded = decode_video(data)
    if isinstance(decoded, str):
        findings.append(finding("undecodable-video", f"the mp4 member does not decode: {decoded}", file=shard, id=key))
        return None
    if meta is None:
        return None
    video = meta["video"]
    expected = (video["frames"], video["width"], video["height"])
    if (decoded["frames"], decoded["width"], decoded["height"]) != expected:
        findings.append(finding(
            "video-metadata-mismatch",
            f"decoded {decoded['frames']} frames of {decoded['width']}x{decoded['height']}; the metadata says "
            f"{expected[0]} frames of {expected[1]}x{expected[2]}", file=shard, id=key, decoded=decoded))
    return decoded["frames"] / video["fps"]


# libav's log level is process-wide: decoders of several threads take turns raising and restoring it.
_LIBAV_LOG_LOCK = threading.Lock()


def decode_video(data: bytes) -> dict[str, int] | str:
    """Decode every frame of the first video stream, in this process (PyAV, from memory; a process
    per sample cost more than the decoding): {"frames", "width", "height"}, or the reason it does not
    decode: the decoder's last complaint (a damaged stream may decode partly, the damage concealed,
    with complaints logged at error level) or PyAV's error."""
    frames, width, height, failure = 0, 0, 0, ""
    with _LIBAV_LOG_LOCK:
        level = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with av.logging.Capture() as logs:
                try:
                    with av.open(io.BytesIO(data), mode="r") as container:
                        if not container.streams.video:
                            return "no video stream"
                        stream = container.streams.video[0]
                        stream.codec_context.thread_count = 1
                        for frame in container.decode(stream):
                            frames, width, height = frames + 1, frame.width, frame.height
                except av.error.FFmpegError as error:
                    failure = str(error)
        finally:
            av.logging.set_level(level)
    complaints = [message.strip() for lvl, _, message in logs if lvl <= av.logging.ERROR and message.strip()]
    if complaints:
        return complaints[-1]
    if failure:
        return failure
    if not frames:
        return "no decodable frames"
    return {"frames": frames, "width": width, "height": height}


def _check_durations(facts: SampleFacts, key: str, shard: str, options: ValidateOptions,
                     findings: list[Finding]) -> None:
    lengths = {"interval": facts.interval_s, "audio": facts.audio_s, "video": facts.video_s}
    known = [(name, value) for name, value in lengths.items() if value is not None]
    tolerance = options.sample_duration_tolerance_s
    apart = [(a, b, abs(x - y)) for i, (a, x) in enumerate(known) for b, y in known[i + 1:] if abs(x - y) > tolerance]
    if apart:
        said = ", ".join(f"{name} {value:.3f} s" for name, value in known)
        pairs = "; ".join(f"{a} and {b} differ by {gap:.3f} s" for a, b, gap in apart)
        findings.append(finding("duration-mismatch", f"{said}: {pairs} (tolerance {tolerance} s)", file=shard, id=key,
                                durations={name: round(value, 6) for name, value in known}))


# --------------------------------------------------------------------------------------------
# A/V sync (VALIDATE-SYNC's estimator)


def av_sync_available() -> bool:
    return importlib.util.find_spec(AV_SYNC_MODULE) is not None


def _av_sync_module():
    """mer_data.validation.av_sync where it exists, else None (the report's av_sync is then null)."""
    return importlib.import_module(AV_SYNC_MODULE) if av_sync_available() else None


def _add_curve(sync, sample: ShardSample, meta: dict, shard: str, audit: ShardAudit) -> None:
    """One sample's sync curve; a failure costs this sample only and is a finding."""
    try:
        curve = sync.utterance_sync_curve(sample.members["flac"], sample.members["mp4"], meta)
    except Exception as error:  # an estimator bug must not stop the integrity audit of the shard
        audit.findings.append(finding("av-sync-failed", f"A/V sync curve failed: {type(error).__name__}: {error}",
                                      file=shard, id=sample.key))
        return
    if curve is not None:
        audit.curves.append(curve)
