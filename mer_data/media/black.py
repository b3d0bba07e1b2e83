"""Black video: told from the luma of the frames the face detector already receives, at no extra decode.

A frame is black when nearly all its pixels are near black, by the definition and defaults of
ffmpeg's `blackdetect` filter on limited-range video (luma 16..235, which is what the face
frames are: the decoder's yuv420p luma plane): a pixel is black at luma <= 16 + 0.10 * (235 - 16),
and a frame when at least 98% of its pixels are. A clip's `black_fraction` is the share of its
sampled frames (those every --frame-interval-ms; each face frame entry says whether it is black)
that are black; it `is_black` when all of them are.
A black clip is kept (its audio and text are fine) and flagged, so that a user can drop it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BLACK_LUMA_MAX = int(16 + 0.10 * (235 - 16))  # 37, blackdetect's pixel threshold (pix_th=0.10)
BLACK_PIXEL_FRACTION = 0.98  # blackdetect's picture_black_ratio_th


def is_black_frame(luma: np.ndarray) -> bool:
    """Whether a luma image (uint8, any shape) is black."""
    return bool(np.count_nonzero(luma <= BLACK_LUMA_MAX) >= BLACK_PIXEL_FRACTION * luma.size)


def black_facts(black_frames: Sequence[bool]) -> dict[str, Any]:
    """The clip's `black_fraction` (6 decimals) and `is_black` from its sampled frames' flags."""
    if not black_frames:
        raise ValueError("a clip has at least one sampled frame")
    fraction = sum(black_frames) / len(black_frames)
    return {"black_fraction": round(fraction, 6), "is_black": all(black_frames)}
