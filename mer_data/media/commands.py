"""The ffmpeg command lines of the media stage, built with ffmpeg-python.

Each builder returns the argument list for subprocess: the processes are driven by hand (pipes,
logs, kill on error), so only the command building is delegated to the library.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import ffmpeg

from .probe import ffmpeg_path_arg

# Quiet, never reading the terminal: errors go to a log file that is read on failure.
_GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error")


def _rate(fps: Fraction) -> str:
    return f"{fps.numerator}/{fps.denominator}"


def decoder_command(source: Path, fps: Fraction) -> list[str]:
    """Decode the first video stream to constant-rate raw yuv420p frames on stdout.

    One decoding thread: parallelism comes from Dask workers (one recording each), so a worker
    costs one core and N workers scale with N cores. -vsync (not -fps_mode) so ffmpeg 4.x works.
    """
    stream = ffmpeg.input(ffmpeg_path_arg(source), threads=1)["v:0"]
    out = stream.output("pipe:1", vsync="cfr", r=_rate(fps), format="rawvideo", pix_fmt="yuv420p")
    return out.global_args(*_GLOBAL_ARGS).compile()


def encoder_command(out_path: Path, width: int, height: int, fps: Fraction, gop: int,
                    scale_to: tuple[int, int] | None = None) -> list[str]:
    """Encode raw yuv420p frames from stdin to an H.264 MP4, frame for frame.

    One thread and bitexact flags: the same input gives the same bytes on every run and machine.
    vsync passthrough: exactly the frames given, never duplicated or dropped.
    """
    stream = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="yuv420p", s=f"{width}x{height}",
                          framerate=_rate(fps))
    if scale_to is not None:
        stream = stream.filter("scale", scale_to[0], scale_to[1], flags="area")
    out = stream.output(ffmpeg_path_arg(out_path), vcodec="libx264", preset="veryfast", crf=23, pix_fmt="yuv420p",
                        threads=1, g=gop, vsync="passthrough", movflags="+faststart", map_metadata=-1,
                        fflags="+bitexact", **{"flags:v": "+bitexact"})
    return out.global_args(*_GLOBAL_ARGS).overwrite_output().compile()


def audio_to_wav_command(source: Path, out_path: Path, sample_rate: int) -> list[str]:
    """Decode the first audio stream to a 16-bit WAV at `sample_rate`, all channels kept."""
    stream = ffmpeg.input(ffmpeg_path_arg(source))["a:0"]
    out = stream.output(ffmpeg_path_arg(out_path), ar=sample_rate, acodec="pcm_s16le", format="wav")
    return out.global_args(*_GLOBAL_ARGS).overwrite_output().compile()
