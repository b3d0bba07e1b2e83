"""Cut all utterances of one source recording: the unit of work of the Dask pipeline.

Every request ends as either a CutResult (a FLAC and an MP4 in out_dir) or a Problem; one bad
utterance never stops the others, and a rejected utterance leaves no file behind.
"""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..records import CutRequest, CutResult, Problem
from .audio import AudioSource
from .encoding import VideoEncoding
from .graph import cut_clips
from .probe import MediaError, MediaNotFoundError, ffmpeg_path_arg
from .video import REGIONS, ClipCut, VideoSource, plan_clip

# File names may hold 255 bytes on common file systems; ".flac" and a temporary suffix need room.
_MAX_KEY_BYTES = 200


def cut_recording(video: Path, audio: Path | None, requests: Sequence[CutRequest], out_dir: Path, *,
                  frame_interval_ms: int = 500, max_height: int | None = None,
                  encoding: VideoEncoding = VideoEncoding(),
                  rel_video: str | None = None, rel_audio: str | None = None,
                  ) -> tuple[list[CutResult], list[Problem]]:
    """Write `out_dir/<key>.flac` and `out_dir/<key>.mp4` for each request, decoding the video once.

    `audio` None takes the audio track of `video`. Audio that is not 16 kHz is resampled once with
    ffmpeg. `rel_video`/`rel_audio` name the files in Problems (default: the paths as given).
    `encoding`: the clips' libx264 settings (media/encoding.py).
    Returns the results in request order and one Problem per rejected request (stage "media").
    """
    if frame_interval_ms < 1:
        raise ValueError(f"frame_interval_ms must be at least 1, not {frame_interval_ms}")
    if max_height is not None and max_height < 2:
        raise ValueError(f"max_height must be at least 2 pixels, not {max_height}")
    video, out_dir = Path(video), Path(out_dir)
    audio_path = Path(audio) if audio is not None else video
    video_name = rel_video or str(video)
    audio_name = rel_audio or (str(audio) if audio is not None else video_name)
    out_dir.mkdir(parents=True, exist_ok=True)

    problems: dict[str, Problem] = {}
    valid = _screen_requests(requests, video_name, problems)
    with tempfile.TemporaryDirectory(prefix="mer-cut-") as workdir:
        audio_facts = _cut_audio(audio_path, valid, out_dir, Path(workdir), audio_name, problems)
        with_audio = [request for request in valid if request.key in audio_facts]
        clips = _cut_video(video, with_audio, out_dir, Path(workdir), video_name, problems,
                           max_height=max_height, interval_ms=frame_interval_ms, encoding=encoding)

    for request in valid:
        if request.key in problems:
            _remove_outputs(out_dir, request.key)
    results = [
        CutResult(request.key, _flac(out_dir, request.key), _mp4(out_dir, request.key),
                  audio_facts[request.key], clips[request.key].video, clips[request.key].faces)
        for request in valid if request.key not in problems
    ]
    ordered_problems = [problems[key] for key in dict.fromkeys(request.key for request in requests) if key in problems]
    return results, ordered_problems


def _screen_requests(requests: Sequence[CutRequest], video_name: str, problems: dict[str, Problem]) -> list[CutRequest]:
    """The requests worth cutting; the others get a Problem (filed under the recording's video)."""
    counts = Counter(request.key for request in requests)
    valid = []
    for request in requests:
        reason = _request_error(request, counts[request.key])
        if reason:
            problems.setdefault(request.key, _problem(request.key, video_name, reason))
        else:
            valid.append(request)
    return valid


def _request_error(request: CutRequest, key_count: int) -> str:
    """Why a request cannot be cut, "" if it can."""
    key = request.key
    if not key or key in (".", "..") or "/" in key or "\\" in key or "\0" in key:
        return f"utterance key {key!r} cannot be used as a file name"
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        return f"utterance key is {len(key.encode('utf-8'))} bytes long, too long for a file name"
    if key_count > 1:
        # Both would write the same files; which one is right is the annotation's call.
        return f"utterance key appears {key_count} times in this recording"
    if not (math.isfinite(request.start) and math.isfinite(request.end) and 0 <= request.start < request.end):
        return f"invalid interval [{request.start}, {request.end}]: need 0 <= start < end"
    if request.video_region not in REGIONS:
        return f"unknown video region {request.video_region!r} (expected one of {', '.join(REGIONS)})"
    return ""


def _cut_audio(path: Path, requests: list[CutRequest], out_dir: Path, workdir: Path, name: str,
               problems: dict[str, Problem]) -> dict[str, dict[str, Any]]:
    """Audio facts of the requests whose FLAC was written; Problems for the others."""
    try:
        source = AudioSource(path, workdir)
    except MediaError as error:
        _reject_all(requests, name, _reason(error, path, name), problems)
        return {}
    facts = {}
    with source:
        for request in requests:
            try:
                facts[request.key] = source.cut(request.start, request.end, request.audio_channel,
                                                _flac(out_dir, request.key))
            except MediaError as error:
                problems[request.key] = _problem(request.key, name, _reason(error, path, name))
    return facts


def _cut_video(path: Path, requests: list[CutRequest], out_dir: Path, workdir: Path, name: str,
               problems: dict[str, Problem], *, max_height: int | None, interval_ms: int,
               encoding: VideoEncoding) -> dict[str, ClipCut]:
    """Clips of the requests whose MP4 was written; Problems for the others."""
    if not requests:
        return {}
    try:
        source = VideoSource.probe(path)
    except MediaNotFoundError:
        _reject_all(requests, name, "video file not found", problems)
        return {}
    except MediaError as error:
        _reject_all(requests, name, _reason(error, path, name), problems)
        return {}
    plans = []
    for request in requests:
        try:
            plans.append(plan_clip(request.key, request.start, request.end, request.video_region, source,
                                   _mp4(out_dir, request.key), max_height=max_height, interval_ms=interval_ms))
        except MediaError as error:
            problems[request.key] = _problem(request.key, name, _reason(error, path, name))
    done, failed = cut_clips(source, plans, workdir, encoding)
    for key, reason in failed.items():
        problems[key] = _problem(key, name, _reason(reason, path, name))
    return done


def _reject_all(requests: list[CutRequest], name: str, reason: str, problems: dict[str, Problem]) -> None:
    for request in requests:
        problems[request.key] = _problem(request.key, name, reason)


def _problem(key: str, file_name: str, reason: str) -> Problem:
    return Problem(file=file_name, line=None, reason=reason, utterance=key, stage="media")


def _reason(error: Exception | str, path: Path, name: str) -> str:
    """The error text with the file's local path replaced by its name in the corpus: reasons end
    up in errors.jsonl, which must not depend on where the corpus was mounted."""
    text = str(error)
    for spelling in (ffmpeg_path_arg(path), str(path)):
        text = text.replace(spelling, name)
    return text


def _remove_outputs(out_dir: Path, key: str) -> None:
    _flac(out_dir, key).unlink(missing_ok=True)
    _mp4(out_dir, key).unlink(missing_ok=True)


def _flac(out_dir: Path, key: str) -> Path:
    return out_dir / f"{key}.flac"


def _mp4(out_dir: Path, key: str) -> Path:
    return out_dir / f"{key}.mp4"
