"""How the speaker clips are encoded: the libx264 settings of every MP4 the converter writes.

The defaults were chosen by measurement (benchmarks/encoder_settings.py, tables in
benchmarks/README.md) on two corpora that differ the way real ones do (drawn faces on flat
backgrounds, and camera-like footage: textured moving backgrounds, sensor noise, MPEG-4 Part 2
sources), for three costs at once: the conversion's CPU time, the bytes written and the loader's
decode time.

  preset    x264's speed/size preset. "superfast" by default: a quarter less conversion CPU than
            "veryfast" on both corpora (the x264 encode is most of a conversion's cost), for more
            bytes (1.1x on camera-like video, 1.6x on drawn faces), still a small fraction of the
            published layout's; "faster" and slower cost 1.4-1.7x the CPU for no fewer bytes here,
            "ultrafast" halves the CPU for up to 5x the bytes.
  tune      "fastdecode" by default: no CABAC, no deblocking filter, no weighted prediction, so
            every training epoch decodes faster, for 4-18% more bytes; "none" for x264's
            defaults.
  crf       constant quality (lower: better and larger); 23 is x264's default.
  keyframes "faces" (default): a keyframe at every frame the face detector ran on (every
            frame_interval_ms, 500 ms by default) besides each clip's first frame, so that a loader
            keeping those frames decodes only them (model/frames.py skips the other frames'
            packets). "gop": a keyframe every `gop_seconds` only (smaller clips; a loader must then
            decode from the clip's start up to each kept frame).

Whatever the settings, the output is deterministic (one encoder thread, bitexact flags) and every
clip starts on a keyframe; the settings are recorded in the dataset card (options.encoding).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
X264_TUNES = ("none", "fastdecode", "zerolatency", "film", "animation", "grain", "stillimage")
KEYFRAME_POLICIES = ("faces", "gop")
NO_TUNE = "none"


@dataclass(frozen=True)
class VideoEncoding:
    """libx264 settings of the clips (see the module text for each field and why its default)."""

    preset: str = "superfast"
    tune: str = "fastdecode"
    crf: int = 23
    keyframes: str = "faces"
    gop_seconds: float = 2.0

    def __post_init__(self):
        if self.preset not in X264_PRESETS:
            raise ValueError(f"x264 preset must be one of {', '.join(X264_PRESETS)}, not {self.preset!r}")
        if self.tune not in X264_TUNES:
            raise ValueError(f"x264 tune must be one of {', '.join(X264_TUNES)}, not {self.tune!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, not {self.crf}")
        if self.keyframes not in KEYFRAME_POLICIES:
            raise ValueError(f"keyframes must be one of {', '.join(KEYFRAME_POLICIES)}, not {self.keyframes!r}")
        if not self.gop_seconds > 0:
            raise ValueError(f"gop_seconds must be positive, not {self.gop_seconds}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "VideoEncoding":
        return cls(**(data or {}))

    def gop_frames(self, fps: Fraction) -> int:
        return max(1, round(Fraction(self.gop_seconds) * fps))

    def x264_options(self, fps: Fraction) -> dict[str, Any]:
        """ffmpeg output options of the encoder (the keyframe expression is the caller's)."""
        options: dict[str, Any] = {"vcodec": "libx264", "preset": self.preset, "crf": self.crf,
                                   "pix_fmt": "yuv420p", "threads": 1, "g": self.gop_frames(fps)}
        if self.tune != NO_TUNE:
            options["tune"] = self.tune
        return options
