"""Media of a synthetic two-actor dialog: the stereo WAV, the cut sentence WAVs and the AVI.

Audio: channel 0 carries the left actor (the one named by the session letter), channel 1 the
other, each with low-level noise and a faint cross-talk of the other actor, as lapel mics pick up.
Video: the left actor's face on the left half, the other's on the right, each half with its own
background colour and corner patch (see `faces`). A face's mouth opens with the RMS of its
speaker's channel at the frame's time, shifted by the dialog's A/V offset, so that A/V sync can
be measured on the result. Frames are streamed to ffmpeg one by one (constant memory).
"""
from __future__ import annotations

import contextlib
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from mer_data.synth import faces
from mer_data.synth.script import DialogScript, Turn
from mer_data.synth.iemocap_files import wdseg_text
from mer_data.synth.voice import SAMPLE_RATE, speak_timed

FPS = Fraction(30000, 1001)
CROSS_TALK = 0.05
NOISE_STD = 0.002
# Mouth opening = (RMS - gate) / span, clipped to [0, 1]: the gate sits above noise and cross-talk.
MOUTH_GATE_RMS = 0.012
MOUTH_SPAN_RMS = 0.12
# Gentle head motion: amplitude in face heights, frequencies in Hz.
HEAD_SWAY = 0.02
HEAD_SWAY_HZ = (0.23, 0.31)
PIPE_BYTES = 1 << 20
# The AVI's codec: DivX-tagged MPEG-4 Part 2, as in the real release.
VIDEO_CODEC = ["-c:v", "mpeg4", "-vtag", "DIVX", "-q:v", "4"]


def sample_count(duration: float) -> int:
    return int(round(duration * SAMPLE_RATE))


def frame_count(duration: float) -> int:
    return int(duration * FPS)


def render_dialog(script: DialogScript, paths: dict[str, Path], frame_size: tuple[int, int], engine: str) -> dict:
    """Write the dialog's WAV, sentence WAVs (under paths["sentences"]) and AVI; return their facts."""
    cv2.setNumThreads(1)  # dialogs already run in parallel processes
    rng = np.random.default_rng(list(script.seed))
    channels, spans = dialog_audio(script, engine, rng)
    pcm = to_pcm16(channels)
    write_wav(paths["audio"], pcm)
    write_sentences(script, pcm, paths["sentences"])
    aligned = write_word_segmentations(script, spans, paths["alignment"])
    frames = write_video(script, channels, paths["video"], frame_size, rng)
    return {"samples": int(pcm.shape[1]), "frames": frames, "aligned": aligned}


# --------------------------------------------------------------------------------------------
# Audio


def dialog_audio(script: DialogScript, engine: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Float audio, shape (2, samples): each speaker on their channel, plus noise and cross-talk;
    and per turn id the span of its speech in samples from the turn's start."""
    n = sample_count(script.duration)
    clean = {speaker: np.zeros(n, dtype=np.float32) for speaker in ("F", "M")}
    spans = {}
    for turn in script.turns:
        first, last = _sample_span(turn)
        speech, spans[turn.id] = speak_timed(turn.text, last - first, turn.speaker, turn.style, rng, engine)
        clean[turn.speaker][first:last] += speech
    right_speaker = "M" if script.left_speaker == "F" else "F"
    mixed = np.zeros((2, n), dtype=np.float32)
    for channel, own, other in ((0, script.left_speaker, right_speaker), (1, right_speaker, script.left_speaker)):
        noise = rng.normal(0, NOISE_STD, n).astype(np.float32)
        mixed[channel] = clean[own] + CROSS_TALK * clean[other] + noise
    return mixed, spans


def _sample_span(turn: Turn) -> tuple[int, int]:
    return sample_count(turn.start), sample_count(turn.end)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def write_sentences(script: DialogScript, pcm: np.ndarray, folder: Path) -> None:
    """One mono WAV per turn: the turn's interval cut from its speaker's channel."""
    for turn in script.turns:
        first, last = _sample_span(turn)
        channel = script.channel_of(turn.speaker)
        write_wav(folder / f"{turn.id}.wav", pcm[channel : channel + 1, first:last])


def write_word_segmentations(script: DialogScript, spans: dict[str, tuple[int, int]], folder: Path) -> list[str]:
    """One .wdseg per turn whose speech can be aligned (see `iemocap_files.wdseg_text`); the ids written."""
    written = []
    for turn in script.turns:
        first, last = _sample_span(turn)
        text = wdseg_text(turn.text, spans[turn.id], last - first)
        if text is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{turn.id}.wdseg").write_text(text, encoding="utf-8")
            written.append(turn.id)
    return written


def write_wav(path: Path, pcm: np.ndarray) -> None:
    """A 16-bit PCM WAV of `pcm` (channels x samples, int16) at SAMPLE_RATE.

    The standard library's writer: soundfile would fsync every file, which costs seconds over
    the thousands of sentence files of a corpus.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(pcm.shape[0])
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())


# --------------------------------------------------------------------------------------------
# Video


def mouth_openings(channel: np.ndarray, n_frames: int, av_offset: float, fps: Fraction = FPS) -> np.ndarray:
    """Per video frame, the mouth opening (0..1) from the channel's RMS over one frame period
    centred on the frame's time plus the offset (the audio at t + offset belongs to frame time t).
    `fps`: the video's frame rate (IEMOCAP's by default; MOSEI videos have several)."""
    energy = np.concatenate([[0.0], np.cumsum(channel.astype(np.float64) ** 2)])
    times = np.arange(n_frames) / float(fps) + av_offset
    half_window = 0.5 / float(fps)
    first = np.clip(np.round((times - half_window) * SAMPLE_RATE).astype(int), 0, len(channel))
    last = np.clip(np.round((times + half_window) * SAMPLE_RATE).astype(int), 0, len(channel))
    rms = np.sqrt((energy[last] - energy[first]) / np.maximum(last - first, 1))
    return np.clip((rms - MOUTH_GATE_RMS) / MOUTH_SPAN_RMS, 0.0, 1.0)


def expression_tracks(script: DialogScript, speaker: str, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame, mouth curve and brow angle: the style of the turn being spoken, else rest."""
    curve, brow = np.zeros(n_frames), np.zeros(n_frames)
    for turn in script.turns:
        if turn.speaker != speaker:
            continue
        first = max(0, int(np.ceil((turn.start - script.av_offset) * FPS)))
        last = min(n_frames, int(np.ceil((turn.end - script.av_offset) * FPS)))
        curve[first:last] = turn.style.mouth_curve
        brow[first:last] = turn.style.brow_angle
    return curve, brow


def write_video(script: DialogScript, audio: np.ndarray, path: Path, frame_size: tuple[int, int], rng) -> int:
    """Render and encode the dialog's frames; return the frame count."""
    width, height = frame_size
    n_frames = frame_count(script.duration)
    left, right = (_SideTrack(script, speaker, audio, n_frames, (width // 2, height), rng)
                   for speaker in _speakers_left_right(script))
    # Small frames go to ffmpeg in batches: one write per frame would cost more than the frame.
    per_write = max(1, PIPE_BYTES // 2 // (width * height * 3))
    batch = np.empty((per_write, height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as log:
        encoder = subprocess.Popen(_ffmpeg_command(path, width, height), stdin=subprocess.PIPE, stderr=log)
        _widen_pipe(encoder.stdin)
        try:
            for index in range(n_frames):
                slot = index % per_write
                batch[slot, :, : width // 2] = left.frame(index)
                batch[slot, :, width // 2 :] = right.frame(index)
                if slot == per_write - 1 or index == n_frames - 1:
                    encoder.stdin.write(batch[: slot + 1].data)
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and log say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                encoder.stdin.close()  # also on errors here, so that ffmpeg ends and wait() returns
            status = encoder.wait()
        if status != 0:
            log.seek(0)
            raise RuntimeError(f"ffmpeg failed writing {path}: {log.read().decode(errors='replace')[-2000:]}")
    return n_frames


def _widen_pipe(pipe) -> None:
    """Let a whole frame fit in the pipe: with the default 64 KiB, every frame costs many
    context switches between us and ffmpeg (Linux only; elsewhere the default stays)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _speakers_left_right(script: DialogScript) -> tuple[str, str]:
    return script.left_speaker, ("M" if script.left_speaker == "F" else "F")


class _SideTrack:
    """One half of the frame: an actor's face, driven frame by frame."""

    def __init__(self, script: DialogScript, speaker: str, audio: np.ndarray, n_frames: int, half_size, rng):
        self.head = faces.TalkingHead(half_size, script.side_of(speaker), faces.LOOKS[speaker])
        self.half_height = half_size[1]
        self.mouth = mouth_openings(audio[script.channel_of(speaker)], n_frames, script.av_offset)
        self.curve, self.brow = expression_tracks(script, speaker, n_frames)
        self.phase = rng.uniform(0, 2 * np.pi, size=2)

    def frame(self, index: int) -> np.ndarray:
        expression = faces.Expression(float(self.mouth[index]), float(self.curve[index]), float(self.brow[index]))
        return self.head.render(expression, shift=self._head_shift(index / float(FPS)))

    def _head_shift(self, t: float) -> tuple[float, float]:
        amplitude = HEAD_SWAY * faces.FACE_HEIGHT_FRACTION * self.half_height
        return (
            amplitude * np.sin(2 * np.pi * HEAD_SWAY_HZ[0] * t + self.phase[0]),
            0.5 * amplitude * np.sin(2 * np.pi * HEAD_SWAY_HZ[1] * t + self.phase[1]),
        )


def _ffmpeg_command(path: Path, width: int, height: int) -> list[str]:
    # bitexact flags and one thread make the file a pure function of the frames. One filter
    # thread, said explicitly: ffmpeg slices the BGR -> yuv420p conversion over its filter
    # threads (one per CPU by default) and each slice count rounds some pixels differently
    # (120 frames of a dialog encoded with 1 and 2 filter threads gave different AVIs). ffmpeg
    # 5.1 happens to give a simple filtergraph the encoder's -threads; nothing promises that.
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
        "-framerate", f"{FPS.numerator}/{FPS.denominator}", "-i", "pipe:0",
        *VIDEO_CODEC, "-pix_fmt", "yuv420p", "-threads", "1",
        "-flags:v", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1",
        str(path),
    ]
