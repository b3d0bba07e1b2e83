"""What a media file holds, asked of ffprobe, and the errors the media stage raises.

Frame rates stay exact `Fraction`s (IEMOCAP is 30000/1001): frame indices are computed from them,
and a float rate drifts by a frame within minutes.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

# Frame rates above this are container time bases, not real rates (some VFR MP4s report
# r_frame_rate 90000/1); the average rate is the better guess then.
MAX_PLAUSIBLE_FPS = 240

# How far before the container's stated end the last packets are looked for: the seek lands on
# the keyframe before that time, so a GOP or two is read, not the whole file.
TAIL_SECONDS = 10

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
             "video": None or {"width", "height" (as displayed: swapped by a rotation of 90 or 270),
                               "fps" (Fraction), "fps_fraction" ("30000/1001"),
                               "frames" (int or None where the container does not say),
                               "duration", "codec",
                               "rotation" (clockwise degrees a player turns the frames: 0, 90, 180
                                           or 270; ffmpeg turns them so when it decodes)},
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


def video_end_claimed(path: Path | str, facts: dict[str, Any]) -> float | None:
    """Where the file says its video ends, in seconds from its timestamps: the later of the
    container's duration and the end of the last packet near it. A variable-rate video's frame
    count says nothing about its length; a truncated file may claim more than it holds (only
    decoding it, `decode_video`, tells), never less."""
    duration = facts["video"]["duration"] or facts["duration"]
    try:
        packets_end = last_packet_end(Path(path), max(0.0, (duration or 0.0) - TAIL_SECONDS))
    except MediaError:  # a file that cannot seek claims what its container says
        packets_end = None
    ends = [end for end in (duration, packets_end) if end is not None]
    return max(ends) if ends else None


def last_packet_end(path: Path, after: float = 0.0) -> float | None:
    """The end of the first video stream's last packet (its timestamp plus its duration where
    the container gives one), reading packets from `after` seconds on without decoding them;
    None when there is no packet there."""
    seek = ["-read_intervals", f"{after:.6f}%"] if after > 0 else []
    lines = _ffprobe_lines(path, [*seek, "-select_streams", "v:0", "-show_entries",
                                  "packet=pts_time,dts_time,duration_time"])
    return max((_entry_end(fields, "pts_time", "dts_time") for fields in lines), default=None)


@dataclass(frozen=True)
class DecodedVideo:
    """What decoding a whole video stream showed: where its last decoded frame ends (None when
    no frame decodes), how many frames decoded, and how many error messages the decoder (and
    demuxer) printed: concealed damage, which decoding survives but the frames show."""

    end: float | None
    frames: int
    errors: int


def decode_video(path: Path | str) -> DecodedVideo:
    """Decode the first video stream to its end (one thread: the callers run many at once).
    Raises MediaError where ffprobe cannot open the file."""
    errors: list[str] = []
    lines = _ffprobe_lines(Path(path), ["-threads", "1", "-select_streams", "v:0", "-show_entries",
                                        "frame=best_effort_timestamp_time,pkt_duration_time,duration_time"], errors)
    ends = [_entry_end(fields, "best_effort_timestamp_time") for fields in lines]
    return DecodedVideo(max(ends, default=None), len(lines), len(errors))


def _entry_end(fields: dict[str, str], *time_keys: str) -> float:
    """When a packet or frame ends: its first known time plus its duration (0 where unknown)."""
    start = next((value for key in time_keys if (value := _float_or_none(fields.get(key))) is not None), 0.0)
    duration = _float_or_none(fields.get("duration_time")) or _float_or_none(fields.get("pkt_duration_time"))
    return start + (duration or 0.0)


def _ffprobe_lines(path: Path, options: list[str], errors: list[str] | None = None) -> list[dict[str, str]]:
    """ffprobe's entries (packets, frames) as one dict per line; its stderr lines go to `errors`."""
    done = _ffprobe(path, [*options, "-of", "compact=p=0"])
    if errors is not None:
        errors += [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return [dict(item.partition("=")[::2] for item in line.split("|"))
            for line in done.stdout.decode("utf-8", "replace").splitlines() if line]


def _run_ffprobe(path: Path) -> dict[str, Any]:
    return json.loads(_ffprobe(path, ["-of", "json", "-show_format", "-show_streams"]).stdout)


def _ffprobe(path: Path, options: list[str]) -> subprocess.CompletedProcess:
    command = ["ffprobe", "-v", "error", *options, ffmpeg_path_arg(path)]
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise MediaError("ffprobe is not installed (install ffmpeg)") from error
    if done.returncode != 0:
        why = last_meaningful_line(done.stderr.decode("utf-8", "replace")) or f"ffprobe exit status {done.returncode}"
        why = why.removeprefix(ffmpeg_path_arg(path) + ": ")  # ffprobe names the file; so do we
        raise MediaError(f"cannot read media file {path}: {why}")
    return done


def _is_cover_art(stream: dict[str, Any]) -> bool:
    # An attached picture (album art in an M4A) is a "video" stream of one frame, not a video.
    return bool(stream.get("disposition", {}).get("attached_pic"))


def _video_facts(stream: dict[str, Any], path: Path) -> dict[str, Any]:
    fps = _frame_rate(stream)
    if fps is None:
        raise MediaError(f"cannot read media file {path}: the video stream has no frame rate")
    rotation = _display_rotation(stream)
    width, height = int(stream["width"]), int(stream["height"])
    if rotation in (90, 270):
        width, height = height, width
    return {
        "width": width,
        "height": height,
        "fps": fps,
        "fps_fraction": f"{fps.numerator}/{fps.denominator}",
        "frames": _int_or_none(stream.get("nb_frames")),
        "duration": _float_or_none(stream.get("duration")),
        "codec": stream.get("codec_name"),
        "rotation": rotation,
    }


def _display_rotation(stream: dict[str, Any]) -> int:
    """The clockwise turn, in degrees, that ffmpeg applies when it decodes (its autorotation):
    the negated angle of the display matrix (which ffprobe gives counter-clockwise), else the
    older `rotate` tag (clockwise), rounded to a quarter turn."""
    matrix = next((side.get("rotation") for side in stream.get("side_data_list", [])
                   if side.get("rotation") is not None), None)
    if matrix is not None:
        degrees = -float(matrix)
    else:
        degrees = _float_or_none(stream.get("tags", {}).get("rotate")) or 0.0
    return round(degrees / 90) % 4 * 90


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
