"""Media of a synthetic CMU-MOSEI video: the 16 kHz mono WAV and the MP4.

Audio: the speaker's speech for every segment inside the media (the voice engine of `voice`,
fitted into the segment's interval; overlapping segments add up), over low-level noise.
Video: one drawn face filling the frame (`faces.TalkingHead`), whose mouth opens with the speech's
RMS and whose brows and mouth corners show the style of the segment being spoken; frames of a
"black" segment are black. Encoded as YouTube's files are: H.264 video plus an AAC track (44.1 kHz
stereo; 16 kHz mono for the long video, to keep it cheap) in MP4, single-threaded with bit-exact flags so that the bytes are a function of the script.

Special videos: no video stream (the MP4 holds only the AAC track); a long video made of one
rendered unit repeated by stream copy (cheap at any length); and the tiny videos of the
--ids-from corpora, written in-process by OpenCV (MPEG-4 Part 2, no audio track), because
starting an encoder for each of 3,000 videos would cost more than everything else.
"""
from __future__ import annotations

import contextlib
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mer_data.media.video import frame_range
from mer_data.synth import faces
from mer_data.synth.mosei_script import VideoScript
from mer_data.synth.render import HEAD_SWAY, HEAD_SWAY_HZ, NOISE_STD, PIPE_BYTES, mouth_openings, to_pcm16, write_wav
from mer_data.synth.voice import SAMPLE_RATE, speak

# Shorter than this, a segment's speech (one that the media end cuts off) is left out.
MIN_SPEECH_S = 0.05
X264_PRESET = "ultrafast"
X264_CRF = 28
GOP_SECONDS = 2
AAC_OPTIONS = ["-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-ac", "2"]
# The long video's track: AAC encoding costs more than everything else in a 10-minute video at
# 44.1 kHz stereo, and that video has its WAV (the track is never the speech source).
LONG_AAC_OPTIONS = ["-c:a", "aac", "-b:a", "24k", "-ar", "16000", "-ac", "1"]
BITEXACT = ["-threads", "1", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-fflags", "+bitexact",
            "-map_metadata", "-1", "-movflags", "+faststart"]
# One filter thread: the BGR -> yuv420p conversion, sliced over one thread per CPU, rounds
# differently per CPU count (see render._ffmpeg_command).
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-filter_threads", "1"]


def sample_count(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def render_video(script: VideoScript, paths: dict[str, Path], engine: str) -> dict:
    """Write the video's WAV (when the release has it) and MP4; return their facts."""
    cv2.setNumThreads(1)  # videos already render in parallel processes
    rng = np.random.default_rng(list(script.seed))
    unit = unit_audio(script, engine, rng)
    pcm = np.tile(to_pcm16(unit)[None, :], (1, script.repeats))
    frames = None
    with tempfile.TemporaryDirectory(prefix="mer-synth-") as workdir:
        wav = paths["audio"] if script.has_wav else Path(workdir) / "audio.wav"
        write_wav(wav, pcm)
        paths["video"].parent.mkdir(parents=True, exist_ok=True)
        if script.format is None:
            _run([*FFMPEG, "-i", _path_arg(wav), "-map", "0:a", *AAC_OPTIONS, *BITEXACT, _path_arg(paths["video"])])
        else:
            face = FaceTrack(script, unit, rng)
            frames = face.frame_count * script.repeats
            if script.tiny:
                _write_tiny(face, paths["video"])
            elif script.repeats == 1:
                _encode(face, [*_raw_input(script), "-i", _path_arg(wav), "-map", "0:v", "-map", "1:a",
                               *_x264(script), *AAC_OPTIONS, *BITEXACT, _path_arg(paths["video"])])
            else:
                unit_video = Path(workdir) / "unit.mp4"
                _encode(face, [*_raw_input(script), *_x264(script), *BITEXACT, _path_arg(unit_video)])
                _run([*FFMPEG, "-stream_loop", str(script.repeats - 1), "-i", _path_arg(unit_video),
                      "-i", _path_arg(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy", *LONG_AAC_OPTIONS,
                      *BITEXACT, _path_arg(paths["video"])])
    return {"samples": int(pcm.shape[1]), "frames": frames}


# --------------------------------------------------------------------------------------------
# Audio


def unit_audio(script: VideoScript, engine: str, rng: np.random.Generator) -> np.ndarray:
    """Float mono audio of the rendered unit: each segment's speech at its interval, plus noise."""
    n = sample_count(min(script.unit_duration, script.duration))
    audio = np.zeros(n, dtype=np.float32)
    for segment in script.rendered_segments():
        first, last = sample_count(segment.clamped_start), min(sample_count(segment.end), n)
        if last - first >= MIN_SPEECH_S * SAMPLE_RATE:
            audio[first:last] += speak(segment.text, last - first, script.speaker, segment.style, rng, engine)
    return audio + rng.normal(0, NOISE_STD, n).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Video


class FaceTrack:
    """The speaker's face, frame by frame, over the rendered unit."""

    def __init__(self, script: VideoScript, audio: np.ndarray, rng: np.random.Generator):
        video = script.format
        self.fps = video.fps
        self.frame_count = int(round(Fraction(script.unit_duration) * video.fps))
        self.head = faces.TalkingHead((video.width, video.height), script.background, faces.LOOKS[script.speaker])
        self.height = video.height
        self.mouth = mouth_openings(audio, self.frame_count, 0.0, fps=video.fps)
        self.curve, self.brow, self.black = _expression_tracks(script, self.frame_count)
        self.phase = rng.uniform(0, 2 * np.pi, size=2)

    def frame(self, index: int) -> np.ndarray:
        if self.black[index]:
            return np.zeros_like(self.head.still)
        expression = faces.Expression(float(self.mouth[index]), float(self.curve[index]), float(self.brow[index]))
        return self.head.render(expression, shift=self._head_shift(index / float(self.fps)))

    def _head_shift(self, t: float) -> tuple[float, float]:
        amplitude = HEAD_SWAY * faces.FACE_HEIGHT_FRACTION * self.height
        return (amplitude * np.sin(2 * np.pi * HEAD_SWAY_HZ[0] * t + self.phase[0]),
                0.5 * amplitude * np.sin(2 * np.pi * HEAD_SWAY_HZ[1] * t + self.phase[1]))


def frame_span(start: float, end: float, fps: Fraction, frames: int) -> tuple[int, int]:
    """[first, last) frames of the interval, within the video: the converter's own definition
    (frames whose times i/fps fall in [start, end)), so that a black segment is black in every
    frame its clip will hold."""
    first, last = frame_range(max(start, 0.0), end, fps)
    return min(first, frames), min(last, frames)


def _expression_tracks(script: VideoScript, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: mouth curve and brow angle of the segment being spoken (rest elsewhere), and
    whether the frame is black."""
    curve, brow, black = np.zeros(frames), np.zeros(frames), np.zeros(frames, dtype=bool)
    for segment in script.rendered_segments():
        first, last = frame_span(segment.start, segment.end, script.format.fps, frames)
        curve[first:last] = segment.style.mouth_curve
        brow[first:last] = segment.style.brow_angle
        if segment.black == "full":
            black[first:last] = True
        elif segment.black == "second_half":
            black[(first + last) // 2:last] = True
    return curve, brow, black


def _raw_input(script: VideoScript) -> list[str]:
    video = script.format
    return [*FFMPEG, "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{video.width}x{video.height}",
            "-framerate", f"{video.fps.numerator}/{video.fps.denominator}", "-i", "pipe:0"]


def _x264(script: VideoScript) -> list[str]:
    gop = max(1, round(GOP_SECONDS * script.format.fps))
    return ["-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF), "-pix_fmt", "yuv420p", "-g", str(gop)]


def _path_arg(path: Path) -> str:
    # Video ids may start with "-", and a relative path may then too: never let ffmpeg read a
    # path as an option (or as a protocol, for a name with ":").
    return f"file:{path}"


def _encode(face: FaceTrack, command: list[str]) -> None:
    """Pipe the face's frames into the ffmpeg `command` (frames in batches: one write per small
    frame would cost more than the frame)."""
    height, width = face.head.still.shape[:2]
    per_write = max(1, PIPE_BYTES // 2 // (width * height * 3))
    batch = np.empty((per_write, height, width, 3), dtype=np.uint8)
    with tempfile.TemporaryFile() as log:
        encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=log)
        try:
            for index in range(face.frame_count):
                slot = index % per_write
                batch[slot] = face.frame(index)
                if slot == per_write - 1 or index == face.frame_count - 1:
                    encoder.stdin.write(batch[: slot + 1].data)
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and log say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                encoder.stdin.close()
            status = encoder.wait()
        if status != 0:
            log.seek(0)
            raise RuntimeError(f"ffmpeg failed: {' '.join(command)}: {log.read().decode(errors='replace')[-2000:]}")


def _write_tiny(face: FaceTrack, path: Path) -> None:
    height, width = face.head.still.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(face.fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write the MPEG-4 video {path}")
    try:
        for index in range(face.frame_count):
            writer.write(face.frame(index))
    finally:
        writer.release()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(command)}: {done.stderr.decode(errors='replace')[-2000:]}")
