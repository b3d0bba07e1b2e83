"""Frame-accurate video clips of many utterances from one decode of their source: the plans
(which frames, which crop, which frames to look for faces in) and the facts of finished clips.
graph.py (cut_clips) runs the single ffmpeg process per recording that writes them; it builds on
this module, which never imports it back.

Timing: frame i of the source is at i/fps, fps being the exact rate from ffprobe (the frames are
made constant-rate at that rate from their timestamps, so this holds for variable-rate sources
too, whose frame count says nothing about their length). Frames are decoded turned as a player
shows them (the display rotation; sizes here are the displayed ones).
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .faces import DETECTOR_NAME, detect_face
from .probe import MediaError, probe_media, video_end_claimed

REGIONS = ("left", "right", "full")
# Tolerance for float noise in times (0.1 * 30 = 3.0000000000000004), far below a frame.
_TIME_EPSILON = Fraction(1, 10**9)
# How much of an ffmpeg log to read for its last line: the tail is where the cause is.
_LOG_TAIL_BYTES = 4096
# Frames waiting for the face detector at most; bounds memory when detection is slower than decoding.
_MAX_PENDING_FACE_FRAMES = 8
# The detector's cascade is one object per process, and OpenCV cascades keep per-image state:
# recordings cut on several threads of one process must take turns.
_DETECTOR_LOCK = threading.Lock()


@dataclass(frozen=True)
class VideoSource:
    """The facts about a source video that cutting needs."""

    path: Path
    width: int  # as displayed (after the rotation)
    height: int
    fps: Fraction
    frames: int | None  # the most the file claims (see claimed_frames); None when unknown
    rotation: int = 0  # clockwise degrees the frames are turned by when decoded

    @classmethod
    def probe(cls, path: Path) -> "VideoSource":
        """Raises MediaNotFoundError / MediaError for a missing, unreadable or video-less file."""
        facts = probe_media(path)
        video = facts["video"]
        if video is None:
            raise MediaError("no video stream in the file")
        return cls(Path(path), video["width"], video["height"], video["fps"], claimed_frames(path, facts),
                   video["rotation"])

    def seconds(self, frame: int) -> float:
        return float(frame / self.fps)


@dataclass(frozen=True)
class ClipGeometry:
    """Where a clip comes from in the source frame, and its size after optional downscaling.

    The crop has even offsets and sizes: yuv420p stores colour per 2x2 block, and H.264 needs
    even sizes.
    """

    x: int
    y: int
    width: int
    height: int
    out_width: int
    out_height: int

    @property
    def crop(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]

    @property
    def scaled(self) -> bool:
        return (self.out_width, self.out_height) != (self.width, self.height)


@dataclass(frozen=True)
class ClipPlan:
    """One utterance's clip: which source frames, which part of them, where it goes."""

    key: str
    start: float
    end: float
    region: str
    first_frame: int
    end_frame: int  # exclusive
    geometry: ClipGeometry
    face_frames: tuple[int, ...]  # clip frame indices to run the face detector on
    face_interval_ms: int
    out_path: Path

    @property
    def frames(self) -> int:
        return self.end_frame - self.first_frame


@dataclass(frozen=True)
class ClipCut:
    """What a finished clip is: the CutResult video and faces facts."""

    video: dict[str, Any]
    faces: dict[str, Any]


def clip_geometry(width: int, height: int, region: str, max_height: int | None) -> ClipGeometry:
    """The crop of `region` ("left" = x in [0, W/2), "right" = [W/2, W), "full") made even, and
    its size once scaled to at most `max_height` rows keeping the aspect ratio."""
    if region not in REGIONS:
        raise MediaError(f"unknown video region {region!r} (expected one of {', '.join(REGIONS)})")
    x_start, x_end = {"left": (0, width // 2), "right": (width // 2, width), "full": (0, width)}[region]
    x = _even_up(x_start)
    crop_width, crop_height = _even_down(x_end - x), _even_down(height)
    if crop_width < 2 or crop_height < 2:
        raise MediaError(f"the {region} region of a {width}x{height} video is too small to encode")
    out_width, out_height = crop_width, crop_height
    if max_height is not None and crop_height > max_height:
        out_height = _even_down(max_height)
        out_width = max(2, 2 * round(crop_width * out_height / crop_height / 2))
    return ClipGeometry(x, 0, crop_width, crop_height, out_width, out_height)


def claimed_frames(path: Path, facts: dict[str, Any]) -> int | None:
    """How many frames at the nominal rate the file claims to hold: the more of its stated frame
    count and its timestamps' length (`video_end_claimed`) times the rate. Planning against the
    longer claim loses nothing: a clip past the real end is found when decoding ("video ends at"),
    while the shorter one (the frame count of a variable-rate video) would reject good utterances."""
    video = facts["video"]
    end = video_end_claimed(path, facts)
    claims = [count for count in (video["frames"], None if end is None else round(Fraction(end) * video["fps"]))
              if count is not None]
    return max(claims) if claims else None


def frame_range(start: float, end: float, fps: Fraction) -> tuple[int, int]:
    """[first, end) source frame indices of the utterance [start, end): the frames whose
    timestamps i/fps fall in the interval; at least one frame."""
    first = math.ceil(Fraction(start) * fps - _TIME_EPSILON)
    last = math.ceil(Fraction(end) * fps - _TIME_EPSILON)
    return first, max(last, first + 1)


def face_sample_frames(frames: int, fps: Fraction, interval_ms: int) -> tuple[int, ...]:
    """Clip frame indices nearest to the times 0, interval, 2*interval, ... inside the clip."""
    frames_per_interval = Fraction(interval_ms, 1000) * fps
    picked: list[int] = []
    step = 0
    while (index := round(step * frames_per_interval)) < frames:
        if not picked or picked[-1] != index:  # intervals shorter than a frame hit a frame twice
            picked.append(index)
        step += 1
    return tuple(picked)


def plan_clip(key: str, start: float, end: float, region: str, source: VideoSource, out_path: Path, *,
              max_height: int | None, interval_ms: int) -> ClipPlan:
    """The clip of one utterance, or MediaError when the interval lies past the video's end."""
    first, end_frame = frame_range(start, end, source.fps)
    if source.frames is not None:
        video_end = f"{source.seconds(source.frames):.3f} s, {source.frames} frames"
        if first >= source.frames:
            raise MediaError(f"interval [{start}, {end}] starts past the video end ({video_end})")
        if end_frame > source.frames + 1:
            raise MediaError(f"interval [{start}, {end}] ends past the video end ({video_end})")
        # An utterance that ends with the recording may round to one frame beyond it.
        end_frame = min(end_frame, source.frames)
    geometry = clip_geometry(source.width, source.height, region, max_height)
    faces = face_sample_frames(end_frame - first, source.fps, interval_ms)
    return ClipPlan(key, start, end, region, first, end_frame, geometry, faces, interval_ms, out_path)


def ended_early(plan: ClipPlan, source: VideoSource, decoded: int, decoder_error: str) -> str:
    reason = (f"video ends at {source.seconds(decoded):.3f} s (frame {decoded}), "
              f"before the utterance end {plan.end:.3f} s")
    return f"{reason}: {decoder_error}" if decoder_error else reason


def video_facts(plan: ClipPlan, source: VideoSource, decode_errors: int = 0) -> dict[str, Any]:
    """The clip's video facts; `decode_errors` counts the error messages printed while its source
    was decoded (damage the decoder concealed, which the clip may show)."""
    fps = source.fps
    facts = {
        "fps": float(fps),
        "fps_fraction": f"{fps.numerator}/{fps.denominator}",
        "frames": plan.frames,
        "first_frame": plan.first_frame,
        "width": plan.geometry.out_width,
        "height": plan.geometry.out_height,
        "crop": plan.geometry.crop,
        "region": plan.region,
        "duration": float(plan.frames / fps),
        "start_time": float(plan.first_frame / fps),
        # In every sample (0 where there is none): the contract keeps the same keys and types in
        # every sample, which Hugging Face datasets needs to read a shard set.
        "rotation": source.rotation,
        "source_decode_errors": decode_errors,
    }
    return facts


def face_facts_of(plan: ClipPlan, faces: list[tuple[int, "Future[list[int] | None]"]],
                  fps: Fraction, black: list[bool]) -> dict[str, Any]:
    """The faces facts of a clip from its (clip frame, detection) pairs, in clip frame order, and
    whether each of those frames is black (black.py)."""
    boxes = [(index, detection.result()) for index, detection in faces]
    found = sum(box is not None for _, box in boxes)
    return {
        "detector": DETECTOR_NAME,
        "interval_ms": plan.face_interval_ms,
        "detection_rate": found / len(boxes),
        "frames": [{"frame": index, "time": float(index / fps), "box": box, "black": is_black}
                   for (index, box), is_black in zip(boxes, black, strict=True)],
    }


class FaceDetector:
    """Runs the face detector on a worker thread, so that the face frames keep being read meanwhile
    (OpenCV releases the GIL while it detects). The result does not depend on timing: the one
    thread detects in submission order, so each clip's frames are searched in frame order, each
    near the face found in the clip's previous sampled frame."""

    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
        self._free_slots = threading.BoundedSemaphore(_MAX_PENDING_FACE_FRAMES)
        self._last_face: dict[str, list[int]] = {}  # clip key -> its latest face box (worker thread only)

    def submit(self, luma: np.ndarray, geometry: ClipGeometry, clip: str) -> "Future[list[int] | None]":
        """Detect on a copy of `luma` (the buffer under it is refilled), scaled to the clip size.
        Submit each clip's frames in frame order."""
        self._free_slots.acquire()
        detection = self._worker.submit(self._detect_in_clip, np.array(luma), geometry, clip)
        detection.add_done_callback(lambda _: self._free_slots.release())
        return detection

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _detect_in_clip(self, luma: np.ndarray, geometry: ClipGeometry, clip: str) -> list[int] | None:
        """The face box in clip pixels: found on the crop's luma, scaled to the clip size if it is."""
        if geometry.scaled:
            luma = cv2.resize(luma, (geometry.out_width, geometry.out_height), interpolation=cv2.INTER_AREA)
        with _DETECTOR_LOCK:
            box = detect_face(luma, near=self._last_face.get(clip))
        if box is not None:
            self._last_face[clip] = box
        return box


def count_lines(path: Path) -> int:
    """The non-empty lines of an ffmpeg log (at -loglevel error: one per error message)."""
    with open(path, "rb") as log:
        return sum(1 for line in log if line.strip())


def read_tail(path: Path) -> str:
    with open(path, "rb") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
        return log.read().decode("utf-8", "replace")


def _even_up(value: int) -> int:
    return value + value % 2


def _even_down(value: int) -> int:
    return value - value % 2
