"""Face detection with OpenCV's bundled Haar cascade: CPU-only, no download, deterministic.

The detector is used on frames sampled every --frame-interval-ms; the boxes go into the sample
metadata so that training crops faces without running a detector in every step. Within a clip,
each sampled frame is searched first near the face of the frame sampled before it (`near`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

DETECTOR_NAME = "opencv-haar-frontalface-default"

# Faces smaller than this fraction of the image height are ignored: in a speaker's view the face
# is large (IEMOCAP: ~30% of the half frame), and tiny hits are texture false positives. The bound
# also sets the cost: 0.2 instead of 0.15 skips the smallest, most numerous scales (~1.5x faster).
MIN_FACE_FRACTION = 0.2
# Detection runs on a copy at most this many pixels high: Haar cost grows with area.
DETECTION_HEIGHT = 160
# The step between the window sizes searched (OpenCV's default). Coarser steps cost less (1.2
# searches half as many sizes: 56% of the CPU time) but missed faces: one synthetic MOSEI segment
# had 6 of 7 frames found with 1.15 or 1.2, against 7 of 7 with 1.1.
SCALE_FACTOR = 1.1
# The search near the previous frame's face: a window this many face sides wider on each side, and
# sizes within this factor of the previous face's. A speaker's face moves little in 500 ms; the
# search costs about half a full one (fewer sizes, a smaller area) and falls back to the full
# search when it finds nothing (benchmarks/README.md, "Face detection").
NEAR_MARGIN = 0.5
NEAR_SIZE_FACTOR = 1.25


@lru_cache(maxsize=1)
def _cascade() -> "cv2.CascadeClassifier":
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path} (opencv-python-headless<5 ships it)")
    return cascade


def detect_face(image: np.ndarray, near: list[int] | None = None) -> list[int] | None:
    """The largest face in `image` (BGR or gray, uint8) as [x, y, w, h] in its pixels, or None.

    Detection runs on a copy at most DETECTION_HEIGHT pixels high, and the box is scaled back.
    With `near` (a box in `image` pixels: the face of the previous sampled frame), the largest face
    near it is returned if there is one, else the largest in the whole image.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, DETECTION_HEIGHT / gray.shape[0])
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    small = cv2.equalizeHist(small)
    min_side = max(20, int(MIN_FACE_FRACTION * small.shape[0]))
    found = _search_near(small, [v * scale for v in near], min_side) if near is not None else None
    if found is None:
        found = _largest_face(small, min_side)
    return None if found is None else [int(round(v / scale)) for v in found]


def _search_near(small: np.ndarray, box: list[float], min_side: int) -> list[int] | None:
    """The largest face in a window around `box` (in `small`'s pixels) at sizes close to its own.

    The sizes tried are a band of the full search's ladder, so boxes found here are close to the
    full search's but not always equal (fewer overlapping hits are grouped): on the benchmark
    corpus, IoU 0.98 on average and at least 0.9 against the full search's, the same faces found.
    """
    x, y, w, h = box
    margin = NEAR_MARGIN * max(w, h)
    x0, y0 = max(0, int(x - margin)), max(0, int(y - margin))
    x1, y1 = min(small.shape[1], int(math.ceil(x + w + margin))), min(small.shape[0], int(math.ceil(y + h + margin)))
    smallest = max(min_side, int(min(w, h) / NEAR_SIZE_FACTOR))
    largest = int(math.ceil(max(w, h) * NEAR_SIZE_FACTOR))
    if x1 - x0 < smallest or y1 - y0 < smallest:
        return None
    found = _largest_face(small[y0:y1, x0:x1], smallest, largest)
    return None if found is None else [found[0] + x0, found[1] + y0, found[2], found[3]]


def _largest_face(image: np.ndarray, smallest: int, largest: int | None = None) -> list[int] | None:
    """The largest face the cascade finds in `image` with sides from `smallest` up to `largest`
    (no limit if None) as [x, y, w, h] (ties: the leftmost, then the topmost), or None."""
    limit = {} if largest is None else {"maxSize": (largest, largest)}
    found = _cascade().detectMultiScale(image, scaleFactor=SCALE_FACTOR, minNeighbors=4,
                                        minSize=(smallest, smallest), **limit)
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda b: (int(b[2]) * int(b[3]), -int(b[0]), -int(b[1])))
    return [int(x), int(y), int(w), int(h)]
