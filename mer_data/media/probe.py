"""What a media file holds, asked of ffprobe, and the errors the media stage raises.

Frame rates stay exact `Fraction`s (IEMOCAP is 30000/1001): frame indices are computed from them,
and a float rate drifts by a frame within minutes.
"""
from __future__ import annotations

import json
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

# Frame rates above this are container time bases, not real rates (some VFR MP4s report
# r_frame_rate 90000/1); the average rate is the better guess then.
MAX_PLAUSIBLE_FPS = 240

# ffmpeg's closing lines that say nothing about the cause; the line before them does.
_GENERIC_FFMPEG_LINES = ("Conversion failed!", "Exiting normally", "Received signal")
_OBJECT_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+")


class MediaError(Exception):
    """A media file (or one utterance of it) that cannot be used; the message says why."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """A media file that does not exist."""


def ffmpeg_path_arg(path: Path) -> str:
    """`path` as an ffmpeg/ffprobe argument that is never read as an option or a protocol.

    Corpus ids may start with "-" (MOSEI), and a name with ":" would look like a URL.
    """
    return "file:" + str(path)


def last_meaningful_line(text: str) -> str:
    """The last line of ffmpeg's stderr that names a cause, or "" when there is none.

    Object addresses ("[mpeg4 @ 0x55d0c1a2b3c0]") are dropped: they change from run to run, and
    the reasons must not.
    """
    for line in reversed(text.splitlines()):
        line = _OBJECT_ADDRESS.sub("", line).strip()
        if line and not line.startswith(_GENERIC_FFMPEG_LINES):
            return line
    return ""


def probe_media(path: Path | str) -> dict[str, Any]:
    """Duration and first video and audio stream of a media file.

    Returns {"path", "format", "duration" (seconds or None),
             "video": None or {"width", "height", "fps" (Fraction), "fps_fraction" ("30000/1001"),
                               "frames" (int or None where the container does not say),
                               "duration", "codec"},
             "audio": None or {"sample_rate", "channels", "duration", "codec"}}.
    Raises MediaNotFoundError for a missing file, MediaError for one ffprobe cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(f"media file not found: {path}")
    report = _run_ffprobe(path)
    streams = report.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = report.get("format", {})
    return {
        "path": str(path),
        "format": fmt.get("format_name"),
        "duration": _float_or_none(fmt.get("duration")),
        "video": _video_facts(video, path) if video else None,
        "audio": _audio_facts(audio) if audio else None,
    }


def _run_ffprobe(path: Path) -> dict[str, Any]:
    command = ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", ffmpeg_path_arg(path)]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise MediaError("ffprobe is not installed (install ffmpeg)") from error
    if done.returncode != 0:
        why = last_meaningful_line(done.stderr.decode("utf-8", "replace")) or f"ffprobe exit status {done.returncode}"
        why = why.removeprefix(ffmpeg_path_arg(path) + ": ")  # ffprobe names the file; so do we
        raise MediaError(f"cannot read media file {path}: {why}")
    return json.loads(done.stdout)


def _is_cover_art(stream: dict[str, Any]) -> bool:
    # An attached picture (album art in an M4A) is a "video" stream of one frame, not a video.
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _video_facts(stream: dict[str, Any], path: Path) -> dict[str, Any]:
    fps = _frame_rate(stream)
    if fps is None:
        raise MediaError(f"cannot read media file {path}: the video stream has no frame rate")
    return {
        "width": int(stream["width"]),
        "height": int(stream["height"]),
        "fps": fps,
        "fps_fraction": f"{fps.numerator}/{fps.denominator}",
        "frames": _int_or_none(stream.get("nb_frames")),
        "duration": _float_or_none(stream.get("duration")),
        "codec": stream.get("codec_name"),
    }


def _audio_facts(stream: dict[str, Any]) -> dict[str, Any]:
    return {
        "sample_rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "duration": _float_or_none(stream.get("duration")),
        "codec": stream.get("codec_name"),
    }


def _frame_rate(stream: dict[str, Any]) -> Fraction | None:
    """The stream's nominal rate (r_frame_rate), or its average rate where the nominal is a time base."""
    nominal = _fraction_or_none(stream.get("r_frame_rate"))
    if nominal is not None and nominal <= MAX_PLAUSIBLE_FPS:
        return nominal
    return _fraction_or_none(stream.get("avg_frame_rate")) or nominal


def _fraction_or_none(text: str | None) -> Fraction | None:
    try:
        value = Fraction(text)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
