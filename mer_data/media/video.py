"""Frame-accurate video clips of many utterances from one streaming decode of their source.

One ffmpeg process decodes the source to raw frames on a pipe; Python reads one frame at a time
into a reused buffer and hands each active utterance's crop of it to that utterance's own
ffmpeg/libx264 encoder, started when the utterance begins and closed when it ends. Memory holds
one decoded frame plus the pipe buffers, whatever the length of the video.

Frames travel as yuv420p rather than bgr24: it is what the decoder produces and libx264 consumes,
so no colour conversion happens on either side, and the pipe carries half the bytes. Face
detection reads the luma plane, which is the gray image the detector wants anyway.

Timing: frame i of the source is at i/fps, fps being the exact rate from ffprobe (the decoder is
told to emit constant-rate frames at that rate, so this holds for variable-rate sources too).
"""
from __future__ import annotations

import contextlib
import math
import subprocess
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from .commands import decoder_command, encoder_command
from .faces import DETECTOR_NAME, detect_face
from .probe import MediaError, last_meaningful_line, probe_media

REGIONS = ("left", "right", "full")
GOP_SECONDS = 2
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
    width: int
    height: int
    fps: Fraction
    frames: int | None  # as the container states it, or duration * fps; None when unknown

    @classmethod
    def probe(cls, path: Path) -> "VideoSource":
        """Raises MediaNotFoundError / MediaError for a missing, unreadable or video-less file."""
        facts = probe_media(path)
        video = facts["video"]
        if video is None:
            raise MediaError("no video stream in the file")
        frames = video["frames"]
        duration = video["duration"] or facts["duration"]
        if frames is None and duration is not None:
            frames = round(Fraction(duration) * video["fps"])
        return cls(Path(path), video["width"], video["height"], video["fps"], frames)

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

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 // 2


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


def cut_clips(source: VideoSource, plans: list[ClipPlan], workdir: Path) -> tuple[dict[str, ClipCut], dict[str, str]]:
    """Write every plan's clip in one decode of the source: (finished clips, reasons of failed
    ones), both by key (keys must be unique).

    A clip fails when the source ends (or breaks) before its last frame, or its encoder fails; its
    partial file is removed. The others are unaffected.
    """
    if not plans:
        return {}, {}
    encoders: list[_ClipEncoder] = []  # every encoder started, so that none outlives an error
    decoder = _Decoder(source, workdir / "decode.log")
    faces = _FaceDetector()
    try:
        decoded, unfinished = _feed_encoders(decoder, faces, plans, source.fps, workdir, encoders)
        # With every clip complete the rest of the source is not needed: stop the decoder.
        decoder_error = decoder.finish(stop=not unfinished)
        failed = {plan.key: _ended_early(plan, source, decoded, decoder_error) for plan in unfinished}
        done = _collect([encoder for encoder in encoders if encoder.plan.key not in failed], source.fps, failed)
    finally:
        decoder.finish(stop=True)
        for encoder in encoders:
            encoder.kill()
        faces.close()
    for plan in plans:
        if plan.key in failed:
            plan.out_path.unlink(missing_ok=True)
    return done, failed


def _feed_encoders(decoder: "_Decoder", faces: "_FaceDetector", plans: list[ClipPlan], fps: Fraction,
                   workdir: Path, encoders: list["_ClipEncoder"]) -> tuple[int, list[ClipPlan]]:
    """Decode until every clip has its frames or the source ends, feeding each clip's encoder
    its frames and closing it after its last. Started encoders are appended to `encoders`.

    Returns the number of frames decoded and the plans left unfinished.
    """
    waiting = deque(sorted(plans, key=lambda plan: plan.first_frame))
    needed = max(plan.end_frame for plan in plans)
    running: list[_ClipEncoder] = []
    decoded = 0
    while decoded < needed and decoder.read_frame():
        # Start the encoders of clips that begin now, and always the next one ahead of time: an
        # encoder takes ~0.1 s to start, which would stall the decode at every utterance start.
        while waiting and (waiting[0].first_frame <= decoded
                           or all(encoder.plan.first_frame <= decoded for encoder in running)):
            log_path = workdir / f"encode-{len(encoders)}.log"
            encoders.append(_ClipEncoder(waiting.popleft(), decoder.frame, faces, fps, log_path))
            running.append(encoders[-1])
        for encoder in running:
            if encoder.plan.first_frame <= decoded:
                encoder.write_frame()
        decoded += 1
        for encoder in [encoder for encoder in running if encoder.plan.end_frame == decoded]:
            encoder.close_input()
            running.remove(encoder)
    return decoded, [encoder.plan for encoder in running] + list(waiting)


def _collect(encoders: list["_ClipEncoder"], fps: Fraction, failed: dict[str, str]) -> dict[str, ClipCut]:
    """Wait for the encoders whose input is complete; their facts, or their failure in `failed`."""
    done = {}
    for encoder in encoders:
        error = encoder.wait()
        if error:
            failed[encoder.plan.key] = error
        else:
            done[encoder.plan.key] = ClipCut(_video_facts(encoder.plan, fps), _face_facts(encoder, fps))
    return done


def _ended_early(plan: ClipPlan, source: VideoSource, decoded: int, decoder_error: str) -> str:
    reason = (f"video ends at {source.seconds(decoded):.3f} s (frame {decoded}), "
              f"before the utterance end {plan.end:.3f} s")
    return f"{reason}: {decoder_error}" if decoder_error else reason


def _video_facts(plan: ClipPlan, fps: Fraction) -> dict[str, Any]:
    return {
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
    }


def _face_facts(encoder: "_ClipEncoder", fps: Fraction) -> dict[str, Any]:
    boxes = [(index, detection.result()) for index, detection in encoder.faces]
    found = sum(box is not None for _, box in boxes)
    return {
        "detector": DETECTOR_NAME,
        "interval_ms": encoder.plan.face_interval_ms,
        "detection_rate": found / len(boxes),
        "frames": [{"frame": index, "time": float(index / fps), "box": box} for index, box in boxes],
    }


class _YuvFrame:
    """One yuv420p frame in a buffer that is refilled in place, with numpy views of its planes."""

    def __init__(self, width: int, height: int):
        chroma_width, chroma_height = (width + 1) // 2, (height + 1) // 2
        luma_size, chroma_size = width * height, chroma_width * chroma_height
        self.buffer = bytearray(luma_size + 2 * chroma_size)
        data = np.frombuffer(self.buffer, dtype=np.uint8)
        self.y = data[:luma_size].reshape(height, width)
        self.u = data[luma_size:luma_size + chroma_size].reshape(chroma_height, chroma_width)
        self.v = data[luma_size + chroma_size:].reshape(chroma_height, chroma_width)

    def crop(self, g: ClipGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views (not copies) of the crop's planes: they follow the buffer as it is refilled."""
        rows, cols = slice(g.y, g.y + g.height), slice(g.x, g.x + g.width)
        half_rows, half_cols = slice(g.y // 2, (g.y + g.height) // 2), slice(g.x // 2, (g.x + g.width) // 2)
        return self.y[rows, cols], self.u[half_rows, half_cols], self.v[half_rows, half_cols]


class _FaceDetector:
    """Runs the face detector on a worker thread, so that encoders keep being fed meanwhile
    (OpenCV releases the GIL while it detects). The result does not depend on timing."""

    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
        self._free_slots = threading.BoundedSemaphore(_MAX_PENDING_FACE_FRAMES)

    def submit(self, luma: np.ndarray, geometry: ClipGeometry) -> "Future[list[int] | None]":
        """Detect on a copy of `luma` (the buffer under it is refilled), scaled to the clip size."""
        self._free_slots.acquire()
        detection = self._worker.submit(_detect_in_clip, np.array(luma), geometry)
        detection.add_done_callback(lambda _: self._free_slots.release())
        return detection

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)


def _detect_in_clip(luma: np.ndarray, geometry: ClipGeometry) -> list[int] | None:
    """The face box in clip pixels: found on the crop's luma, scaled to the clip size if it is."""
    if geometry.scaled:
        luma = cv2.resize(luma, (geometry.out_width, geometry.out_height), interpolation=cv2.INTER_AREA)
    with _DETECTOR_LOCK:
        return detect_face(luma)


class _Decoder:
    """ffmpeg decoding the source's first video stream to constant-rate raw frames on a pipe."""

    def __init__(self, source: VideoSource, log_path: Path):
        self.frame = _YuvFrame(source.width, source.height)
        self._view = memoryview(self.frame.buffer)
        self._log_path = log_path
        command = decoder_command(source.path, source.fps)
        # stderr goes to a file: a pipe nobody drains could fill and stall the decoder.
        with open(log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=log, bufsize=0)
        _enlarge_pipe(self._process.stdout, len(self.frame.buffer))

    def read_frame(self) -> bool:
        """Refill `frame` with the next frame; False at the end of the stream (or a cut-off frame)."""
        filled, size = 0, len(self._view)
        while filled < size:
            count = self._process.stdout.readinto(self._view[filled:])
            if not count:
                return False
            filled += count
        return True

    def finish(self, *, stop: bool) -> str:
        """End the decoder (killed if `stop`, else awaited) and return its error, "" if none."""
        if self._process.returncode is None and stop:
            self._process.kill()
        self._process.stdout.close()
        status = self._process.wait()
        if stop:
            return ""
        why = last_meaningful_line(_read_tail(self._log_path))
        return why or (f"decoder exit status {status}" if status else "")


class _ClipEncoder:
    """One utterance's libx264 process, fed its crop of each shared decoded frame.

    Its output goes to a file and its log to another, so writing to its stdin can only wait for
    it to encode, never deadlock.
    """

    def __init__(self, plan: ClipPlan, frame: _YuvFrame, faces: _FaceDetector, fps: Fraction, log_path: Path):
        self.plan = plan
        self.faces: list[tuple[int, Future[list[int] | None]]] = []  # (clip frame, its detection)
        self._detector = faces
        self._planes = frame.crop(plan.geometry)
        self._face_frames = deque(plan.face_frames)
        self._written = 0
        self._broken = False
        self._log_path = log_path
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(_encoder_command(plan, fps), stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=log,
                                             bufsize=plan.geometry.frame_bytes)
        _enlarge_pipe(self._process.stdin, plan.geometry.frame_bytes)

    def write_frame(self) -> None:
        """Send the crop of the current frame; run the face detector first where it is due."""
        if self._face_frames and self._face_frames[0] == self._written:
            detection = self._detector.submit(self._planes[0], self.plan.geometry)
            self.faces.append((self._face_frames.popleft(), detection))
        if not self._broken:
            try:
                for plane in self._planes:
                    self._process.stdin.write(np.ascontiguousarray(plane))
            except BrokenPipeError:  # the encoder died; wait() reports why
                self._broken = True
        self._written += 1

    def close_input(self) -> None:
        """All frames are in: the encoder finishes the file while decoding goes on."""
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            self._broken = True

    def wait(self) -> str:
        """Wait for the encoder to exit; its error, "" on success."""
        status = self._process.wait()
        if status == 0 and not self._broken:
            return ""
        why = last_meaningful_line(_read_tail(self._log_path)) or f"exit status {status}"
        return f"video encoder failed: {why}"

    def kill(self) -> None:
        """Stop the encoder if it still runs (a failed clip, or an error elsewhere)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):  # unflushed frames cannot reach a killed process
            self._process.stdin.close()


def _encoder_command(plan: ClipPlan, fps: Fraction) -> list[str]:
    g = plan.geometry
    scale_to = (g.out_width, g.out_height) if g.scaled else None
    return encoder_command(plan.out_path, g.width, g.height, fps, max(1, round(GOP_SECONDS * fps)), scale_to)


def _enlarge_pipe(pipe: IO[bytes], size: int) -> None:
    """Grow a pipe's kernel buffer towards one frame (Linux; the 64 KiB default costs a system
    call per 64 KiB). Best effort: the system limit or another OS leaves the default."""
    try:
        import fcntl

        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(size, limit))
    except (ImportError, AttributeError, OSError, ValueError):
        pass


def _read_tail(path: Path) -> str:
    with open(path, "rb") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
        return log.read().decode("utf-8", "replace")


def _even_up(value: int) -> int:
    return value + value % 2


def _even_down(value: int) -> int:
    return value - value % 2
