"""Shared pieces of the media stage's ffmpeg command lines, which are built with ffmpeg-python
(the per-recording cutting graph is in graph.py).

Builders return the argument list for subprocess: the processes are driven by hand (pipes, logs,
kill on error), so only the command building is delegated to the library.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import ffmpeg

from .probe import ffmpeg_path_arg

# Quiet, never reading the terminal: errors go to a log file that is read on failure.
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error")


def rate_arg(fps: Fraction) -> str:
    """An exact frame rate as ffmpeg takes it (30000/1001)."""
    return f"{fps.numerator}/{fps.denominator}"


def audio_to_wav_command(source: Path, out_path: Path, sample_rate: int) -> list[str]:
    """Decode the first audio stream to a 16-bit WAV at `sample_rate`, all channels kept."""
    stream = ffmpeg.input(ffmpeg_path_arg(source))["a:0"]
    out = stream.output(ffmpeg_path_arg(out_path), ar=sample_rate, acodec="pcm_s16le", format="wav")
    return out.global_args(*GLOBAL_ARGS).overwrite_output().compile()
