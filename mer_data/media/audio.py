"""Sample-exact audio cuts: 16 kHz, one channel (or the downmix), 16-bit FLAC.

Each cut seeks and reads only its own samples, so memory does not grow with the recording.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..faults import EnvironmentFault
from .commands import audio_to_wav_command
from .probe import MediaError, MediaNotFoundError, last_meaningful_line, probe_media

SAMPLE_RATE = 16000


class AudioSource:
    """An open 16 kHz recording to cut utterances from; use as a context manager.

    A source that soundfile cannot read at 16 kHz (another rate, or the audio track of a video)
    is first decoded once to a 16 kHz PCM WAV in `workdir` with ffmpeg's default resampler,
    which is deterministic, so cuts are still sample-exact in the 16 kHz signal.
    """

    def __init__(self, path: Path, workdir: Path):
        if not Path(path).is_file():
            raise MediaNotFoundError("audio file not found")
        readable = _readable_at_16k(path) or _convert_to_16k(path, workdir / "audio-16k.wav")
        self._file = sf.SoundFile(readable)
        self.channels: int = self._file.channels
        self.samples: int = self._file.frames

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def cut(self, start: float, end: float, channel: int | None, out_path: Path) -> dict[str, Any]:
        """Write [start, end) of `channel` (None: the mean of all channels) to `out_path` as FLAC.

        Returns the CutResult audio facts. Raises MediaError when the interval or channel does not
        fit this recording.
        """
        first, last = self._sample_range(start, end)
        if channel is not None and not 0 <= channel < self.channels:
            raise MediaError(f"audio channel {channel} requested, but the audio has {self.channels} channel(s)")
        try:
            self._file.seek(first)
            block = self._file.read(last - first, dtype="int16", always_2d=True)
        except RuntimeError as error:  # soundfile's LibsndfileError: a damaged file
            raise MediaError(f"cannot read audio samples [{first}, {last}): {error}") from error
        if len(block) != last - first:
            raise MediaError(f"audio ends early: read {len(block)} of {last - first} samples from sample {first}")
        try:
            sf.write(out_path, _one_channel(block, channel), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        except RuntimeError as error:
            # The samples are in memory and valid: failing to write them is the output disk's fault
            # (libsndfile reports a full disk as "problem with initialization of the flac decoder").
            raise EnvironmentFault(f"cannot write {out_path.name} (libsndfile: {error}): "
                                   "the disk is probably full") from error
        return {
            "sample_rate": SAMPLE_RATE,
            "samples": last - first,
            "duration": (last - first) / SAMPLE_RATE,
            "channel": channel,
            "source_start_sample": first,
            "source_end_sample": last,
        }

    def _sample_range(self, start: float, end: float) -> tuple[int, int]:
        """[first, last) sample indices of [start, end); one sample past the end is forgiven."""
        first, last = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        if last - self.samples > 1:
            raise MediaError(f"interval [{start}, {end}] ends past the audio end ({self.duration:.3f} s)")
        # Rounding both times can put `last` one sample beyond a recording that ends at `end`.
        last = min(last, self.samples)
        if last <= first:
            raise MediaError(f"interval [{start}, {end}] holds no audio sample (audio ends at {self.duration:.3f} s)")
        return first, last


def _one_channel(block: np.ndarray, channel: int | None) -> np.ndarray:
    """The requested column of an int16 (samples, channels) block, or the rounded mean of all."""
    if channel is not None:
        return block[:, channel]
    if block.shape[1] == 1:
        return block[:, 0]
    # The mean of int16 values lies within the int16 range; round half to even, as numpy does.
    return np.round(block.astype(np.float64).mean(axis=1)).astype(np.int16)


def _readable_at_16k(path: Path) -> Path | None:
    """`path` itself when soundfile reads it and it is sampled at 16 kHz, else None."""
    try:
        info = sf.info(path)
    except RuntimeError:  # soundfile's LibsndfileError: not a format libsndfile reads
        return None
    return path if info.samplerate == SAMPLE_RATE else None


def _convert_to_16k(path: Path, out_path: Path) -> Path:
    """Decode the first audio stream of `path` to a 16 kHz 16-bit WAV with all its channels."""
    facts = probe_media(path)
    if facts["audio"] is None:
        raise MediaError("no audio stream in the file")
    done = subprocess.run(audio_to_wav_command(path, out_path, SAMPLE_RATE), capture_output=True, check=False)
    if done.returncode != 0:
        why = last_meaningful_line(done.stderr.decode("utf-8", "replace")) or f"ffmpeg exit status {done.returncode}"
        raise MediaError(f"cannot decode the audio: {why}")
    return out_path
