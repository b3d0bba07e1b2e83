"""The thresholds and switches of a validation run (documented in docs/validation.md)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Audio and video of one source recording (raw) may differ in length by this much: a few video
# frames of container rounding. Beyond it the streams were cut or recorded differently.
SOURCE_DURATION_TOLERANCE_S = 0.1
# A sample's decoded audio, decoded video and annotated interval may differ by this much. The
# converter cuts audio to the sample and video to the frame (< 1 frame, 2 at a recording's end:
# 67 ms at 29.97 fps, 83 ms at 24 fps), so more means a broken cut.
SAMPLE_DURATION_TOLERANCE_S = 0.1
# Samples whose sampled frames hold a face less often than this get a warning.
FACE_RATE_THRESHOLD = 0.5
# Recordings whose estimated audio-video offset exceeds this get an `av-offset` warning.
AV_THRESHOLD_S = 0.1


@dataclass(frozen=True)
class ValidateOptions:
    """`strict`: warnings fail the run too. `av_sync`: estimate A/V offsets (shards only)."""

    strict: bool = False
    av_sync: bool = True
    av_threshold_s: float = AV_THRESHOLD_S
    face_rate_threshold: float = FACE_RATE_THRESHOLD
    source_duration_tolerance_s: float = SOURCE_DURATION_TOLERANCE_S
    sample_duration_tolerance_s: float = SAMPLE_DURATION_TOLERANCE_S

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
